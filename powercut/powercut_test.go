//go:build linux

package powercut

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/powercut/internal/ckpcheck"
)

// Knobs: flags, with environment variables as defaults (handy in CI).
var (
	flagCuts = flag.Int("powercut.cuts", envInt("CKP_POWERCUT_CUTS", 20),
		"power cuts per sync policy (env CKP_POWERCUT_CUTS)")
	flagDiffCuts = flag.Int("powercut.diffcuts", envInt("CKP_POWERCUT_DIFF_CUTS", 12),
		"power cuts of differential saves, under SyncAlways and SyncEvery(4) (env CKP_POWERCUT_DIFF_CUTS)")
	flagRemoteCuts = flag.Int("powercut.remotecuts", envInt("CKP_POWERCUT_REMOTE_CUTS", 6),
		"power cuts with a remote tier in a directory, under SyncAlways (env CKP_POWERCUT_REMOTE_CUTS)")
	flagControlCuts = flag.Int("powercut.controlcuts", envInt("CKP_POWERCUT_CONTROL_CUTS", 3),
		"power cuts of the control, which must lose acknowledged versions (env CKP_POWERCUT_CONTROL_CUTS)")
	flagSeed = flag.Uint64("powercut.seed", uint64(envInt("CKP_POWERCUT_SEED", 0)),
		"seed for the cut delays and region contents; 0 picks one (env CKP_POWERCUT_SEED)")
	flagMinDelay = flag.Duration("powercut.mindelay", envDuration("CKP_POWERCUT_MINDELAY", 150*time.Millisecond),
		"shortest delay from the guest's ready line to the cut (env CKP_POWERCUT_MINDELAY)")
	flagMaxDelay = flag.Duration("powercut.maxdelay", envDuration("CKP_POWERCUT_MAXDELAY", 1200*time.Millisecond),
		"longest delay from the guest's ready line to the cut (env CKP_POWERCUT_MAXDELAY)")
	flagSizes = flag.String("powercut.sizes", getenv("CKP_POWERCUT_SIZES", defaultSizes),
		"region sizes in bytes, comma-separated; NxS is N regions of S bytes (env CKP_POWERCUT_SIZES)")
	flagKeeps = flag.String("powercut.keeps", getenv("CKP_POWERCUT_KEEPS", "0,1,3"),
		"KeepVersions values, one chain of cuts each (env CKP_POWERCUT_KEEPS)")
	flagKill = flag.Bool("powercut.kill", os.Getenv("CKP_POWERCUT_KILL") != "0",
		"kill and restart the guest process before the power cut in cuts 2 and 3 of every 4 (env CKP_POWERCUT_KILL=0 turns it off)")
	flagHostCheck = flag.Bool("powercut.hostcheck", os.Getenv("CKP_POWERCUT_HOSTCHECK") != "0",
		"also copy the files out of the image after each cut and inspect them on the host (env CKP_POWERCUT_HOSTCHECK=0 turns it off)")
	flagKeep = flag.Bool("powercut.keep", os.Getenv("CKP_POWERCUT_KEEP") == "1",
		"keep the built guest and initramfs, and print where (env CKP_POWERCUT_KEEP=1)")
	flagMountOpts = flag.String("powercut.mountopts", os.Getenv("CKP_POWERCUT_MOUNTOPTS"),
		"ext4 mount options in the guest; empty: the guest's default, commit=600 (env CKP_POWERCUT_MOUNTOPTS)")
	flagSysctl = flag.String("powercut.sysctl", os.Getenv("CKP_POWERCUT_SYSCTL"),
		"guest vm sysctls, KEY=VALUE,...; \"none\" leaves the kernel defaults; empty: the guest's default (env CKP_POWERCUT_SYSCTL)")
	flagConsole = flag.Bool("powercut.console", os.Getenv("CKP_POWERCUT_CONSOLE") == "1",
		"log every console line (env CKP_POWERCUT_CONSOLE=1)")
)

