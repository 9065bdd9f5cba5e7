package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/ckp-go/ckp/bench"
	"github.com/ckp-go/ckp/engine"
)

var allSections = []string{"save", "compute", "small", "parallel", "restore", "keep", "reopen", "regions", "alloc", "remote", "job", "differential"}

// jobRanks are the sizes of job the job section counts requests for.
var jobRanks = []int{8, 64, 1000}

// defaultSections run without -run: keep is left out, the save section already
// compares retention with keep-all.
var defaultSections = []string{"save", "compute", "small", "parallel", "restore", "reopen", "regions", "alloc", "remote", "job"}

type options struct {
	dir, sections, size, sync, plot, cpuprofile          string
	remote, endpoint                                     string
	insecure                                             bool
	remoteSize, remoteEvery                              int
	remoteSizeArg                                        string
	regions, saves, keep, retain, rounds, reopenVersions int
	manyRegions, diffSaves                               int
	diffSize                                             string
	diffSizeBytes                                        int
	compute                                              float64
	json, benchstat, quiet                               bool
	budget                                               time.Duration
	budgetGiven                                          bool // -budget was on the command line

	sizeBytes int
	policies  []namedPolicy
	run       map[string]bool
	target    *bench.Remote // the remote section's store
}

type namedPolicy struct {
	name string
	p    engine.SyncPolicy
}

func (o *options) check() error {
	o.sizeBytes = 64 << 20
	if o.size != "" {
		n, err := parseSize(o.size)
		if err != nil {
			return err
		}
		o.sizeBytes = n
	}
	if o.regions == 0 {
		o.regions = 1
	}
	if o.remoteSizeArg != "" {
		n, err := parseSize(o.remoteSizeArg)
		if err != nil {
			return err
		}
		o.remoteSize = n
	}
	if o.remoteEvery < 1 {
		return fmt.Errorf("-remote-every must be at least 1")
	}
	if o.regions < 0 || o.saves < 0 || o.keep < 1 || o.retain < 0 || o.rounds < 1 || o.compute < 0 || o.reopenVersions < 1 || o.manyRegions < 1 {
		return fmt.Errorf("-regions, -saves, -compute must not be negative; -keep, -rounds, -reopen-versions, -many-regions must be at least 1")
	}
	for _, s := range strings.Split(o.sync, ",") {
		p, err := parsePolicy(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		o.policies = append(o.policies, namedPolicy{p.String(), p})
	}
	o.diffSizeBytes = 1 << 30
	if o.diffSize != "" {
		n, err := parseSize(o.diffSize)
		if err != nil {
			return err
		}
		o.diffSizeBytes = n
	}
	if o.diffSaves < 1 {
		return fmt.Errorf("-diff-saves must be at least 1")
	}
	o.run = map[string]bool{}
	for _, s := range strings.Split(o.sections, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allSections, s) {
			return fmt.Errorf("unknown section %q (have %s)", s, strings.Join(allSections, ", "))
		}
		o.run[s] = true
	}
	if o.json && o.benchstat {
		return fmt.Errorf("-json and -benchstat exclude each other")
	}
	if o.budget < 0 {
		return fmt.Errorf("-budget must not be negative")
	}
	if !o.budgetGiven && o.sections != strings.Join(defaultSections, ",") {
		o.budget = 0 // the budget is the default run's unless asked for
	}
	return nil
}

// defaultBudget bounds the default run's time (-budget).
const defaultBudget = 30 * time.Second

