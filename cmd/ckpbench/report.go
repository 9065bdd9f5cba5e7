package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ckp-go/ckp/bench"
)

// row is one variant of one section: the median of its rounds.
type row struct {
	Section     string             `json:"section"`
	Variant     string             `json:"variant"`
	Policy      string             `json:"policy,omitempty"`
	Size        int                `json:"size"`
	Regions     int                `json:"regions"`
	Saves       int                `json:"saves"`
	Keep        int                `json:"keep,omitempty"`
	Compute     float64            `json:"compute,omitempty"`
	BytesPerSec float64            `json:"bytes_per_sec"`
	SavesPerSec float64            `json:"saves_per_sec"`
	Mean        time.Duration      `json:"mean_ns"`
	P50         time.Duration      `json:"p50_ns"`
	P99         time.Duration      `json:"p99_ns"`
	Ratios      map[string]float64 `json:"ratios,omitempty"` // this row's throughput / each baseline's
	baseline    bool
}

type goal struct {
	Goal   string  `json:"goal"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail"`
}

type report struct {
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Rounds is how many rounds of the jobs ran: RoundsAsked (-rounds) unless the
	// run would have ended past Budget (-budget; 0 for none).
	Rounds      int           `json:"rounds"`
	RoundsAsked int           `json:"rounds_asked"`
	Budget      time.Duration `json:"budget_ns,omitempty"`
	// Shortened counts the runs made shorter (fewer saves) to stay within Budget.
	Shortened  int                  `json:"shortened,omitempty"`
	GOMAXPROCS int                  `json:"gomaxprocs"`
	GoVersion  string               `json:"go_version"`
	GOOS       string               `json:"goos"`
	Kernel     string               `json:"kernel"`
	Rows       []*row               `json:"rows"`
	Reopen     *bench.ReopenResult  `json:"reopen,omitempty"`
	Regions    *bench.RegionsResult `json:"regions,omitempty"`
	Job        []jobResult          `json:"job,omitempty"`
	Diff       []*bench.DiffResult  `json:"differential,omitempty"`
	Allocs     []allocResult        `json:"allocs,omitempty"`
	Sweep      []*row               `json:"sweep,omitempty"`
	// RemoteStore is the store of the remote section: dir or s3 (location).
	RemoteStore string `json:"remote_store,omitempty"`
	Goals       []goal `json:"goals"`
}

func rowOf(section, label, policy string, r *bench.Result) *row {
	return &row{
		Section: section, Variant: label, Policy: policy,
		Size: r.Config.Size, Regions: max(1, r.Config.Regions), Saves: len(r.Lat),
		Keep: r.Config.Keep, Compute: r.Config.Compute,
		BytesPerSec: r.Throughput(), SavesPerSec: r.Rate(),
		Mean: r.Mean(), P50: r.Percentile(50), P99: r.Percentile(99),
		baseline: !strings.HasPrefix(label, "engine"),
	}
}

func (rep *report) add(j *job) {
	r := rowOf(j.section, j.label, j.policy, j.median())
	if j.section == "restore" && !r.baseline {
		r.Variant = "engine restore"
	}
	rep.Rows = append(rep.Rows, r)
	// Ratios against every baseline of the section (recomputed as rows arrive).
	for _, a := range rep.Rows {
		if a.Section != j.section {
			continue
		}
		a.Ratios = map[string]float64{}
		for _, b := range rep.Rows {
			if b.Section == a.Section && b.baseline && b != a {
				a.Ratios[b.Variant] = a.BytesPerSec / b.BytesPerSec
			}
		}
	}
}

func (rep *report) find(section, variant, policy string) *row {
	for _, r := range rep.Rows {
		if r.Section == section && r.Variant == variant && (policy == "" || r.Policy == policy) {
			return r
		}
	}
	return nil
}

// findSize finds an engine row of a parallel run by size.
func (rep *report) findParallel(variant string, regions int) *row {
	for _, r := range rep.Rows {
		if r.Section == "parallel" && r.Variant == variant && r.Regions == regions {
			return r
		}
	}
	return nil
}