const (
	diskSize     = 512 << 20
	defaultSizes = "4096,262144,2097252" // 4 KiB, 256 KiB, 2 MiB + 100 bytes
	// keepAllMaxVer bounds the versions of a KeepVersions=0 file: each
	// SaveAll of the default regions takes about 4 MiB of the data file (the
	// 2 MiB+ region is 2 MiB aligned), and the disk is 512 MiB. A chain of
	// keepAllMaxCuts cuts rarely gets there.
	keepAllMaxVer  = 96
	keepAllMaxCuts = 4
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

// policy is how the guest saves and what it acknowledges.
type policy struct {
	name   string // test name
	policy string // CKP_POLICY: always, every<N>, none
	sync   int    // CKP_SYNC: File.Sync after every sync-th SaveAll (0: never)
	ackAll bool   // CKP_ACK=all: acknowledge every SaveAll (the control)
}

var (
	polAlways  = policy{name: "SyncAlways", policy: "always"}
	polEvery4  = policy{name: "SyncEvery4", policy: "every4"}
	polNone    = policy{name: "SyncNone+Sync3", policy: "none", sync: 3}
	polControl = policy{name: "SyncNone-ackall", policy: "none", ackAll: true}
)

// chain is a sequence of boots on one disk: each boot but the last runs
// the SaveAll loop until the power is cut; the next boot inspects what the
// cut left (recovery under a new boot id) and carries on from it; the last
// boot inspects, saves twice, closes, reopens and inspects again.
//
// The cuts of a chain (but the control's) vary two things, in turn: odd
// cuts run with eager background write-back (unsynced data and index pages
// reach the disk in any order, so recovery has unsynced records to verify);
// in cuts 2 and 3 of every 4, the process is killed and restarted before the
// power cut (the page cache survives the kill; the restarted process's
// durable points must cover what the killed one left unsynced).
type chain struct {
	pol    policy
	keep   int
	cuts   int
	maxVer int // CKP_MAXVER
	sizes  string
	id     int  // distinguishes the chains' seeds
	diff   bool // Options.Differential, with the sparse pattern
	remote bool // a remote tier in a directory of the guest's disk
}

func (c chain) name() string {
	switch {
	case c.diff:
		return fmt.Sprintf("diff-keep%d-%d", c.keep, c.id)
	case c.remote:
		return fmt.Sprintf("remote-keep%d-%d", c.keep, c.id)
	}
	return fmt.Sprintf("keep%d-%d", c.keep, c.id)
}

// chainsFor splits n cuts of a policy into chains, one per KeepVersions
// value in -powercut.keeps, KeepVersions 0 getting half the share of the
// others (its file grows, so its chains are short: at most
// keepAllMaxCuts cuts each, with more chains if needed).
func chainsFor(p policy, n int) []chain {
	keeps := parseKeeps(*flagKeeps)
	if n <= 0 || len(keeps) == 0 {
		return nil
	}
	weight := func(k int) int { return map[bool]int{true: 1, false: 2}[k == 0] }
	total := 0
	for _, k := range keeps {
		total += weight(k)
	}
	var out []chain
	left := n
	for i, k := range keeps {
		cuts := n * weight(k) / total
		if i == len(keeps)-1 {
			cuts = left
		}
		left -= cuts
		for cuts > 0 {
			c := chain{pol: p, keep: k, cuts: cuts, sizes: *flagSizes, id: len(out)}
			if k == 0 {
				c.cuts = min(cuts, keepAllMaxCuts)
				c.maxVer = keepAllMaxVer
			}
			cuts -= c.cuts
			out = append(out, c)
		}
	}
	return out
}

func parseKeeps(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if k, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && k >= 0 {
			out = append(out, k)
		}
	}
	return out
}

// Guest settings for cuts with eager write-back: background write-back
// starts as soon as 64 KiB are dirty, the flusher wakes every 50 ms and
// writes back whatever is older than 50 ms; ext4 commits its journal every
// second.
const (
	eagerSysctl    = "vm.dirty_background_bytes=65536,vm.dirty_writeback_centisecs=5,vm.dirty_expire_centisecs=5"
	eagerMountOpts = "commit=1"
)

// plan is how one boot of a chain runs.
type plan struct {
	delay time.Duration // from "ready" to the power cut
	kill  time.Duration // from "ready" to the process kill; 0: none
	eager bool          // eager write-back
}

