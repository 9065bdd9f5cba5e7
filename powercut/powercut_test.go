package powercut

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckp-go/ckp/powercut/internal/record"
)

// Knobs: flags, with environment variables as defaults (handy in CI).
var (
	flagCuts = flag.Int("powercut.cuts", envInt("CKP_POWERCUT_CUTS", 5),
		"power cuts per mode (env CKP_POWERCUT_CUTS)")
	flagSeed = flag.Uint64("powercut.seed", uint64(envInt("CKP_POWERCUT_SEED", 0)),
		"seed for the cut delays and record contents; 0 picks one (env CKP_POWERCUT_SEED)")
	flagMinDelay = flag.Duration("powercut.mindelay", envDuration("CKP_POWERCUT_MINDELAY", 200*time.Millisecond),
		"shortest delay from the guest's ready line to the cut (env CKP_POWERCUT_MINDELAY)")
	flagMaxDelay = flag.Duration("powercut.maxdelay", envDuration("CKP_POWERCUT_MAXDELAY", 1500*time.Millisecond),
		"longest delay from the guest's ready line to the cut (env CKP_POWERCUT_MAXDELAY)")
	flagKeep = flag.Bool("powercut.keep", os.Getenv("CKP_POWERCUT_KEEP") == "1",
		"keep the built guest and initramfs, and print where (env CKP_POWERCUT_KEEP=1)")
	flagMountOpts = flag.String("powercut.mountopts", os.Getenv("CKP_POWERCUT_MOUNTOPTS"),
		"ext4 mount options in the guest; empty: the guest's default, commit=600 (env CKP_POWERCUT_MOUNTOPTS)")
	flagSysctl = flag.String("powercut.sysctl", os.Getenv("CKP_POWERCUT_SYSCTL"),
		"guest vm sysctls, KEY=VALUE,...; \"none\" leaves the kernel defaults; empty: the guest's default (env CKP_POWERCUT_SYSCTL)")
	flagRecords = flag.Int("powercut.records", envInt("CKP_POWERCUT_RECORDS", 2000),
		"records the log workload writes in a cut run; more than fsync acks within the "+
			"default delays (about 250/s); bounds the control's dirty data (2000 x 64 KiB = 125 MiB; "+
			"it writes about 800/s, then idles with the data unflushed) (env CKP_POWERCUT_RECORDS)")
	flagConsole = flag.Bool("powercut.console", os.Getenv("CKP_POWERCUT_CONSOLE") == "1",
		"log every console line (env CKP_POWERCUT_CONSOLE=1)")
)

const (
	diskSize = 512 << 20
	recSize  = 64 << 10
)

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

// shared is built once per test binary: the guest and the initramfs.
var shared struct {
	once   sync.Once
	dir    string
	initrd string
	err    error
	seed   uint64
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if shared.dir != "" {
		if *flagKeep {
			fmt.Printf("powercut: kept guest and initramfs in %s\n", shared.dir)
		} else {
			os.RemoveAll(shared.dir)
		}
	}
	os.Exit(code)
}