func (rep *report) goals() {
	ratio := func(n, d float64) float64 { return n / d }
	addGoal := func(g string, v float64, target string, met bool, detail string) {
		rep.Goals = append(rep.Goals, goal{g, v, target, met, detail})
	}
	if a := rep.find("save", "append", ""); a != nil {
		for _, e := range rep.Rows {
			if e.Section != "save" || e.baseline || e.Policy != "none" {
				continue
			}
			v := ratio(e.BytesPerSec, a.BytesPerSec)
			addGoal(fmt.Sprintf("1. %s saves, SyncNone, %s, vs hand-written append (throughput)", sizeLabel(e.Size, e.Regions), keepLabel(e.Keep)), v, ">= 2.0x", v >= 2.0,
				fmt.Sprintf("%s vs %s", gbs(e.BytesPerSec), gbs(a.BytesPerSec)))
		}
	}
	for _, r := range rep.Rows {
		if r.Section != "compute" || r.baseline {
			continue
		}
		if m := rep.find("compute", "ram", ""); m != nil {
			v := ratio(r.Mean.Seconds(), m.Mean.Seconds())
			addGoal(fmt.Sprintf("2. %s saves in a compute loop, %s: time in Save vs copy+hash into RAM", sizeLabel(r.Size, r.Regions), keepLabel(r.Keep)), v, "<= 1.0x", v <= 1.0,
				fmt.Sprintf("%v vs %v per save", r.Mean.Round(time.Microsecond), m.Mean.Round(time.Microsecond)))
		}
	}
	if e, a := rep.find("save", "engine", "always"), rep.find("save", "append+fdatasync", ""); e != nil && a != nil {
		v := ratio(e.P50.Seconds(), a.P50.Seconds())
		addGoal(fmt.Sprintf("3. %s saves, SyncAlways: p50 latency vs pwrite+fdatasync", sizeLabel(e.Size, e.Regions)), v, "<= 1.0x", v <= 1.0,
			fmt.Sprintf("%v vs %v", e.P50.Round(time.Microsecond), a.P50.Round(time.Microsecond)))
	}
	if a := rep.find("small", "append", ""); a != nil {
		for _, e := range rep.Rows {
			if e.Section != "small" || e.baseline || e.Policy != "none" {
				continue
			}
			v := ratio(e.SavesPerSec, a.SavesPerSec)
			addGoal(fmt.Sprintf("4. 4 KiB saves per second, %s, vs hand-written append", keepLabel(e.Keep)), v, ">= 6x", v >= 6,
				fmt.Sprintf("%.0f/s vs %.0f/s", e.SavesPerSec, a.SavesPerSec))
		}
	}
	if m := rep.find("small", "ram", ""); m != nil {
		for _, e := range rep.Rows {
			if e.Section != "small" || e.baseline || e.Policy != "none" {
				continue
			}
			// Issue 14: keeping every version within 3x of copy+hash into RAM, a bounded
			// rotation within 2x.
			limit := 3.0
			if e.Keep > 0 {
				limit = 2
			}
			v := ratio(m.SavesPerSec, e.SavesPerSec)
			addGoal(fmt.Sprintf("4. 4 KiB saves, %s: time per save vs copy+hash into RAM", keepLabel(e.Keep)), v, fmt.Sprintf("<= %gx", limit), v <= limit,
				fmt.Sprintf("%v vs %v per save", time.Duration(float64(time.Second)/e.SavesPerSec), time.Duration(float64(time.Second)/m.SavesPerSec)))
		}
	}
	for _, regions := range []int{1, 16} {
		if e, s := rep.findParallel("engine", regions), rep.findParallel("engine/1 worker", regions); e != nil && s != nil {
			v := ratio(e.BytesPerSec, s.BytesPerSec)
			addGoal(fmt.Sprintf("5. %s: all cores vs one goroutine", sizeLabel(e.Size, e.Regions)), v, ">= 1.6x", v >= 1.6,
				fmt.Sprintf("%s vs %s", gbs(e.BytesPerSec), gbs(s.BytesPerSec)))
		}
	}
	if e, m := rep.find("restore", "engine restore", ""), rep.find("restore", "ram", ""); e != nil && m != nil {
		v := ratio(e.BytesPerSec, m.BytesPerSec)
		addGoal(fmt.Sprintf("6. restore of a cached %s version vs copy+hash into RAM", sizeLabel(e.Size, e.Regions)), v, ">= 0.8x", v >= 0.8,
			fmt.Sprintf("%s vs %s", gbs(e.BytesPerSec), gbs(m.BytesPerSec)))
	}
	if len(rep.Allocs) > 0 {
		worst := 0.0
		var parts []string
		for _, a := range rep.Allocs {
			worst = math.Max(worst, a.AllocsPerSave)
			parts = append(parts, fmt.Sprintf("%s: %.1f allocs/save, heap %+d B", sizeLabel(a.Size, 1), a.AllocsPerSave, a.HeapGrowth))
		}
		addGoal("7. engine heap allocations per save in steady state", worst, "0", worst == 0, strings.Join(parts, "; "))
	}
	if r := rep.Reopen; r != nil {
		v := r.Ratio()
		addGoal(fmt.Sprintf("8. reopen a file of %d versions for writing vs reading its index once", r.Versions), v, "<= 2x", v <= 2,
			fmt.Sprintf("%v vs %v (%d MiB index); read-only open %v", r.Open.Round(time.Microsecond), r.ReadIndex.Round(time.Microsecond), r.IndexBytes>>20, r.OpenRead.Round(time.Microsecond)))
	}
	if r := rep.Regions; r != nil {
		v := r.RegisterRatio()
		addGoal(fmt.Sprintf("9. register %d regions vs a map and sorted list of them", r.Regions), v, "<= 10x", v <= 10,
			fmt.Sprintf("%v vs %v", r.Register.Round(time.Microsecond), r.RegisterBase.Round(time.Microsecond)))
		v = r.OpenRatio()
		addGoal(fmt.Sprintf("10. reopen a file of %d SaveAlls of %d regions for writing vs reading its index once", r.SaveAlls, r.Regions), v, "<= 20x", v <= 20,
			fmt.Sprintf("%v vs %v (%d KiB index)", r.Open.Round(time.Microsecond), r.ReadIndex.Round(time.Microsecond), r.IndexBytes>>10))
	}
	if len(rep.Job) > 1 {
		// Requests per rank must not grow with the job: the largest job against the
		// smallest, for each operation.
		small, large := rep.Job[0], rep.Job[len(rep.Job)-1]
		for _, op := range bench.JobOps {
			s, l := small.Ops[op].Requests, large.Ops[op].Requests
			v := ratio(l, s)
			var per []string
			for _, j := range rep.Job {
				per = append(per, fmt.Sprintf("%.2f", j.Ops[op].Requests))
			}
			addGoal(fmt.Sprintf("job: store requests per rank, %s, %d ranks vs %d", op, large.Ranks, small.Ranks), v, "<= 2x", v <= 2,
				fmt.Sprintf("%s requests per rank at %s ranks; %.2f keys listed at %d", strings.Join(per, " / "), jobRanksLabel(rep.Job), large.Ops[op].Listed, large.Ranks))
		}
	}
	rep.diffGoals(addGoal)
	rep.remoteGoals(addGoal)
	if k, a := rep.keepRows(); k != nil && a != nil {
		v := ratio(k.BytesPerSec, a.BytesPerSec)
		addGoal(fmt.Sprintf("retention: %s saves with KeepVersions=%d vs keep-all", sizeLabel(k.Size, k.Regions), k.Keep), v, "(report)", true,
			fmt.Sprintf("%s vs %s", gbs(k.BytesPerSec), gbs(a.BytesPerSec)))
	}
}