// plans draws the plans of a chain's cuts, reproducibly from the seed.
func (c chain) plans() []plan {
	name := c.pol.name + "/" + c.name()
	var h uint64
	for _, ch := range name {
		h = h*31 + uint64(ch)
	}
	r := rand.New(rand.NewPCG(shared.seed, h))
	lo, hi := *flagMinDelay, *flagMaxDelay
	out := make([]plan, c.cuts)
	for i := range out {
		p := &out[i]
		p.delay = lo
		if hi > lo {
			p.delay += time.Duration(r.Int64N(int64(hi - lo)))
		}
		frac := 0.2 + 0.4*r.Float64()
		if c.pol.ackAll {
			continue // the control: plain cuts only
		}
		p.eager = i%2 == 1
		if i%4 >= 2 && *flagKill {
			p.kill = max(time.Duration(float64(p.delay)*frac), time.Millisecond)
		}
	}
	return out
}

func (p plan) String() string {
	s := ""
	if p.kill > 0 {
		s += fmt.Sprintf(", process killed at %v", p.kill.Round(time.Millisecond))
	}
	if p.eager {
		s += ", eager write-back"
	}
	return s
}

// cut is one power cut and what the inspections of its aftermath found.
type cut struct {
	index     int
	plan      plan
	boot, ran time.Duration
	first     int  // the first version this boot saved
	acked     int  // the highest version acknowledged in this boot
	saved     int  // the highest version a SaveAll returned for in this boot
	killedAt  int  // the highest version saved before the kill (-1: no kill happened)
	done      bool // the loop reached CKP_MAXVER before the cut
	expect    ckpcheck.Expect
	fsck      time.Duration
	hostTime  time.Duration // dump + inspection
	reports   [3]*ckpcheck.Report
	problems  [3][]string
	stats     [3]ckpcheck.Stats
}

// Indexes of cut.reports: the inspections of a cut's aftermath.
const (
	kill  = iota // by the restarted process, after the kill (same boot, before the cut)
	host         // on the host, of the files copied out of the image
	guest        // by the next boot
)

var inspectionNames = [3]string{"after kill", "host", "guest"}

func (c *cut) failed() bool {
	for _, p := range c.problems {
		if len(p) > 0 {
			return true
		}
	}
	return false
}

func (c *cut) String() string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	s := fmt.Sprintf("cut %d at %v after ready%s (boot %v): saved %d..%d, acked up to %d (all-time %d)",
		c.index, ms(c.plan.delay), c.plan, ms(c.boot), c.first, c.saved, c.acked, c.expect.Acked)
	if c.plan.kill > 0 && c.killedAt < 0 {
		s += " [the cut came before the kill]"
	}
	if c.done {
		s += " [the loop had finished]"
	}
	for k, r := range c.reports {
		if r == nil {
			continue
		}
		rc := r.Recovered
		s += fmt.Sprintf("\n    %s: kept %s, %d restores exact, %d failed; recovery verified %d, dropped %d txns, %d records",
			inspectionNames[k], keptString(r.Kept), r.Restored, len(r.Failures), rc.Verified, rc.DroppedTxns, rc.DroppedRecords)
		if rc.TornTail {
			s += ", torn tail"
		}
		switch k {
		case host:
			s += fmt.Sprintf(" (e2fsck %v, copy+inspect %v)", ms(c.fsck), ms(c.hostTime))
		default:
			s += fmt.Sprintf(" (inspect %dms)", r.Millis)
		}
		for _, p := range c.problems[k] {
			s += "\n      PROBLEM: " + p
		}
	}
	return s
}

func keptString(k []int) string {
	switch len(k) {
	case 0:
		return "none"
	case 1:
		return strconv.Itoa(k[0])
	}
	return fmt.Sprintf("%d..%d", k[0], k[len(k)-1])
}

// chainResult is a chain's cuts, in order.
type chainResult struct {
	c        chain
	cuts     []*cut
	boots    int
	finalOK  bool
	duration time.Duration
}

