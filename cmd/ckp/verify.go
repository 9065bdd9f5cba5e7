package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ckp-go/ckp/engine"
	"github.com/spf13/cobra"
)

type verifyOptions struct {
	sf   storeFlags // when file is a store location
	file string
	json bool
}

func newVerifyCmd(e *env) *cobra.Command {
	var o verifyOptions
	c := &cobra.Command{
		Use:   "verify FILE|LOCATION",
		Short: "Check every version's hash and the index's consistency",
		Long: `verify reads every kept version of every checkpoint in FILE and checks its slot
trailer and its payload against its hash, checks that no two kept versions overlap in
the data file, and reports what reading the index had to drop. It prints each damaged
version (NAME@VERSION, offset, reason) and a summary line.

Exit status: 0 when everything is intact, 1 when something is damaged (also when the
file cannot be opened because it or its index is damaged or missing: ` + "`ckp repair`" + `
may help), 2 on usage or I/O errors.

The end of the index: records after the last complete transaction (a torn write, or a
save that never finished) are dropped when the file is opened and hold no kept
version. If a writer holds FILE (before or after the check), such a tail is normal: it
is the save in progress, and verify only notes it. If no writer holds FILE, the tail is
left over from a crash or is damage, and verify counts it as damage (exit 1); the next
writer drops it, and ` + "`ckp repair`" + ` rebuilds the index from the data file.
Transactions dropped at open because their data did not survive a reboot (what the
sync policy allowed to be lost) are noted but are not damage.

While a writer is saving, a version of the view verify opened may be dropped by
retention and its space reused before verify reads it; verify then looks again with a
fresh view and does not count versions that are no longer kept as damaged.

With a store LOCATION it checks every version a rank committed there: its manifest,
and that every data object it names exists and holds bytes that match its hashes.
` + storeHelp,
		Example: `  ckp verify run.ckp && echo intact
  ckp verify --json run.ckp`,
		Args: nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			if isLocation(o.file) {
				e.code = runVerifyStore(e, o, &o.sf)
				return nil
			}
			e.code = runVerify(e, o)
			return nil
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	addStoreFlags(c, &o.sf)
	return c
}

type damagedJSON struct {
	jsonName
	Version int    `json:"version"`
	Offset  int64  `json:"offset"`
	Reason  string `json:"reason"`
}

type recoveryJSON struct {
	Records        int64  `json:"records"`
	DroppedRecords int64  `json:"dropped_records"`
	TornTail       bool   `json:"torn_tail"`
	Invalid        string `json:"invalid,omitempty"`
	Verified       int    `json:"verified"`
	DroppedTxns    int    `json:"dropped_txns"`
}

func mkRecoveryJSON(r engine.Recovery) recoveryJSON {
	return recoveryJSON{r.Records, r.DroppedRecords, r.TornTail, r.Invalid, r.Verified, r.DroppedTxns}
}

type verifyJSON struct {
	File         string        `json:"file"`
	OK           bool          `json:"ok"`
	Error        string        `json:"error,omitempty"`
	WriterActive bool          `json:"writer_active"`
	Checkpoints  int           `json:"checkpoints"`
	Versions     int           `json:"versions"`
	Bytes        int64         `json:"bytes"`
	Damaged      []damagedJSON `json:"damaged"`
	Overlaps     []string      `json:"overlaps"`
	Index        recoveryJSON  `json:"index"`
	TailIgnored  bool          `json:"tail_ignored"`         // torn tail not counted: a writer is active
	Changed      int           `json:"changed_during_check"` // versions the writer dropped while they were checked
}

// verifyResult is the outcome of a verification, before it is printed.
type verifyResult struct {
	rep          engine.VerifyReport
	damaged      []engine.Damaged
	changed      int
	writerActive bool
	tailDamage   bool // the index tail counts as damage
}

func (r *verifyResult) ok() bool {
	return len(r.damaged) == 0 && len(r.rep.Overlaps) == 0 && r.rep.Recovery.Invalid == "" && !r.tailDamage
}

func runVerify(e *env, o verifyOptions) int {
	activeBefore := writerActive(o.file)
	f, err := openFile(o.file)
	if err != nil {
		if !errors.Is(err, engine.ErrCorrupt) {
			return e.fail(err)
		}
		// The file or its index is damaged (or missing): that is what verify reports.
		if o.json {
			out := verifyJSON{File: o.file, Error: errText(err), WriterActive: activeBefore,
				Damaged: []damagedJSON{}, Overlaps: []string{}}
			if werr := writeJSON(e.stdout, out); werr != nil {
				return e.fail(werr)
			}
		} else {
			fmt.Fprintf(e.stdout, "%s: DAMAGED: cannot open: %s\n", o.file, errText(err))
		}
		return exitDamage
	}
	defer f.Close()
	info, err := f.Info()
	if err != nil {
		return e.fail(err)
	}
	var progress func(done, total int64)
	if !o.json && isTerminal(e.stderr) {
		last := -1
		progress = func(done, total int64) {
			if total <= 0 {
				return
			}
			if pct := int(done * 100 / total); pct != last {
				last = pct
				fmt.Fprintf(e.stderr, "\rverifying %s: %3d%%", o.file, pct)
			}
		}
	}
	rep, err := f.Verify(progress)
	if progress != nil {
		fmt.Fprintf(e.stderr, "\r\033[K")
	}
	if err != nil {
		return e.fail(err)
	}
	res := verifyResult{rep: rep}
	res.writerActive = activeBefore || writerActive(o.file)
	if len(rep.Damaged) > 0 {
		res.damaged, res.changed = recheck(o.file, f, info.DataSize, rep.Damaged)
	}
	res.tailDamage = rep.Recovery.TornTail && !res.writerActive
	if o.json {
		return printVerifyJSON(e, o, &res)
	}
	return printVerify(e, o, &res)
}

// recheck looks again, with a fresh view, at the versions the first view found damaged:
// a writer may have dropped them (retention) and reused their space after the view was
// taken, or published them beyond the end of the data file as the view measured it.
// It returns the versions that are really damaged and how many the writer dropped.
func recheck(path string, old *engine.File, oldSize int64, ds []engine.Damaged) (damaged []engine.Damaged, changed int) {
	nf, err := openFile(path)
	if err != nil {
		return ds, 0
	}
	defer nf.Close()
	stale := map[string]map[int]engine.VersionInfo{} // old view's versions, by name
	for _, d := range ds {
		if stale[d.Name] == nil {
			stale[d.Name] = map[int]engine.VersionInfo{}
			vs, _ := old.VersionsOf(d.Name)
			for _, v := range vs {
				stale[d.Name][v.Version] = v
			}
		}
		vs, err := nf.VersionsOf(d.Name)
		if errors.Is(err, engine.ErrNotFound) {
			changed++
			continue
		}
		var now *engine.VersionInfo
		for i := range vs {
			if vs[i].Version == d.Version {
				now = &vs[i]
			}
		}
		if now == nil {
			changed++ // no longer kept: dropped by the writer while we checked
			continue
		}
		was, ok := stale[d.Name][d.Version]
		if ok && now.Offset == was.Offset && now.Hash == was.Hash && was.Offset+was.Stored <= oldSize {
			// Still kept, in the same slot, which the first view could read whole: a kept
			// version's slot is never reused, so the damage is real.
			damaged = append(damaged, d)
			continue
		}
		if _, _, err := nf.ReadVersion(d.Name, d.Version); err != nil {
			d.Reason = err.Error()
			damaged = append(damaged, d)
		}
	}
	return damaged, changed
}

func tailMessage(r engine.Recovery) string {
	return fmt.Sprintf("%d index record(s) after the last complete transaction (a torn write or an unfinished save) were dropped", r.DroppedRecords)
}

func printVerify(e *env, o verifyOptions, res *verifyResult) int {
	w := e.stdout
	rep := &res.rep
	for _, d := range res.damaged {
		fmt.Fprintf(w, "damaged: %s at offset %d: %s\n", at(d.Name, d.Version), d.Offset, errText(errors.New(d.Reason)))
	}
	for _, s := range rep.Overlaps {
		fmt.Fprintf(w, "index: kept versions overlap: %s\n", s)
	}
	if rep.Recovery.Invalid != "" {
		fmt.Fprintf(w, "index: inconsistent record, dropped with everything after it: %s\n", rep.Recovery.Invalid)
	}
	if rep.Recovery.TornTail {
		if res.tailDamage {
			fmt.Fprintf(w, "index: %s; no writer holds the file, so this is left over from a crash or is damage (the next writer drops it; `ckp repair %s` rebuilds the index)\n", tailMessage(rep.Recovery), o.file)
		} else {
			fmt.Fprintf(w, "note: %s; a writer holds the file, so this is the save in progress\n", tailMessage(rep.Recovery))
		}
	}
	if rep.Recovery.DroppedTxns > 0 {
		fmt.Fprintf(w, "note: %d transaction(s) written since the last durable point did not survive a reboot and were dropped\n", rep.Recovery.DroppedTxns)
	}
	if res.changed > 0 {
		fmt.Fprintf(w, "note: %d version(s) were dropped by the writer while being checked\n", res.changed)
	}
	checked := fmt.Sprintf("%d version(s) of %d checkpoint(s), %s", rep.Versions, rep.Checkpoints, humanSize(rep.Bytes))
	if res.ok() {
		fmt.Fprintf(w, "%s: OK: %s intact\n", o.file, checked)
		return exitOK
	}
	var what []string
	if n := len(res.damaged); n > 0 {
		what = append(what, fmt.Sprintf("%d damaged version(s)", n))
	}
	if len(rep.Overlaps) > 0 || rep.Recovery.Invalid != "" {
		what = append(what, "inconsistent index")
	}
	if res.tailDamage {
		what = append(what, "torn index tail")
	}
	fmt.Fprintf(w, "%s: DAMAGED: %s (checked %s)\n", o.file, strings.Join(what, ", "), checked)
	return exitDamage
}

func printVerifyJSON(e *env, o verifyOptions, res *verifyResult) int {
	rep := &res.rep
	out := verifyJSON{
		File: o.file, OK: res.ok(), WriterActive: res.writerActive,
		Checkpoints: rep.Checkpoints, Versions: rep.Versions, Bytes: rep.Bytes,
		Damaged: []damagedJSON{}, Overlaps: append([]string{}, rep.Overlaps...),
		Index:       mkRecoveryJSON(rep.Recovery),
		TailIgnored: rep.Recovery.TornTail && !res.tailDamage,
		Changed:     res.changed,
	}
	for _, d := range res.damaged {
		out.Damaged = append(out.Damaged, damagedJSON{mkJSONName(d.Name), d.Version, d.Offset, errText(errors.New(d.Reason))})
	}
	if err := writeJSON(e.stdout, out); err != nil {
		return e.fail(err)
	}
	if out.OK {
		return exitOK
	}
	return exitDamage
}