// keepRows returns the rows that compare retention with keep-all: the keep section's,
// or else the save section's SyncNone engine rows.
func (rep *report) keepRows() (k, all *row) {
	for _, section := range []string{"keep", "save"} {
		for _, r := range rep.Rows {
			if r.Section == section && !r.baseline && (r.Policy == "none" || r.Policy == "") {
				if r.Keep > 0 {
					k = r
				} else {
					all = r
				}
			}
		}
		if k != nil && all != nil {
			return k, all
		}
		k, all = nil, nil
	}
	return nil, nil
}

func sizeLabel(size, regions int) string {
	s := humanSize(size)
	if regions > 1 {
		return fmt.Sprintf("%d x %s", regions, s)
	}
	return s
}

func humanSize(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func gbs(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f GB/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.0f MB/s", bps/1e6)
	}
	return fmt.Sprintf("%.0f kB/s", bps/1e3)
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%dns", d.Nanoseconds())
}

func (rep *report) writeTable(w io.Writer) error {
	rounds := ""
	if rep.Rounds < rep.RoundsAsked || rep.Shortened > 0 {
		rounds = fmt.Sprintf("; %d of %d rounds, %d runs shortened (to stay within -budget %v)", rep.Rounds, rep.RoundsAsked, rep.Shortened, rep.Budget)
	}
	fmt.Fprintf(w, "ckpbench: %s, GOMAXPROCS=%d, %s, kernel %s; %s%s\n\n", rep.GOOS, rep.GOMAXPROCS, rep.GoVersion, rep.Kernel, rep.Elapsed.Round(time.Second), rounds)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tVARIANT\tSYNC\tTHROUGHPUT\tSAVES/S\tP50\tP99\tRATIO TO BASELINES")
	section := ""
	for _, r := range rep.Rows {
		if section != "" && r.Section != section {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
		}
		section = r.Section
		wl := r.Section + " " + sizeLabel(r.Size, r.Regions)
		if r.Compute > 0 {
			wl += fmt.Sprintf(" +%gx compute", r.Compute)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\n", wl, r.Variant, dash(r.Policy), gbs(r.BytesPerSec), r.SavesPerSec,
			dur(r.P50), dur(r.P99), ratios(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Goals) > 0 {
		fmt.Fprintln(w, "\nGOALS")
		tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, g := range rep.Goals {
			mark := "met"
			if !g.Met {
				mark = "NOT MET"
			}
			if g.Target == "(report)" {
				mark = ""
			}
			fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%s\n", g.Goal, g.Value, g.Target, mark, g.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ratios(r *row) string {
	var parts []string
	for _, b := range []string{"ram", "append", "append+fdatasync", "rename", "bbolt-nosync", "bbolt", "engine/1 worker", "engine/keep all", "direct upload", "direct download", "remote off"} {
		if v, ok := r.Ratios[b]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2fx", b, v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "  ")
}

func (rep *report) writeJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(rep)
}

// writeBenchstat prints one Go benchmark line per row, so that two runs can be compared
// with `benchstat old.txt new.txt`.
func (rep *report) writeBenchstat(w io.Writer) error {
	fmt.Fprintf(w, "goos: %s\ngoarch: %s\npkg: github.com/ckp-go/ckp/cmd/ckpbench\n", rep.GOOS, goarch())
	for _, r := range append(append([]*row{}, rep.Rows...), rep.Sweep...) {
		name := fmt.Sprintf("BenchmarkCkp/section=%s/size=%s/regions=%d/variant=%s", r.Section,
			strings.ReplaceAll(humanSize(r.Size), " ", ""), r.Regions, strings.NewReplacer(" ", "-", "/", "-").Replace(r.Variant))
		if r.Policy != "" {
			name += "/sync=" + r.Policy
		}
		fmt.Fprintf(w, "%s-%d\t%d\t%d ns/op\t%.2f MB/s\t%d p50-ns\t%d p99-ns\n", name, rep.GOMAXPROCS, r.Saves,
			r.Mean.Nanoseconds(), r.BytesPerSec/1e6, r.P50.Nanoseconds(), r.P99.Nanoseconds())
	}
	if r := rep.Reopen; r != nil {
		fmt.Fprintf(w, "BenchmarkCkp/section=reopen/versions=%d-%d\t1\t%d ns/op\t%d read-only-ns\t%d read-index-ns\n", r.Versions, rep.GOMAXPROCS, r.Open.Nanoseconds(), r.OpenRead.Nanoseconds(), r.ReadIndex.Nanoseconds())
	}
	for _, j := range rep.Job {
		for _, op := range bench.JobOps {
			fmt.Fprintf(w, "BenchmarkCkp/section=job/op=%s/ranks=%d-%d\t1\t%.2f requests/rank\t%.2f listed/rank\n",
				strings.NewReplacer(" ", "-", ",", "").Replace(op), j.Ranks, rep.GOMAXPROCS, j.Ops[op].Requests, j.Ops[op].Listed)
		}
	}
	if r := rep.Regions; r != nil {
		fmt.Fprintf(w, "BenchmarkCkp/section=regions/op=register/regions=%d-%d\t1\t%d ns/op\t%d baseline-ns\n", r.Regions, rep.GOMAXPROCS, r.Register.Nanoseconds(), r.RegisterBase.Nanoseconds())
		fmt.Fprintf(w, "BenchmarkCkp/section=regions/op=reopen/regions=%d-%d\t1\t%d ns/op\t%d read-index-ns\n", r.Regions, rep.GOMAXPROCS, r.Open.Nanoseconds(), r.ReadIndex.Nanoseconds())
	}
	return nil
}

func keepLabel(k int) string {
	if k > 0 {
		return fmt.Sprintf("KeepVersions=%d", k)
	}
	return "keeping every version"
}

// diff finds the differential run of a mode and share.
func (rep *report) diff(m bench.DiffMode, fr float64) *bench.DiffResult {
	for _, d := range rep.Diff {
		if d.Config.Mode == m && d.Config.Fraction == fr {
			return d
		}
	}
	return nil
}

// diffGoals adds issue 13's goals from the differential section.
func (rep *report) diffGoals(addGoal func(g string, v float64, target string, met bool, detail string)) {
	if len(rep.Diff) == 0 {
		return
	}
	size := humanSize(rep.Diff[0].Config.Size)
	full, tr, ha := rep.diff(bench.DiffFull, 0.01), rep.diff(bench.DiffTracking, 0.01), rep.diff(bench.DiffHashing, 0.01)
	if full != nil && tr != nil {
		v := tr.MeanSave().Seconds() / full.MeanSave().Seconds()
		// Goal D1 is for a machine whose faults are cheap; where they are not, the
		// engine hashes, and the goal is the hashing path's.
		target, met := "<= 0.05x", v <= 0.05
		if tr.Tracked == 0 && ha != nil {
			h := ha.MeanSave().Seconds() / full.MeanSave().Seconds()
			target, met = fmt.Sprintf("<= %.2fx (hashing)", 1.05*h), v <= 1.05*h
		}
		addGoal(fmt.Sprintf("D1. %s, 1%% of pages written, KeepVersions=3: time in Save, differential vs full", size), v, target, met,
			fmt.Sprintf("%v vs %v; %s, %d of %d saves tracked, a fault %v", tr.MeanSave().Round(time.Microsecond), full.MeanSave().Round(time.Microsecond),
				tr.Detection, tr.Tracked, len(tr.Save), tr.FaultCost.Round(10*time.Nanosecond)))
		v = tr.DeltaShare()
		addGoal(fmt.Sprintf("D1. %s, 1%% of pages written: bytes a delta adds, share of the region", size), 100*v, "<= 1.5%", v <= 0.015,
			fmt.Sprintf("%.2f%% per delta, %.2f%% per save with the full versions", 100*v, 100*tr.WrittenShare()))
	}
	if full != nil && ha != nil {
		v := ha.MeanSave().Seconds() / full.MeanSave().Seconds()
		addGoal(fmt.Sprintf("D1. %s, 1%% of pages written: time in Save, differential by hashing vs full", size), v, "<= 0.5x", v <= 0.5,
			fmt.Sprintf("%v vs %v", ha.MeanSave().Round(time.Microsecond), full.MeanSave().Round(time.Microsecond)))
	}
	if ns := rep.diff(bench.DiffNoScrub, 0.01); tr != nil && ns != nil && tr.Tracked > 0 && ns.Tracked > 0 {
		v := tr.MeanSave().Seconds() / ns.MeanSave().Seconds()
		addGoal(fmt.Sprintf("D5. %s, 1%% of pages written: time in Save, tracked with the scrub vs without", size), v, "<= 1.1x", v <= 1.1,
			fmt.Sprintf("%v vs %v (the default ScrubSaves)", tr.MeanSave().Round(time.Microsecond), ns.MeanSave().Round(time.Microsecond)))
	}
	if f, d := rep.diff(bench.DiffFull, 1), rep.diff(bench.DiffTracking, 1); f != nil && d != nil {
		v := d.MeanSave().Seconds() / f.MeanSave().Seconds()
		addGoal(fmt.Sprintf("D2. %s, 100%% of pages written: time in Save, differential vs full", size), v, "<= 1.1x", v <= 1.1,
			fmt.Sprintf("%v vs %v (%s)", d.MeanSave().Round(time.Microsecond), f.MeanSave().Round(time.Microsecond), d.Detection))
	}
	for _, fr := range diffFractions {
		f, d := rep.diff(bench.DiffFull, fr), rep.diff(bench.DiffTracking, fr)
		if f == nil || d == nil {
			continue
		}
		v := d.MeanLoop().Seconds() / f.MeanLoop().Seconds()
		addGoal(fmt.Sprintf("D3. %s, %g%% of pages written: whole loop (writes + save), differential vs full", size, 100*fr), v, "<= 1.05x", v <= 1.05,
			fmt.Sprintf("%v (writes %v, %d of %d saves tracked) vs %v (writes %v)", d.MeanLoop().Round(time.Microsecond), bench.Mean(d.Write).Round(time.Microsecond),
				d.Tracked, len(d.Save), f.MeanLoop().Round(time.Microsecond), bench.Mean(f.Write).Round(time.Microsecond)))
	}
	if full != nil && tr != nil && len(tr.Restore) > 0 && len(full.Restore) > 0 {
		v := full.MeanRestore().Seconds() / tr.MeanRestore().Seconds()
		addGoal(fmt.Sprintf("D4. %s: restore of a differential version vs of a full version (speed)", size), v, ">= 0.8x", v >= 0.8,
			fmt.Sprintf("%v vs %v", tr.MeanRestore().Round(time.Microsecond), full.MeanRestore().Round(time.Microsecond)))
	}
}

// remoteGoals adds the remote tier's goals (issue 18's wording).
func (rep *report) remoteGoals(addGoal func(string, float64, string, bool, string)) {
	put, get := "writing and fsyncing a file per version in the same directory", "reading the file back from the disk into a buffer"
	if strings.HasPrefix(rep.RemoteStore, "s3") {
		put, get = "PutObject calls of the same bytes with minio-go", "minio-go GetObject of the same bytes into a buffer"
	}
	if e, d := rep.find("remote-upload", "engine save to commit", ""), rep.find("remote-upload", "direct upload", ""); e != nil && d != nil {
		v := e.BytesPerSec / d.BytesPerSec
		addGoal(fmt.Sprintf("11. remote tier, %s: from the first SaveAll of %d versions of %s to Flush returning vs %d %s (throughput)", rep.RemoteStore, e.Regions, humanSize(e.Size), e.Regions, put), v, ">= 0.9x", v >= 0.9,
			fmt.Sprintf("%s vs %s", gbs(e.BytesPerSec), gbs(d.BytesPerSec)))
	}
	var on, off *row
	for _, r := range rep.Rows {
		if r.Section == "remote-compute" && !strings.HasSuffix(r.Variant, discardLabel) {
			if r.baseline {
				off = r
			} else {
				on = r
			}
		}
	}
	if on != nil && off != nil {
		v := on.Mean.Seconds() / off.Mean.Seconds()
		addGoal(fmt.Sprintf("12. remote tier, %s: time inside Save with the tier on vs off (compute loop, %s, %s)", rep.RemoteStore, sizeLabel(on.Size, on.Regions), strings.TrimPrefix(on.Variant, "engine/")), v, "<= 1.05x", v <= 1.05,
			fmt.Sprintf("%v vs %v per save", on.Mean.Round(time.Microsecond), off.Mean.Round(time.Microsecond)))
	}
	if e, d := rep.find("remote-newnode", "engine new node", ""), rep.find("remote-newnode", "direct download", ""); e != nil && d != nil {
		v := e.BytesPerSec / d.BytesPerSec
		addGoal(fmt.Sprintf("13. remote tier, %s: restore on a new node (Open + RestoreAll(0)) of a %s version vs %s", rep.RemoteStore, humanSize(e.Size), get), v, ">= 0.9x", v >= 0.9,
			fmt.Sprintf("%s vs %s", gbs(e.BytesPerSec), gbs(d.BytesPerSec)))
	}
}

// discardLabel ends the label of the remote-compute row whose store keeps no data (at
// the direct upload's speed).
const discardLabel = "store keeping no data at the direct upload's speed"

// jobResult is what the job section counted for one size of job.
type jobResult struct {
	Ranks int                    `json:"ranks"`
	Ops   map[string]bench.JobOp `json:"ops"`
}

// jobRanksLabel is "8 / 64 / 1000".
func jobRanksLabel(js []jobResult) string {
	var s []string
	for _, j := range js {
		s = append(s, fmt.Sprint(j.Ranks))
	}
	return strings.Join(s, " / ")
}