func (c chain) params(mode string, seed uint64, p plan) map[string]string {
	m := map[string]string{
		"CKP_WORKLOAD": "ckp",
		"CKP_MODE":     mode,
		"CKP_POLICY":   c.pol.policy,
		"CKP_SYNC":     strconv.Itoa(c.pol.sync),
		"CKP_KEEP":     strconv.Itoa(c.keep),
		"CKP_SIZES":    c.sizes,
		"CKP_SEED":     strconv.FormatUint(seed, 10),
		"CKP_MAXVER":   strconv.Itoa(c.maxVer),
		"CKP_END":      "poweroff",
	}
	if mode == "run" {
		m["CKP_END"] = "hang" // a cut run must never end in a clean shutdown
	}
	if c.pol.ackAll {
		m["CKP_ACK"] = "all"
	}
	if c.diff {
		m["CKP_DIFF"] = "1"
	}
	if c.remote {
		m["CKP_REMOTE"] = "1"
	}
	if p.kill > 0 {
		m["CKP_KILLAFTER"] = strconv.FormatInt(p.kill.Milliseconds(), 10)
	}
	if p.eager {
		m["CKP_SYSCTL"] = eagerSysctl
		m["CKP_MOUNTOPTS"] = eagerMountOpts
	}
	if *flagMountOpts != "" {
		m["CKP_MOUNTOPTS"] = *flagMountOpts
	}
	if *flagSysctl != "" {
		m["CKP_SYSCTL"] = *flagSysctl
	}
	return m
}

