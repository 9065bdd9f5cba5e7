//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/powercut/internal/ckpcheck"
	"github.com/ckp-go/ckp/store"
)

// The "ckp" workload runs the engine on /mnt/ckp (and /mnt/ckp.idx).
//
// Mode "run": if the file exists (a previous boot wrote it and lost power),
// it opens it (recovery, under this boot's new boot id), inspects every
// kept version and prints "@ckp report {json}" (a ckpcheck.Report). Then it
// prints "ready" and runs a SaveAll loop from the newest kept version + 1,
// filling each region with ckpcheck.Fill(seed, region, version) first. After
// each SaveAll it prints "@ckp acked V" if the version is durable under the
// policy (with every earlier one), otherwise "@ckp saved V".
//
// With CKP_KILLAFTER=ms, the loop runs in a child process, which /init
// kills (SIGKILL) that long after "ready"; it prints "@ckp killed" and starts
// a second child, which opens the file again in the same boot (nothing may
// be lost: the page cache survives), inspects it ("@ckp killreport {json}")
// and carries on with the loop until the power cut.
//
// Mode "final": open, inspect and report as above; then two more SaveAlls,
// Close, open again and print "@ckp reopen {json}" (the inspection of the
// reopened file), Close.
//
// Parameters:
//
//	CKP_POLICY  always | every<N> | none: the engine's Sync policy
//	CKP_SYNC    N > 0: call File.Sync after every N-th SaveAll (and
//	            acknowledge then); 0: never
//	CKP_ACK     durable (default) | all: acknowledge every SaveAll as durable
//	            (the control: a claim the policy does not back)
//	CKP_KEEP    KeepVersions (default 0)
//	CKP_SIZES   region sizes (ckpcheck.ParseSizes)
//	CKP_SEED    pattern seed
//	CKP_MAXVER  stop after this version (0: never); bounds the disk use
//	CKP_KILLAFTER kill the process this many ms after "ready" and restart it
func init() { workloads["ckp"] = ckpWorkload }

const ckpPath = "/mnt/ckp"

// remotePath is the store of the remote tier (CKP_REMOTE=1).
const remotePath = "/mnt/remote"

func ckpWorkload(mode string) error {
	if mode != "run" && mode != "final" {
		return fmt.Errorf("ckp: CKP_MODE must be run or final, not %q", mode)
	}
	pol := env("CKP_POLICY", "always")
	policy, err := parsePolicy(pol)
	if err != nil {
		return err
	}
	syncN, err := strconv.Atoi(env("CKP_SYNC", "0"))
	if err != nil {
		return err
	}
	ackAll := env("CKP_ACK", "durable") == "all"
	keep, err := strconv.Atoi(env("CKP_KEEP", "0"))
	if err != nil {
		return err
	}
	maxVer, err := strconv.Atoi(env("CKP_MAXVER", "0"))
	if err != nil {
		return err
	}
	sizes, err := ckpcheck.ParseSizes(env("CKP_SIZES", "4096,262144,2097252"))
	if err != nil {
		return err
	}
	seed, err := strconv.ParseUint(env("CKP_SEED", "1"), 10, 64)
	if err != nil {
		return err
	}
	diff := env("CKP_DIFF", "0") == "1"
	cfg := ckpcheck.Config{Sizes: sizes, Seed: seed, Sparse: diff}
	opts := &engine.Options{Sync: policy, KeepVersions: keep, Differential: diff}
	if env("CKP_REMOTE", "0") == "1" {
		// A remote tier in a directory of the same disk: its uploads run while the
		// power is cut, and every version it committed must verify after the cut.
		st, err := store.Dir(remotePath)
		if err != nil {
			return err
		}
		opts.Remote = &engine.Remote{Store: st, Keep: 3}
		cfg.Remote = st
	}

	if mode == "final" {
		ready("workload=ckp mode=final")
		return ckpFinal(opts, cfg)
	}

	killAfter, err := strconv.Atoi(env("CKP_KILLAFTER", "0"))
	if err != nil {
		return err
	}
	child := os.Getenv("CKP_CHILD")
	if child == "" && killAfter > 0 {
		return killAndRestart(time.Duration(killAfter) * time.Millisecond)
	}
	restarted := child == "2"

	var s *ckpcheck.Set
	if _, err := os.Stat(ckpPath); err == nil {
		var rep *ckpcheck.Report
		s, rep = ckpcheck.OpenAndInspect(ckpPath, opts, cfg, "guest")
		if restarted {
			sayJSON("killreport", rep)
		} else {
			sayJSON("report", rep)
		}
		if s == nil {
			return fmt.Errorf("open: %s", rep.OpenError)
		}
	} else if s, err = ckpcheck.Open(ckpPath, opts, cfg); err != nil {
		return err
	}
	next := s.Newest() + 1
	if restarted {
		say("resumed next=%d", next)
	} else {
		ready("workload=ckp policy=%s sync=%d ack=%v keep=%d regions=%d next=%d kill=%dms",
			policy, syncN, map[bool]string{true: "all", false: "durable"}[ackAll], keep, len(sizes), next, killAfter)
	}
	n := 0
	v := next
	for ; maxVer == 0 || v <= maxVer; v++ {
		from := v - 1 // the regions hold the version before (inspection left garbage the first time)
		if v == next {
			from = 0
		}
		for i, r := range s.Regions {
			cfg.Fill(r, i, v, from)
		}
		if err := s.F.SaveAll(); err != nil {
			return fmt.Errorf("SaveAll of version %d: %w", v, err)
		}
		n++
		durable := ackAll || durableAt(pol, n)
		if syncN > 0 && n%syncN == 0 {
			if err := s.F.Sync(); err != nil {
				return fmt.Errorf("sync after version %d: %w", v, err)
			}
			durable = true
		}
		if durable {
			say("acked %d", v)
		} else {
			say("saved %d", v)
		}
		if n == 1 && opts.Remote != nil {
			// The first version of each run is committed before the loop goes on, so
			// that a cut finds the store holding something to check even when the
			// uploads get no CPU beside the loop (a loaded host starves the guest's
			// vCPUs).
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s.F.Flush(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("flush after version %d: %w", v, err)
			}
		}
	}
	say("done version=%d", v-1)
	return nil // the File stays open: the power cut finds it so
}