// setup returns the Env and the initramfs path, or skips the test.
func setup(t *testing.T) (*Env, string) {
	t.Helper()
	env := RequireEnv(t)
	shared.once.Do(func() {
		start := time.Now()
		shared.seed = *flagSeed
		if shared.seed == 0 {
			shared.seed = rand.Uint64()>>1 | 1
		}
		shared.dir, shared.err = os.MkdirTemp("", "ckp-powercut-")
		if shared.err != nil {
			return
		}
		bin := filepath.Join(shared.dir, "guest")
		if shared.err = BuildGuest(context.Background(), "./guest", bin); shared.err != nil {
			return
		}
		shared.initrd = filepath.Join(shared.dir, "initramfs.cpio")
		shared.err = env.WriteInitramfs(shared.initrd, bin)
		t.Logf("built guest and initramfs in %v; seed %d (rerun with -powercut.seed=%d)",
			time.Since(start).Round(time.Millisecond), shared.seed, shared.seed)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return env, shared.initrd
}

// logCycle is one Cycle of the log workload plus the host-side check of
// what survived.
type logCycle struct {
	*Cycle
	mode     string
	delay    time.Duration // < 0: no cut
	acked    int           // highest "acked N"
	intact   int           // leading intact records in /log
	logLen   int
	finished bool          // the workload completed before the cut
	dump     time.Duration // debugfs
	verify   time.Duration
	total    time.Duration
	check    error // the durability check: every acked record intact
}

func (c *logCycle) String() string {
	cut := fmt.Sprintf("cut@%v", c.delay.Round(time.Millisecond))
	if !c.Cut {
		cut = "no cut"
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	s := fmt.Sprintf("%s %s: acked=%d intact=%d log=%dKiB | boot=%v ran=%v mkfs=%v e2fsck=%v(exit %d) dump=%v verify=%v total=%v",
		c.mode, cut, c.acked, c.intact, c.logLen>>10, ms(c.Boot), ms(c.Ran), ms(c.MkfsTime),
		ms(c.FsckTime), c.Fsck.Code, ms(c.dump), ms(c.verify), ms(c.total))
	if c.finished && c.Cut {
		s += " (workload done before the cut)"
	}
	if c.check != nil {
		s += "\n  CHECK FAILED: " + c.check.Error()
	}
	return s
}

// runLogCycle returns an error for harness failures; durability violations
// go to c.check so that the control can count them.
func runLogCycle(t *testing.T, env *Env, initrd, mode string, delay time.Duration, seed uint64, records int) (*logCycle, error) {
	start := time.Now()
	end := "hang" // a cut run must never end in a clean shutdown
	if delay < 0 {
		end = "poweroff"
	}
	o := CycleOptions{DiskPath: filepath.Join(t.TempDir(), "disk.img"), DiskSize: diskSize}
	o.Initramfs = initrd
	o.CutAfter = delay
	o.Params = map[string]string{
		"CKP_WORKLOAD": "log",
		"CKP_MODE":     mode,
		"CKP_SEED":     strconv.FormatUint(seed, 10),
		"CKP_RECSIZE":  strconv.Itoa(recSize),
		"CKP_RECORDS":  strconv.Itoa(records),
		"CKP_END":      end,
	}
	if *flagMountOpts != "" {
		o.Params["CKP_MOUNTOPTS"] = *flagMountOpts
	}
	if *flagSysctl != "" {
		o.Params["CKP_SYSCTL"] = *flagSysctl
	}
	if *flagConsole {
		o.Console = func(l string) { t.Log("console: " + l) }
	}
	cy, err := env.Cycle(context.Background(), o)
	if err != nil {
		return nil, err
	}
	c := &logCycle{Cycle: cy, mode: mode, delay: delay, acked: ackedCount(cy.Messages)}
	for _, m := range cy.Messages {
		c.finished = c.finished || strings.HasPrefix(m, "done")
	}
	t0 := time.Now()
	data, err := cy.Disk.ReadFile("/log")
	c.dump = time.Since(t0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		c.check = fmt.Errorf("/log is missing: %v", err)
	}
	c.logLen = len(data)
	t0 = time.Now()
	intact, verr := record.Verify(data, recSize, seed, c.acked)
	c.verify = time.Since(t0)
	c.intact = intact
	if c.check == nil {
		c.check = verr
	}
	c.total = time.Since(start)
	return c, nil
}

// ackedCount is the highest N of the guest's "acked N" lines.
func ackedCount(msgs []string) int {
	n := 0
	for _, m := range msgs {
		if v, ok := strings.CutPrefix(m, "acked "); ok {
			if k, err := strconv.Atoi(v); err == nil && k > n {
				n = k
			}
		}
	}
	return n
}

// cutDelays draws the cut delays for one mode, reproducibly from the seed.
func cutDelays(mode string, n int) []time.Duration {
	var h uint64
	for _, c := range mode {
		h = h*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(shared.seed, h))
	lo, hi := *flagMinDelay, *flagMaxDelay
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = lo
		if hi > lo {
			out[i] += time.Duration(r.Int64N(int64(hi - lo)))
		}
	}
	return out
}

// cuts runs n power-cut cycles of mode in parallel subtests and returns
// them (in order) once all have finished.
func cuts(t *testing.T, mode string, n int) []*logCycle {
	env, initrd := setup(t)
	delays := cutDelays(mode, n)
	out := make([]*logCycle, n)
	t.Run("cuts", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprintf("%02d", i), func(t *testing.T) {
				t.Parallel()
				c, err := runLogCycle(t, env, initrd, mode, delays[i], shared.seed+uint64(i), *flagRecords)
				if err != nil {
					t.Fatal(err)
				}
				t.Log(c)
				if !c.Cut {
					t.Errorf("qemu exited before the cut")
				}
				out[i] = c
			})
		}
	})
	return out
}