// runChain runs the chain. Durability problems are recorded in the cuts (the
// control expects them); a chain that is not the control stops at the
// first cut with problems. Harness failures end the test.
func runChain(t *testing.T, env *Env, initrd string, c chain) *chainResult {
	start := time.Now()
	res := &chainResult{c: c}
	defer func() { res.duration = time.Since(start) }()
	seed := shared.seed + uint64(c.id)
	sizes, err := ckpcheck.ParseSizes(c.sizes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ckpcheck.Config{Sizes: sizes, Seed: seed, Sparse: c.diff}
	dir := t.TempDir()
	disk, err := env.NewDisk(filepath.Join(dir, "disk.img"), diskSize)
	if err != nil {
		t.Fatal(err)
	}
	plans := c.plans()
	exp := ckpcheck.Expect{Keep: c.keep}
	var prev *cut // the cut whose aftermath this boot inspects
	for i := 0; i <= c.cuts; i++ {
		final := i == c.cuts
		var p plan
		mode := "final"
		o := RunOptions{CutAfter: -1}
		if !final {
			p = plans[i]
			mode = "run"
			o.CutAfter = p.delay
		}
		o.Initramfs = initrd
		o.Disk = disk.Path
		o.Params = c.params(mode, seed, p)
		if *flagConsole {
			o.Console = func(l string) { t.Logf("console %s #%d: %s", c.name(), i, l) }
		}
		r, err := env.Run(context.Background(), o)
		res.boots++
		var msgs []string
		if r != nil {
			msgs = r.Messages
		}
		if prev != nil {
			rep, perr := findReport(msgs, "report")
			if rep == nil && err == nil {
				err = fmt.Errorf("boot %d after cut %d printed no report: %v", i, prev.index, perr)
			}
			if rep != nil {
				prev.reports[guest] = rep
				prev.problems[guest], prev.stats[guest] = rep.Problems(prev.expect)
				// This boot's run saves on top of what the inspection found, which may
				// include an unacknowledged version that survived the cut: the next
				// in-flight SaveAll builds on it, so "at most the next one exists"
				// counts from there.
				exp.Saved = max(exp.Saved, rep.Newest())
				t.Log(prev)
				if prev.failed() {
					if !c.pol.ackAll {
						t.Errorf("cut %d broke the %s promise (KeepVersions %d):\n%v", prev.index, c.pol.name, c.keep, prev)
						return res
					}
					// The control: accept the loss and carry on from what is there.
					exp.Acked = rep.Newest()
				}
			}
		}
		if err != nil {
			t.Fatalf("boot %d: %v", i, err)
		}
		if final {
			rep, perr := findReport(msgs, "reopen")
			if rep == nil {
				t.Fatalf("final boot printed no reopen report: %v", perr)
			}
			n := 0
			if prev != nil && prev.reports[guest] != nil {
				n = prev.reports[guest].Newest()
			}
			e := ckpcheck.Expect{Acked: n + 2, Saved: n + 2, Keep: c.keep}
			if p, _ := rep.Problems(e); len(p) > 0 {
				t.Errorf("after recovery, two SaveAlls, Close and Open:\n  %s", strings.Join(p, "\n  "))
			} else {
				res.finalOK = true
			}
			fr, err := disk.Fsck()
			if err != nil {
				t.Fatal(err)
			}
			if fr.Code != 0 {
				t.Errorf("e2fsck after the final clean power-off: exit %d\n%s", fr.Code, fr.Output)
			}
			break
		}
		cu := &cut{index: i, plan: p, boot: r.Boot, ran: r.Ran}
		pr := progress(msgs)
		cu.first, cu.acked, cu.saved, cu.done, cu.killedAt = pr.first, pr.acked, pr.saved, pr.done, pr.killedAt
		if !r.Cut {
			t.Fatalf("boot %d: qemu exited before the cut", i)
		}
		if cu.killedAt >= 0 {
			// Process death loses nothing: every completed SaveAll must be there.
			rep, perr := findReport(msgs, "killreport")
			if rep != nil {
				e := ckpcheck.Expect{Acked: max(exp.Acked, pr.ackedAtKill, cu.killedAt), Saved: max(exp.Saved, cu.killedAt), Keep: c.keep}
				cu.reports[kill] = rep
				cu.problems[kill], cu.stats[kill] = rep.Problems(e)
				// The restarted process saves on top of what survived the kill,
				// which may include the version in flight when it died: its own
				// in-flight SaveAll is the next one after that.
				exp.Saved = max(exp.Saved, rep.Newest())
			} else if !pr.cutBeforeReport {
				t.Fatalf("boot %d: no report after the kill: %v", i, perr)
			}
		}
		exp.Acked = max(exp.Acked, cu.acked)
		exp.Saved = max(exp.Saved, cu.saved, cu.acked)
		cu.expect = exp
		t0 := time.Now()
		fr, err := disk.Fsck()
		cu.fsck = time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		if p := fr.Problems(); len(p) > 0 {
			t.Fatalf("cut %d: e2fsck fixed more than a crash leaves behind: %q\n%s", i, p, fr.Output)
		}
		if *flagHostCheck {
			t0 := time.Now()
			rep, err := hostInspect(disk, filepath.Join(dir, fmt.Sprintf("host%02d", i)), c.keep, cfg)
			cu.hostTime = time.Since(t0)
			if err != nil {
				t.Fatal(err)
			}
			cu.reports[host] = rep
			cu.problems[host], cu.stats[host] = rep.Problems(exp)
		}
		res.cuts = append(res.cuts, cu)
		prev = cu
	}
	return res
}

// runProgress is what a run's protocol lines say.
type runProgress struct {
	first, acked, saved int
	done                bool
	killedAt            int // highest version saved before "killed"; -1: no kill
	ackedAtKill         int
	cutBeforeReport     bool // killed, but the power was cut before the restarted process reported
}

// progress reads a run's protocol lines.
func progress(msgs []string) runProgress {
	p := runProgress{killedAt: -1}
	for _, m := range msgs {
		tag, val, _ := strings.Cut(m, " ")
		switch tag {
		case "done":
			p.done = true
			continue
		case "killed":
			p.killedAt, p.ackedAtKill = p.saved, p.acked
			p.cutBeforeReport = true
			continue
		case "killreport":
			p.cutBeforeReport = false
			continue
		case "acked", "saved":
		default:
			continue
		}
		n, err := strconv.Atoi(val)
		if err != nil {
			continue
		}
		if p.first == 0 {
			p.first = n
		}
		p.saved = max(p.saved, n)
		if tag == "acked" {
			p.acked = max(p.acked, n)
		}
	}
	return p
}

// findReport decodes the guest's "<tag> {json}" line.
func findReport(msgs []string, tag string) (*ckpcheck.Report, error) {
	for _, m := range msgs {
		if js, ok := strings.CutPrefix(m, tag+" "); ok {
			var r ckpcheck.Report
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return nil, fmt.Errorf("bad %s line: %v", tag, err)
			}
			return &r, nil
		}
	}
	return nil, fmt.Errorf("no %q line", tag)
}