// killAndRestart runs the loop in a child process, kills it d after it
// printed "ready", and runs it again in a second child, which reopens the
// file. It returns only if the second child fails.
func killAndRestart(d time.Duration) error {
	c1 := startChild("1")
	out, err := c1.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c1.Start(); err != nil {
		return fmt.Errorf("start child: %w", err)
	}
	readyc := make(chan struct{})
	drained := make(chan struct{})
	go func() { // forward the child's lines to the console, spot "ready"
		defer close(drained)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		seen := false
		for sc.Scan() {
			os.Stdout.WriteString(sc.Text() + "\n")
			if !seen && strings.HasPrefix(sc.Text(), "@ckp ready") {
				seen = true
				close(readyc)
			}
		}
	}()
	select {
	case <-readyc:
	case <-drained:
		c1.Wait()
		return fmt.Errorf("the first child ended before it was ready")
	}
	time.Sleep(d)
	c1.Process.Signal(syscall.SIGKILL)
	<-drained
	err = c1.Wait()
	say("killed (%v)", err)
	c2 := startChild("2")
	c2.Stdout = os.Stdout
	if err := c2.Run(); err != nil {
		return fmt.Errorf("the restarted child: %w", err)
	}
	return fmt.Errorf("the restarted child exited")
}

func startChild(n string) *exec.Cmd {
	c := exec.Command("/proc/self/exe")
	c.Env = append(os.Environ(), "CKP_CHILD="+n)
	c.Stderr = os.Stderr
	return c
}

// ckpFinal inspects the file, saves twice more, closes it and inspects it
// again after reopening.
func ckpFinal(opts *engine.Options, cfg ckpcheck.Config) error {
	s, rep := ckpcheck.OpenAndInspect(ckpPath, opts, cfg, "guest")
	sayJSON("report", rep)
	if s == nil {
		return fmt.Errorf("open after the power cut: %s", rep.OpenError)
	}
	start := s.Newest() + 1
	for v := start; v < start+2; v++ {
		for i, r := range s.Regions {
			cfg.Fill(r, i, v, 0)
		}
		if err := s.F.SaveAll(); err != nil {
			return fmt.Errorf("SaveAll of version %d after recovery: %w", v, err)
		}
	}
	if err := s.F.Close(); err != nil {
		return fmt.Errorf("close after recovery: %w", err)
	}
	s, rep = ckpcheck.OpenAndInspect(ckpPath, opts, cfg, "guest")
	sayJSON("reopen", rep)
	if s == nil {
		return fmt.Errorf("reopen after Close: %s", rep.OpenError)
	}
	return s.F.Close()
}

func parsePolicy(s string) (engine.SyncPolicy, error) {
	switch {
	case s == "always":
		return engine.SyncAlways, nil
	case s == "none":
		return engine.SyncNone, nil
	case strings.HasPrefix(s, "every"):
		n, err := strconv.Atoi(s[len("every"):])
		if err != nil || n < 1 {
			return engine.SyncNone, fmt.Errorf("bad CKP_POLICY %q", s)
		}
		return engine.SyncEvery(n), nil
	}
	return engine.SyncNone, fmt.Errorf("bad CKP_POLICY %q (always, every<N>, none)", s)
}

// durableAt reports whether the n-th SaveAll since Open is a durable point
// under the policy: every one under always, every N-th under every<N>.
func durableAt(pol string, n int) bool {
	switch {
	case pol == "always":
		return true
	case strings.HasPrefix(pol, "every"):
		k, _ := strconv.Atoi(pol[len("every"):])
		return n%k == 0
	}
	return false
}

func sayJSON(tag string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		say("%s {\"OpenError\": %q}", tag, err.Error())
		return
	}
	say("%s %s", tag, b)
}
