package main

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary run as the heat command (for the kill test).
func TestMain(m *testing.M) {
	if args := os.Getenv("HEAT_ARGS"); args != "" {
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func heatArgs(path string) []string {
	return []string{"-ckpt", path, "-n", "96", "-steps", "3000", "-every", "25"}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestResumeAfterKill: a run killed with SIGKILL at random moments and restarted each
// time ends with the same answer as an uninterrupted run.
func TestResumeAfterKill(t *testing.T) {
	dir := t.TempDir()
	var ref bytes.Buffer
	if code := run(heatArgs(filepath.Join(dir, "ref.ckp")), &ref, os.Stderr); code != 0 {
		t.Fatalf("uninterrupted run: exit %d", code)
	}
	want := lastLine(ref.String())
	if !strings.HasPrefix(want, "done: step 3000") {
		t.Fatalf("uninterrupted run said %q", want)
	}

	path := filepath.Join(dir, "killed.ckp")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	kills, resumed := 0, 0
	for attempt := 0; attempt < 50; attempt++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "HEAT_ARGS="+strings.Join(heatArgs(path), " "))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of checkpoints in this run (or let it finish).
		killAfter := 1 + r.IntN(20)
		if kills >= 3 {
			killAfter = 1 << 30
		}
		sc := bufio.NewScanner(out)
		var last string
		seen := 0
		for sc.Scan() {
			last = sc.Text()
			if strings.HasPrefix(last, "resumed") {
				resumed++
			}
			if strings.HasPrefix(last, "checkpoint") {
				seen++
				if seen == killAfter {
					// Let it run on a little, into the middle of its next steps.
					time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
					cmd.Process.Signal(syscall.SIGKILL)
					kills++
					break
				}
			}
		}
		err = cmd.Wait()
		if strings.HasPrefix(last, "done") && err == nil {
			if last != want {
				t.Fatalf("after %d kills: %q, uninterrupted run: %q", kills, last, want)
			}
			if resumed < kills {
				t.Fatalf("%d kills but only %d resumptions", kills, resumed)
			}
			t.Logf("%d kills, %d resumptions, same answer: %s", kills, resumed, want)
			return
		}
	}
	t.Fatal("the killed run never finished")
}

// TestRefusesOtherGrid: a checkpoint of another grid size is refused, not misread.
func TestRefusesOtherGrid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.ckp")
	var out, errb bytes.Buffer
	if code := run([]string{"-ckpt", path, "-n", "16", "-steps", "10"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if code := run([]string{"-ckpt", path, "-n", "32", "-steps", "10"}, &out, &errb); code == 0 {
		t.Fatal("a 16x16 checkpoint was accepted for a 32x32 grid")
	}
}
