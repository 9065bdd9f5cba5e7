package engine_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckp-go/ckp/engine"
)

// exTempFile returns the path of a checkpoint file in a new temporary directory and the
// function that removes the directory.
func exTempFile(name string) (string, func()) {
	dir, err := os.MkdirTemp("", "ckp-example-")
	if err != nil {
		panic(err)
	}
	return filepath.Join(dir, name), func() { os.RemoveAll(dir) }
}

// A program registers the memory it wants to checkpoint, saves all of it at once as one
// transaction, and later restores it.
func ExampleOpen() {
	path, cleanup := exTempFile("sim.ckp")
	defer cleanup()

	f, err := engine.Open(path, nil) // creates sim.ckp and sim.ckp.idx
	if err != nil {
		fmt.Println(err)
		return
	}
	grid := make([]byte, 8)
	counters := make([]byte, 4)
	if _, err := f.Register("grid", grid); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := f.Register("counters", counters); err != nil {
		fmt.Println(err)
		return
	}

	for step := byte(1); step <= 3; step++ {
		for i := range grid {
			grid[i] = step * 10
		}
		counters[0] = step
		if err := f.SaveAll(); err != nil { // version `step` of both regions
			fmt.Println(err)
			return
		}
	}

	// Roll both regions back to what the second SaveAll saved.
	if err := f.RestoreAll(2); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("grid:", grid, "counters:", counters)

	c, _ := f.Locate("grid")
	fmt.Println("versions of grid:", len(c.Versions()))

	if err := f.Close(); err != nil {
		fmt.Println(err)
		return
	}
	// After Close, the File refuses every call.
	fmt.Println(errors.Is(f.SaveAll(), engine.ErrClosed))
	// Output:
	// grid: [20 20 20 20 20 20 20 20] counters: [2 0 0 0]
	// versions of grid: 3
	// true
}

// RegisterValue checkpoints a plain-data value (no pointers, slices, maps, strings...)
// directly.
func ExampleRegisterValue() {
	path, cleanup := exTempFile("state.ckp")
	defer cleanup()

	type particle struct {
		Pos, Vel [3]float64
		Alive    bool
	}
	type state struct {
		Step      int64
		Particles [2]particle
	}

	f, err := engine.Open(path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()

	var s state
	c, err := engine.RegisterValue(f, "state", &s)
	if err != nil {
		fmt.Println(err)
		return
	}
	s.Step = 41
	s.Particles[0] = particle{Pos: [3]float64{1, 2, 3}, Vel: [3]float64{0.5, 0, -0.5}, Alive: true}
	if err := c.Save(); err != nil {
		fmt.Println(err)
		return
	}

	s = state{Step: -1} // the computation goes wrong
	if err := c.Restore(0); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Step, s.Particles[0].Pos, s.Particles[0].Alive, s.Particles[1].Alive)

	// Types holding pointers are refused: their bytes mean nothing to a later process.
	type withName struct {
		ID   int
		Name string
	}
	_, err = engine.RegisterValue(f, "bad", &withName{})
	fmt.Println(errors.Is(err, engine.ErrInvalid))
	// Output:
	// 41 [1 2 3] true false
	// true
}

// Versions are numbered from 1 for each checkpoint; 0 is the newest, -1 the one before,
// and so on.
func ExampleCheckpoint_Restore() {
	path, cleanup := exTempFile("rel.ckp")
	defer cleanup()

	f, err := engine.Open(path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()

	region := make([]byte, 1)
	c, err := f.Register("r", region)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, b := range []byte{'a', 'b', 'c', 'd'} {
		region[0] = b
		if err := c.Save(); err != nil {
			fmt.Println(err)
			return
		}
	}
	for _, v := range []int{0, -1, -3, 1, 3} {
		if err := c.Restore(v); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("Restore(%d): %c\n", v, region[0])
	}
	err = c.Restore(-4) // only four versions exist: -3 is the oldest
	fmt.Println(errors.Is(err, engine.ErrVersion))
	err = c.Restore(5)
	fmt.Println(errors.Is(err, engine.ErrVersion))
	// Output:
	// Restore(0): d
	// Restore(-1): c
	// Restore(-3): a
	// Restore(1): a
	// Restore(3): c
	// true
	// true
}

// With KeepVersions, only the newest versions of each checkpoint are kept; numbering
// continues, and relative numbers count over the kept versions.
func ExampleOptions_keepVersions() {
	path, cleanup := exTempFile("ring.ckp")
	defer cleanup()

	f, err := engine.Open(path, &engine.Options{KeepVersions: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()

	region := make([]byte, 1)
	c, err := f.Register("r", region)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := byte(1); i <= 5; i++ {
		region[0] = i
		if err := c.Save(); err != nil {
			fmt.Println(err)
			return
		}
	}
	for _, v := range c.Versions() {
		fmt.Println("kept version", v.Version)
	}
	fmt.Println("Restore(1):", errors.Is(c.Restore(1), engine.ErrVersion))
	if err := c.Restore(-1); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Restore(-1):", region[0])
	// Output:
	// kept version 4
	// kept version 5
	// Restore(1): true
	// Restore(-1): 4
}

// Registering a name on a reopened file picks up the versions saved under it earlier;
// new saves continue the numbering.
func ExampleFile_Register() {
	path, cleanup := exTempFile("resume.ckp")
	defer cleanup()

	// First run.
	f, err := engine.Open(path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	var step uint32
	c, _ := engine.RegisterValue(f, "step", &step)
	for step = 1; step <= 3; step++ {
		_ = c.Save()
	}
	_ = f.Close()

	// Second run: resume from the newest version.
	f, err = engine.Open(path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	var resumed uint32
	c, err = engine.RegisterValue(f, "step", &resumed)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("versions found:", len(c.Versions()))
	if err := c.Restore(0); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("resumed at step", resumed)
	_ = c.Save()
	vs := c.Versions()
	fmt.Println("new version:", vs[len(vs)-1].Version)
	// Output:
	// versions found: 3
	// resumed at step 3
	// new version: 4
}