// TestPowerCutFsync: with fsync before each ack, every acked record must
// survive any power cut, byte for byte.
func TestPowerCutFsync(t *testing.T) {
	cs := cuts(t, "fsync", *flagCuts)
	var sum time.Duration
	for i, c := range cs {
		if c == nil {
			continue
		}
		sum += c.total
		if c.check != nil {
			t.Errorf("cut %d: acked records lost: %v", i, c.check)
		}
		if c.acked == 0 {
			t.Errorf("cut %d: nothing was acked before the cut (delay %v); the check proved nothing", i, c.delay)
		}
		if c.finished {
			t.Errorf("cut %d: the workload had finished before the cut (delay %v); raise -powercut.records", i, c.delay)
		}
	}
	logMean(t, cs, sum)
}

// TestPowerCutNosyncControl proves that the check can fail: without fsync,
// acked records must be lost by at least one cut. If this test fails, the
// fsync test is not evidence of anything.
func TestPowerCutNosyncControl(t *testing.T) {
	cs := cuts(t, "nosync", *flagCuts)
	var failed, ran int
	var sum time.Duration
	for _, c := range cs {
		if c == nil {
			continue
		}
		ran++
		sum += c.total
		if c.check != nil {
			failed++
		}
	}
	logMean(t, cs, sum)
	t.Logf("control: the durability check failed in %d of %d cuts (expected: at least 1)", failed, ran)
	if ran > 0 && failed == 0 {
		t.Errorf("control: no cut lost an acked record without fsync; the harness cannot detect missing flushes")
	}
}

// TestPowerCutFinish runs each mode to completion with no cut: after a
// clean sync and power-off every record must be there, in both modes.
func TestPowerCutFinish(t *testing.T) {
	env, initrd := setup(t)
	const records = 64
	for _, mode := range []string{"fsync", "nosync"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c, err := runLogCycle(t, env, initrd, mode, -1, shared.seed, records)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(c)
			if c.Cut || c.acked != records || c.intact != records || c.logLen != records*recSize || c.check != nil {
				t.Errorf("want all %d records and nothing else", records)
			}
			if c.Fsck.Code != 0 {
				t.Errorf("e2fsck after a clean power-off: exit %d\n%s", c.Fsck.Code, c.Fsck.Output)
			}
		})
	}
}

func logMean(t *testing.T, cs []*logCycle, sum time.Duration) {
	var n int
	var boot time.Duration
	for _, c := range cs {
		if c != nil {
			n++
			boot += c.Boot
		}
	}
	if n > 0 {
		t.Logf("%d cycles: mean boot-to-ready %v, mean cycle (mkfs+boot+run+e2fsck+dump+verify) %v",
			n, (boot / time.Duration(n)).Round(time.Millisecond), (sum / time.Duration(n)).Round(time.Millisecond))
	}
}
