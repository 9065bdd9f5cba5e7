package main

import (
	"errors"
	"fmt"

	"github.com/ckp-go/ckp/engine"
	"github.com/spf13/cobra"
)

type repairOptions struct {
	file   string
	dryRun bool
	json   bool
}

func newRepairCmd(e *env) *cobra.Command {
	var o repairOptions
	c := &cobra.Command{
		Use:   "repair FILE",
		Short: "Rebuild a lost or damaged index from the data file",
		Long: `repair rebuilds the index of FILE (FILE.idx) from the data file alone: every slot
trailer names its checkpoint, version and transaction, and each payload is checked
against its hash. A SaveAll comes back only if every one of its versions is intact.
Versions that retention had dropped but whose space was not reused yet come back too.

The new index is written beside the old one, synced, and renamed over it; the old
index, if there was one, is kept as FILE.idx.bak. repair reports what it found: the
intact versions, versions with damaged payloads, versions dropped because their
SaveAll lost a member, and duplicates.

repair is the one command that writes: it takes the writer's lock for the time it
runs and refuses (exit 2) while a program holds the file. --dry-run only reports what
would be recovered; it writes nothing and takes no lock.`,
		Example: `  ckp repair --dry-run run.ckp
  ckp repair run.ckp && ckp verify run.ckp`,
		Args: nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			e.code = runRepair(e, o)
			return nil
		},
	}
	c.Flags().BoolVarP(&o.dryRun, "dry-run", "n", false, "report what would be recovered; change nothing")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

type repairJSON struct {
	File           string     `json:"file"`
	DryRun         bool       `json:"dry_run"`
	Scanned        int64      `json:"scanned"`
	Trailers       int        `json:"trailers"`
	DamagedPayload int        `json:"damaged_payload"`
	Incomplete     int        `json:"incomplete"`
	Duplicates     int        `json:"duplicates"`
	Versions       int        `json:"versions"`
	Checkpoints    []jsonName `json:"checkpoints"`
	Index          string     `json:"index"`
	Backup         string     `json:"backup,omitempty"`
	OldIndex       *oldIndex  `json:"old_index"`
}

// oldIndex is what the index listed before the repair, when it could be read.
type oldIndex struct {
	Versions    int    `json:"versions"`
	Checkpoints int    `json:"checkpoints"`
	Error       string `json:"error,omitempty"`
}

func runRepair(e *env, o repairOptions) int {
	// What the old index says, to compare (a read-only open takes no lock).
	var old *oldIndex
	if f, err := openFile(o.file); err == nil {
		if fi, err := f.Info(); err == nil {
			old = &oldIndex{Versions: fi.Versions, Checkpoints: fi.Checkpoints}
		}
		f.Close()
	} else if errors.Is(err, engine.ErrCorrupt) {
		old = &oldIndex{Error: errText(err)}
	} else {
		return e.fail(err)
	}
	rep, err := engine.Repair(o.file, &engine.RepairOptions{DryRun: o.dryRun})
	if err != nil {
		if errors.Is(err, engine.ErrLocked) {
			e.errorf("a writer holds %s; stop it before repairing (or use --dry-run)", o.file)
			return exitFailure
		}
		return e.fail(err)
	}
	if o.json {
		out := repairJSON{
			File: o.file, DryRun: rep.DryRun, Scanned: rep.Scanned, Trailers: rep.Trailers,
			DamagedPayload: rep.DamagedPayload, Incomplete: rep.Incomplete, Duplicates: rep.Duplicates,
			Versions: rep.Versions, Checkpoints: []jsonName{}, Index: rep.Index, Backup: rep.Backup, OldIndex: old,
		}
		for _, n := range rep.Checkpoints {
			out.Checkpoints = append(out.Checkpoints, mkJSONName(n))
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	w := e.stdout
	fmt.Fprintf(w, "scanned %s of %s: %d trailer(s) verified\n", humanSize(rep.Scanned), o.file, rep.Trailers)
	fmt.Fprintf(w, "  %d intact version(s) of %d checkpoint(s) recovered\n", rep.Versions, len(rep.Checkpoints))
	if rep.DamagedPayload > 0 {
		fmt.Fprintf(w, "  %d version(s) with a damaged payload left out\n", rep.DamagedPayload)
	}
	if rep.Incomplete > 0 {
		fmt.Fprintf(w, "  %d intact version(s) left out because their SaveAll lost a member\n", rep.Incomplete)
	}
	if rep.Duplicates > 0 {
		fmt.Fprintf(w, "  %d version(s) left out: another copy of them, or newer versions, came from a later save\n", rep.Duplicates)
	}
	for _, n := range rep.Checkpoints {
		fmt.Fprintf(w, "  checkpoint %s\n", showName(n))
	}
	switch {
	case old == nil:
	case old.Error != "":
		fmt.Fprintf(w, "the old index could not be read: %s\n", old.Error)
	default:
		fmt.Fprintf(w, "the old index listed %d version(s) of %d checkpoint(s)\n", old.Versions, old.Checkpoints)
	}
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: would write %s; nothing changed\n", rep.Index)
		return exitOK
	}
	if rep.Backup != "" {
		fmt.Fprintf(w, "wrote %s (the old index is kept as %s)\n", rep.Index, rep.Backup)
	} else {
		fmt.Fprintf(w, "wrote %s\n", rep.Index)
	}
	return exitOK
}