// hostInspect copies the ckp files out of the image into dir and inspects
// them with the engine on the host (whose boot id differs from the guest's,
// so recovery verifies the tail too). It works on the copies: the image is
// left for the next boot.
func hostInspect(disk *Disk, dir string, keep int, cfg ckpcheck.Config) (*ckpcheck.Report, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for _, name := range []string{"ckp", "ckp.idx"} {
		if err := disk.Dump("/"+name, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	s, rep := ckpcheck.OpenAndInspect(filepath.Join(dir, "ckp"),
		&engine.Options{KeepVersions: keep, NoPrefault: true}, cfg, "host")
	if s != nil {
		if err := s.F.Close(); err != nil {
			return nil, fmt.Errorf("host: close: %v", err)
		}
	}
	return rep, nil
}

// runPolicy runs the chains of a policy in parallel subtests and returns
// their results once all have finished.
func runPolicy(t *testing.T, chains []chain) []*chainResult {
	env, initrd := setup(t)
	out := make([]*chainResult, len(chains))
	t.Run("chains", func(t *testing.T) {
		for i, c := range chains {
			t.Run(c.name(), func(t *testing.T) {
				t.Parallel()
				out[i] = runChain(t, env, initrd, c)
			})
		}
	})
	return out
}

// summary totals a policy's results.
type summary struct {
	chains, boots, cuts, idleCuts, failedCuts int
	kills, eager                              int
	boot, wall                                time.Duration
	// Per inspection kind (kill, host, guest): inspections, kept versions
	// inspected, acknowledged ones among them, versions recovery verified,
	// transactions it dropped, torn index tails, unacknowledged versions
	// refused as corrupt.
	n, versions, acked, verified, dropped, torn, corrupt [3]int
}

func summarize(rs []*chainResult) summary {
	var s summary
	for _, r := range rs {
		if r == nil {
			continue
		}
		s.chains++
		s.boots += r.boots
		s.wall = max(s.wall, r.duration)
		for _, c := range r.cuts {
			s.cuts++
			s.boot += c.boot
			if c.done {
				s.idleCuts++
			}
			if c.failed() {
				s.failedCuts++
			}
			if c.killedAt >= 0 {
				s.kills++
			}
			if c.plan.eager {
				s.eager++
			}
			for k, rep := range c.reports {
				if rep == nil {
					continue
				}
				st := c.stats[k]
				s.n[k]++
				s.versions[k] += st.Versions
				s.acked[k] += st.AckedVersions
				s.verified[k] += st.Verified
				s.dropped[k] += st.DroppedTxns
				s.corrupt[k] += st.CorruptUnacked
				if rep.Recovered.TornTail {
					s.torn[k]++
				}
			}
		}
	}
	return s
}

func (s summary) String() string {
	mean := time.Duration(0)
	if s.cuts > 0 {
		mean = (s.boot / time.Duration(s.cuts)).Round(time.Millisecond)
	}
	out := fmt.Sprintf("%d cuts (%d with eager write-back, %d after a process kill and restart) in %d chains, %d boots; "+
		"mean boot-to-ready %v, slowest chain %v; %d cuts with problems; %d cuts after the loop had finished",
		s.cuts, s.eager, s.kills, s.chains, s.boots, mean, s.wall.Round(time.Millisecond), s.failedCuts, s.idleCuts)
	for _, k := range []int{guest, host, kill} {
		if s.n[k] == 0 {
			continue
		}
		out += fmt.Sprintf("\n  %s: %d inspections, %d kept versions, %d of them acknowledged; recovery verified %d versions, "+
			"dropped %d transactions, %d torn index tails; %d unacknowledged versions refused as corrupt",
			inspectionNames[k], s.n[k], s.versions[k], s.acked[k], s.verified[k], s.dropped[k], s.torn[k], s.corrupt[k])
	}
	return out
}

// testPolicy runs *flagCuts power cuts of a durable policy: every
// acknowledged version must survive each of them.
func testPolicy(t *testing.T, p policy) {
	t.Parallel()
	rs := runPolicy(t, chainsFor(p, *flagCuts))
	s := summarize(rs)
	t.Logf("%s: %v", p.name, s)
	if t.Failed() {
		return
	}
	if s.cuts < *flagCuts {
		t.Errorf("only %d of %d cuts ran", s.cuts, *flagCuts)
	}
	if s.cuts > 0 && s.acked[guest] == 0 {
		t.Errorf("no acknowledged version was ever inspected: the test proved nothing")
	}
}

func TestPowerCutSyncAlways(t *testing.T) { testPolicy(t, polAlways) }

func TestPowerCutSyncEvery4(t *testing.T) { testPolicy(t, polEvery4) }

func TestPowerCutSyncNoneSync(t *testing.T) { testPolicy(t, polNone) }

// TestPowerCutRemote runs SyncAlways with a remote tier in a directory of the same
// disk: the local promises hold while uploads run, and after every cut each version
// the store committed verifies and holds the bytes of its version.
func TestPowerCutRemote(t *testing.T) {
	t.Parallel()
	n := *flagRemoteCuts
	if n <= 0 {
		t.Skip("no remote cuts (-powercut.remotecuts)")
	}
	var chains []chain
	for _, c := range chainsFor(polAlways, n) {
		c.remote = true
		c.id += 200
		chains = append(chains, c)
	}
	rs := runPolicy(t, chains)
	s := summarize(rs)
	t.Logf("remote: %v", s)
	if t.Failed() {
		return
	}
	if s.cuts < n {
		t.Errorf("only %d of %d cuts ran", s.cuts, n)
	}
	stored := 0
	for _, r := range rs {
		for _, c := range r.cuts {
			if rep := c.reports[guest]; rep != nil && rep.Store != nil {
				stored += rep.Store.Versions
			}
		}
	}
	if stored == 0 {
		t.Errorf("no inspection found a version committed in the store: the test proved nothing")
	}
}

// TestPowerCutDifferential runs the durable policies with differential saves: deltas,
// chains pinned by retention and block maps must survive the cuts as whole versions do.
func TestPowerCutDifferential(t *testing.T) {
	t.Parallel()
	n := *flagDiffCuts
	if n <= 0 {
		t.Skip("no differential cuts (-powercut.diffcuts)")
	}
	var chains []chain
	for i, p := range []policy{polAlways, polEvery4} {
		for _, c := range chainsFor(p, n/2+i*(n%2)) {
			c.diff = true
			c.id += 100 * (i + 1)
			chains = append(chains, c)
		}
	}
	rs := runPolicy(t, chains)
	s := summarize(rs)
	t.Logf("differential: %v", s)
	if t.Failed() {
		return
	}
	if s.cuts < n {
		t.Errorf("only %d of %d cuts ran", s.cuts, n)
	}
	if s.cuts > 0 && s.acked[guest] == 0 {
		t.Errorf("no acknowledged version was ever inspected: the test proved nothing")
	}
}

// TestPowerCutControl proves that the check can fail: the guest runs
// SyncNone and never calls Sync, yet acknowledges every SaveAll as durable.
// With background write-back held off (the guest's sysctls and commit=600),
// a power cut must lose acknowledged versions, and the check must say so.
// If this test fails, the policy tests are not evidence of anything.
func TestPowerCutControl(t *testing.T) {
	t.Parallel()
	n := *flagControlCuts
	if n <= 0 {
		t.Skip("no control cuts (-powercut.controlcuts)")
	}
	c := chain{pol: polControl, keep: 0, cuts: n, maxVer: keepAllMaxVer, sizes: *flagSizes}
	rs := runPolicy(t, []chain{c})
	s := summarize(rs)
	t.Logf("%s: %v", polControl.name, s)
	if t.Failed() {
		return
	}
	t.Logf("control: the check failed after %d of %d cuts (expected: at least 1; every lost acknowledged version is a PROBLEM line above)", s.failedCuts, s.cuts)
	if s.cuts > 0 && s.failedCuts == 0 {
		t.Errorf("control: no cut lost an acknowledged version without any flush; the harness cannot detect missing flushes")
	}
}