// parseSize reads 4096, 4KiB, 64MiB, 1GiB (also K, M, G, KB, MB, GB as binary units).
func parseSize(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suf string
		m   int
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSuffix(t, u.suf), u.m
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// parsePolicy reads none, async, always, every(N), interval(D).
func parsePolicy(s string) (engine.SyncPolicy, error) {
	switch {
	case s == "none":
		return engine.SyncNone, nil
	case s == "async":
		return engine.SyncAsync, nil
	case s == "always":
		return engine.SyncAlways, nil
	case strings.HasPrefix(s, "every(") && strings.HasSuffix(s, ")"):
		n, err := strconv.Atoi(s[6 : len(s)-1])
		if err != nil || n < 1 {
			return engine.SyncPolicy{}, fmt.Errorf("bad policy %q", s)
		}
		return engine.SyncEvery(n), nil
	case strings.HasPrefix(s, "interval(") && strings.HasSuffix(s, ")"):
		d, err := time.ParseDuration(s[9 : len(s)-1])
		if err != nil || d <= 0 {
			return engine.SyncPolicy{}, fmt.Errorf("bad policy %q", s)
		}
		return engine.SyncInterval(d), nil
	}
	return engine.SyncPolicy{}, fmt.Errorf("unknown sync policy %q (none, async, always, every(N), interval(D))", s)
}

// job is one variant of one section, run o.rounds times.
type job struct {
	section string
	v       bench.Variant
	label   string // variant as shown (engine/1 worker, ...)
	cfg     bench.Config
	policy  string
	results []*bench.Result
	run     func(bench.Config) (*bench.Result, error) // instead of bench.Run(v, cfg)
	scale   float64                                   // its share of the planned saves left by the budget (1: all)
}

func (j *job) median() *bench.Result {
	rs := slices.Clone(j.results)
	slices.SortFunc(rs, func(a, b *bench.Result) int {
		switch {
		case a.Throughput() < b.Throughput():
			return -1
		case a.Throughput() > b.Throughput():
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

func runSuite(o *options) (*report, error) {
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ckpbench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	start := time.Now()
	if o.run["remote"] {
		var err error
		if o.remote == "" {
			o.target, err = bench.DirRemote(dir)
		} else if strings.HasPrefix(o.remote, "s3://") {
			o.target, err = bench.S3Remote(o.remote, o.endpoint, o.insecure)
		} else {
			o.target, err = bench.DirRemote(o.remote)
		}
		if err != nil {
			return nil, fmt.Errorf("remote: %w", err)
		}
		defer o.target.Close()
	}
	jobs := plan(o, dir)
	var diffs []bench.DiffConfig
	if o.run["differential"] {
		diffs = diffPlan(o, dir)
	}
	perSection := map[string]int{"differential": len(diffs) * o.rounds}
	for _, j := range jobs {
		perSection[sectionOf(j)] += o.rounds
	}
	for _, s := range []string{"reopen", "alloc", "regions"} {
		if o.run[s] {
			perSection[s] = 1
		}
	}
	if o.run["job"] {
		perSection["job"] = len(jobRanks)
	}
	if o.plot != "" {
		perSection["plot"] = len(sweepSizes) * (len(o.policies) + 1)
	}
	steps := 0
	for _, n := range perSection {
		steps += n
	}
	pc := newPacer(o, perSection, machineScale(copyHashProbe(), freshProbe(dir)))
	if !o.quiet {
		pc.say(os.Stderr, o)
	}
	bar := newBar(o, steps)
	rounds := o.rounds
	skipped, shortened := 0, 0
	// Rounds are interleaved, so that every variant sees the machine in the same moods.
	for r := 0; r < rounds; r++ {
		for _, j := range jobs {
			// Past the budget at the speed measured so far: skip the last rounds
			// first, then make this round's jobs shorter.
			for rounds > r+1 && pc.overBudget(0) {
				rounds--
				skipped++
				for _, k := range jobs {
					pc.drop(sectionOf(k), k.scale)
				}
				bar.Add(len(jobs))
			}
			if f := pc.fit(); f < 1 && j.cfg.Saves > 2 {
				n := max(2, int(float64(j.cfg.Saves)*f))
				frac := float64(n) / float64(j.cfg.Saves)
				pc.shrink(sectionOf(j), j.scale*(1-frac)*float64(rounds-r))
				j.scale *= frac
				j.cfg.Saves = n
				shortened++
			}
			bar.Describe(fmt.Sprintf("%-8s %-18s round %d", j.section, j.label, r+1))
			warmFor(j.cfg)
			var res *bench.Result
			var err error
			switch {
			case j.run != nil:
				res, err = j.run(j.cfg)
			case j.section == "restore" && j.v.Name == "engine":
				res, err = bench.Restore(j.cfg)
			default:
				res, err = bench.Run(j.v, j.cfg)
			}
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", j.section, j.label, err)
			}
			j.results = append(j.results, res)
			bar.Add(1)
			pc.step(sectionOf(j), j.scale)
		}
		if !o.quiet && len(jobs) > 0 {
			pc.sayProgress(os.Stderr, fmt.Sprintf("round %d of %d", r+1, rounds))
		}
	}
	if !o.quiet && skipped+shortened > 0 {
		fmt.Fprintf(os.Stderr, "ckpbench: %d rounds skipped and %d runs shortened to stay within -budget %v\n", skipped, shortened, o.budget)
	}
	rep := &report{Started: start, GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), GOOS: runtime.GOOS,
		Rounds: rounds, RoundsAsked: o.rounds, Budget: o.budget, Shortened: shortened}
	if t := o.target; t != nil {
		rep.RemoteStore = t.Kind
		if t.Kind == "s3" {
			rep.RemoteStore = "s3 (" + t.Loc + ")"
		}
	}
	rep.Kernel = kernelRelease()
	for _, j := range jobs {
		rep.add(j)
	}
	if o.run["reopen"] {
		bar.Describe(fmt.Sprintf("reopen   %d versions", o.reopenVersions))
		ro, err := bench.Reopen(dir, o.reopenVersions, 5)
		if err != nil {
			return nil, fmt.Errorf("reopen: %w", err)
		}
		rep.Reopen = &ro
		bar.Add(1)
		pc.step("reopen", 1)
	}
	if o.run["regions"] {
		bar.Describe(fmt.Sprintf("regions  %d regions", o.manyRegions))
		mr, err := bench.ManyRegions(dir, o.manyRegions, 6, 3)
		if err != nil {
			return nil, fmt.Errorf("regions: %w", err)
		}
		rep.Regions = &mr
		bar.Add(1)
		pc.step("regions", 1)
	}
	if o.run["job"] {
		for _, n := range jobRanks {
			bar.Describe(fmt.Sprintf("job      %d ranks", n))
			d, err := os.MkdirTemp(dir, "job")
			if err != nil {
				return nil, err
			}
			ops, err := bench.JobRequests(d, n)
			os.RemoveAll(d)
			if err != nil {
				return nil, fmt.Errorf("job %d ranks: %w", n, err)
			}
			rep.Job = append(rep.Job, jobResult{Ranks: n, Ops: ops})
			bar.Add(1)
			pc.step("job", 1)
		}
	}
	if len(diffs) > 0 {
		res := make([][]*bench.DiffResult, len(diffs))
		for r := 0; r < o.rounds; r++ {
			for i, cfg := range diffs {
				bar.Describe(fmt.Sprintf("diff     %-8s %5.1f%% round %d", cfg.Mode, 100*cfg.Fraction, r+1))
				bench.Warm(min(int64(cfg.Size)*int64(cfg.Keep+2), 4<<30))
				dr, err := bench.Differential(cfg)
				if err != nil {
					return nil, fmt.Errorf("differential %s %.1f%%: %w", cfg.Mode, 100*cfg.Fraction, err)
				}
				res[i] = append(res[i], dr)
				bar.Add(1)
				pc.step("differential", 1)
			}
		}
		for _, rs := range res {
			rep.Diff = append(rep.Diff, medianDiff(rs))
		}
	}
	if o.run["alloc"] {
		bar.Describe("alloc    engine heap per save")
		a, err := measureAllocs(dir)
		if err != nil {
			return nil, fmt.Errorf("alloc: %w", err)
		}
		rep.Allocs = a
		bar.Add(1)
		pc.step("alloc", 1)
	}
	if o.plot != "" {
		if err := sweep(o, dir, rep, bar); err != nil {
			return nil, err
		}
	}
	bar.Finish()
	rep.Elapsed = time.Since(start)
	rep.goals()
	return rep, nil
}

// sectionOf returns the section a job's time counts in: its own, or remote for the
// remote section's three parts.
func sectionOf(j *job) string {
	if strings.HasPrefix(j.section, "remote") {
		return "remote"
	}
	return j.section
}

// plan lists the runs of the chosen sections.
func plan(o *options, dir string) []*job {
	var jobs []*job
	add := func(section string, v bench.Variant, label string, cfg bench.Config, policy string) {
		cfg.Dir = dir
		jobs = append(jobs, &job{section: section, v: v, label: label, cfg: cfg, policy: policy, scale: 1})
	}
	saves := func(def int) int {
		if o.saves > 0 {
			return o.saves
		}
		return def
	}
	big := bench.Config{Size: o.sizeBytes, Regions: o.regions}
	bigSaves := max(2, (384<<20)/max(1, o.sizeBytes*o.regions))
	if o.run["save"] {
		c := big
		c.Saves, c.Warmup = saves(min(bigSaves, 2000)), 1
		for _, p := range o.policies {
			e := c
			e.Policy = p.p
			e.Keep = o.retain
			e.Warmup = max(e.Warmup, o.retain+1)
			if p.p == engine.SyncAlways {
				e.Saves = max(2, e.Saves/2)
			}
			add("save", bench.Engine, "engine", e, p.name)
		}
		k := c
		k.Keep, k.Warmup = o.keep, o.keep+1
		add("save", bench.Engine, fmt.Sprintf("engine/keep %d", o.keep), k, "none")
		add("save", bench.RAM, "ram", c, "")
		add("save", bench.Append, "append", c, "")
		cs := c
		cs.Saves = max(2, c.Saves/2)
		add("save", bench.AppendSync, "append+fdatasync", cs, "")
		add("save", bench.Rename, "rename", cs, "")
		cb := c
		cb.Saves = max(2, c.Saves/4)
		add("save", bench.BoltNoSync, "bbolt-nosync", cb, "")
		add("save", bench.Bolt, "bbolt", cb, "")
	}
	if o.run["compute"] {
		c := big
		c.Saves, c.Warmup, c.Compute = saves(min(bigSaves, 1000)), 2, o.compute
		// A hot loop keeps a bounded number of versions: the engine with retention
		// (the slot rotation warmed up), and keeping everything.
		k := c
		k.Keep, k.Warmup = o.keep, o.keep+2
		add("compute", bench.Engine, fmt.Sprintf("engine/keep %d", o.keep), k, "none")
		add("compute", bench.Engine, "engine", c, "none")
		add("compute", bench.RAM, "ram", c, "")
		add("compute", bench.Append, "append", c, "")
	}
	if o.run["small"] {
		c := bench.Config{Size: 4 << 10, Saves: saves(100_000), Warmup: 1000}
		// The engine under each policy; those that flush on the save path make fewer
		// saves (each waits for the device).
		for _, p := range o.policies {
			e := c
			e.Policy, e.Keep = p.p, o.retain
			if p.p == engine.SyncAlways || strings.HasPrefix(p.name, "every") {
				e.Saves, e.Warmup = saves(300), 10
			}
			add("small", bench.Engine, "engine", e, p.name)
		}
		k := c
		k.Keep = o.keep
		add("small", bench.Engine, fmt.Sprintf("engine/keep %d", o.keep), k, "none")
		add("small", bench.Append, "append", c, "")
		add("small", bench.RAM, "ram", c, "")
		s := c
		s.Saves, s.Warmup = saves(300), 10
		add("small", bench.AppendSync, "append+fdatasync", s, "")
	}
	if o.run["parallel"] {
		// KeepVersions 1 and two warm-up saves: both slots exist before measuring, so
		// the runs compare copying and hashing, not the first touch of new pages.
		one := bench.Config{Size: 128 << 20, Saves: saves(10), Warmup: 2, Keep: 1}
		add("parallel", bench.Engine, "engine", one, "none")
		one1 := one
		one1.Workers = 1
		add("parallel", bench.Engine, "engine/1 worker", one1, "none")
		many := bench.Config{Size: 4 << 20, Regions: 16, Saves: saves(20), Warmup: 2, Keep: 1}
		add("parallel", bench.Engine, "engine", many, "none")
		many1 := many
		many1.Workers = 1
		add("parallel", bench.Engine, "engine/1 worker", many1, "none")
	}
	if o.run["restore"] {
		c := bench.Config{Size: o.sizeBytes, Regions: o.regions, Saves: saves(10), Warmup: 1}
		add("restore", bench.Engine, "engine", c, "")
		add("restore", bench.RAM, "ram", c, "")
	}
	if o.run["remote"] {
		planRemote(o, add, &jobs)
	}
	if o.run["keep"] {
		c := big
		c.Saves, c.Warmup = saves(min(bigSaves, 2000)), 2
		k := c
		k.Keep = o.keep
		k.Warmup = o.keep + 1 // every slot of the rotation exists before measuring
		add("keep", bench.Engine, fmt.Sprintf("engine/keep %d", o.keep), k, "none")
		add("keep", bench.Engine, "engine/keep all", c, "none")
	}
	return jobs
}

// warmFor warms as much memory as the run will write into new page-cache pages
// (capped), so the host's reclaim of idle guest memory is not what we measure.
func warmFor(cfg bench.Config) {
	saves := int64(cfg.Saves + cfg.Warmup)
	if cfg.Keep > 0 && cfg.Remote == nil {
		// A rotation of Keep slots (and the one being written) after its warm-up.
		saves = min(saves, int64(cfg.Keep)+2)
	}
	n := min(cfg.Bytes()*saves, 1<<30)
	// Memory warmed less than a second ago is still warm (the host takes back memory
	// idle for about two seconds): warming it again would only make the run longer.
	if n <= warmed.n && time.Since(warmed.at) < time.Second {
		return
	}
	bench.Warm(n)
	warmed.n, warmed.at = n, time.Now()
}

// warmed is the last warm-up: how much, and when it ended.
var warmed struct {
	n  int64
	at time.Time
}

// measureAllocs reports the engine's heap allocations per save in steady state, for a
// small and a large region.
func measureAllocs(dir string) ([]allocResult, error) {
	var out []allocResult
	for _, size := range []int{4 << 10, 64 << 20} {
		d, err := os.MkdirTemp(dir, "alloc-")
		if err != nil {
			return nil, err
		}
		f, err := engine.Open(d+"/a.ckp", &engine.Options{KeepVersions: 2})
		if err != nil {
			return nil, err
		}
		region := make([]byte, size)
		c, err := f.Register("r", region)
		if err != nil {
			f.Close()
			return nil, err
		}
		var serr error
		for i := 0; i < 5; i++ {
			serr = c.Save()
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		n := testing.AllocsPerRun(50, func() {
			if err := c.Save(); err != nil {
				serr = err
			}
		})
		runtime.GC()
		runtime.ReadMemStats(&after)
		f.Close()
		os.RemoveAll(d)
		if serr != nil {
			return nil, serr
		}
		out = append(out, allocResult{Size: size, AllocsPerSave: n, HeapGrowth: int64(after.HeapAlloc) - int64(before.HeapAlloc)})
	}
	return out, nil
}

type allocResult struct {
	Size          int     `json:"size"`
	AllocsPerSave float64 `json:"allocs_per_save"`
	HeapGrowth    int64   `json:"heap_growth_bytes"`
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(b))
}

// bar is a progress bar on stderr, or nothing when stderr is not a terminal.
type bar struct{ pb *progressbar.ProgressBar }

func newBar(o *options, steps int) *bar {
	if o.quiet || !isatty.IsTerminal(os.Stderr.Fd()) {
		return &bar{}
	}
	return &bar{progressbar.NewOptions(steps,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true))}
}

func (b *bar) Describe(s string) {
	if b.pb != nil {
		b.pb.Describe(s)
	}
}

func (b *bar) Add(n int) {
	if b.pb != nil {
		_ = b.pb.Add(n)
	}
}

func (b *bar) Finish() {
	if b.pb != nil {
		_ = b.pb.Finish()
	}
}

// diffFractions are the shares of pages the differential section writes between saves.
var diffFractions = []float64{0.001, 0.01, 0.1, 0.5, 1}

// diffPlan lists the differential runs: full saves and differential saves (tracked
// where the engine chooses) at every share, hashed differential saves at 1% and 100%,
// tracked saves without the scrub at 1%.
func diffPlan(o *options, dir string) []bench.DiffConfig {
	var out []bench.DiffConfig
	for _, fr := range diffFractions {
		for _, m := range []bench.DiffMode{bench.DiffFull, bench.DiffTracking, bench.DiffHashing, bench.DiffNoScrub} {
			if m == bench.DiffHashing && fr != 0.01 && fr != 1 || m == bench.DiffNoScrub && fr != 0.01 {
				continue
			}
			out = append(out, bench.DiffConfig{Dir: dir, Size: o.diffSizeBytes, Fraction: fr, Saves: o.diffSaves,
				Warmup: 4, Keep: 3, Mode: m, Restores: 3})
		}
	}
	return out
}

// medianDiff returns the round with the median mean save time.
func medianDiff(rs []*bench.DiffResult) *bench.DiffResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b *bench.DiffResult) int { return int(a.MeanSave() - b.MeanSave()) })
	return s[len(s)/2]
}

// planRemote adds the remote section (issue 18's goals): from the first of 8 SaveAlls
// to Flush returning (every version committed) against writing the same bytes
// directly, time in Save in a compute loop with the tier on and off, and a restore on
// a new node against downloading the same bytes directly.
func planRemote(o *options, add func(string, bench.Variant, string, bench.Config, string), jobs *[]*job) {
	t := o.target
	size := o.remoteSize
	direct := "direct upload"
	with := func(run func(bench.Config, *bench.Remote) (*bench.Result, error)) func(bench.Config) (*bench.Result, error) {
		return func(c bench.Config) (*bench.Result, error) { return run(c, t) }
	}
	up := bench.Config{Size: size, Saves: 8}
	if o.saves > 0 {
		up.Saves = o.saves
	}
	// The engine writes every version twice (its local file, the store): the warm-up
	// before each run (warmFor) covers both. Upload itself runs no warm-up saves.
	up.Warmup = up.Saves
	add("remote-upload", bench.Engine, "engine save to commit", up, "")
	(*jobs)[len(*jobs)-1].run = with(bench.Upload)
	add("remote-upload", bench.Engine, direct, up, "")
	// The direct upload's speed, of the latest run, for the diagnostic below (which runs
	// after it in every round).
	var directNsPerByte atomic.Uint64 // math.Float64bits
	(*jobs)[len(*jobs)-1].run = func(c bench.Config) (*bench.Result, error) {
		res, err := bench.UploadDirect(c, t)
		if err == nil && res.Wall > 0 {
			directNsPerByte.Store(math.Float64bits(float64(res.Wall) / float64(c.Saves*c.Size)))
		}
		return res, err
	}

	// The warm-up runs the slot rotation through a few upload cycles (a version waiting
	// for upload holds its slot), so that the measured saves see the steady state.
	c := bench.Config{Size: size, Compute: o.compute, Keep: o.keep, Saves: max(16, 2*o.remoteEvery), Warmup: o.keep + 2 + 2*o.remoteEvery}
	if o.saves > 0 {
		c.Saves = o.saves
	}
	r := c
	r.Remote = func() (*engine.Remote, error) { return bench.RemoteStore(t, o.remoteEvery, o.keep) }
	add("remote-compute", bench.Engine, fmt.Sprintf("engine/keep %d +remote every %d", o.keep, o.remoteEvery), r, "none")
	// A diagnostic beside goal 12: the same loop over a store that keeps no data, so
	// that the tier's own cost in Save shows apart from the store's work on this machine
	// (a store on the same disk or a server on the same host). It takes each version
	// at the speed the direct upload had (each upload holds its version's slot as long
	// as one to the real store would: a store that answers at once hid that cost).
	d := c
	d.Remote = func() (*engine.Remote, error) {
		perByte := math.Float64frombits(directNsPerByte.Load())
		hold := func(n int64) time.Duration { return time.Duration(perByte * float64(n)) }
		return &engine.Remote{Store: bench.DiscardStore(hold), Every: o.remoteEvery, Keep: o.keep}, nil
	}
	add("remote-compute", bench.Engine, fmt.Sprintf("engine/keep %d +remote every %d, %s", o.keep, o.remoteEvery, discardLabel), d, "none")
	c.Warmup = o.keep + 2 // without uploads the rotation is warm after one turn
	add("remote-compute", bench.Engine, "remote off", c, "none")

	nn := bench.Config{Size: size, Saves: 3, Warmup: 1}
	add("remote-newnode", bench.Engine, "engine new node", nn, "")
	(*jobs)[len(*jobs)-1].run = with(bench.RestoreNewNode)
	add("remote-newnode", bench.Engine, "direct download", nn, "")
	(*jobs)[len(*jobs)-1].run = with(bench.RestoreDirect)
}
