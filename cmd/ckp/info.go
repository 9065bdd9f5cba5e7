package main

import (
	"fmt"

	"github.com/ckp-go/ckp/engine"
	"github.com/spf13/cobra"
)

type infoOptions struct {
	file string
	json bool
	utc  bool
}

func newInfoCmd(e *env) *cobra.Command {
	var o infoOptions
	c := &cobra.Command{
		Use:   "info FILE",
		Short: "Show facts about a checkpoint file",
		Long: `info shows the format version of FILE, when it was created, the sizes of the data
file (and how much of it lies below the allocation frontier) and of the index file
(records, and how many times compaction rewrote it), the number of checkpoints and of
kept versions, the retention (KeepVersions) and sync policy of the last writer that
opened the file, and whether a writer holds the file now.

The retention and sync policy are those the last writer opened the file with; they
are unknown when no writer has opened it since its index was rebuilt by repair.
Times are local (--utc for UTC); --json prints the same facts for programs.`,
		Example: `  ckp info run.ckp
  ckp info --json run.ckp | jq .writer_active`,
		Args: nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			e.code = runInfo(e, o)
			return nil
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	c.Flags().BoolVar(&o.utc, "utc", false, "print times in UTC")
	return c
}

type writerJSON struct {
	PID            int    `json:"pid"`
	Opened         string `json:"opened"`
	Sync           string `json:"sync"`
	KeepVersions   int    `json:"keep_versions"`
	Differential   string `json:"differential,omitempty"`
	TrackingMisses int    `json:"tracking_misses,omitempty"`
}

type infoJSON struct {
	File            string       `json:"file"`
	Index           string       `json:"index"`
	FormatVersion   int          `json:"format_version"`
	Created         string       `json:"created"`
	DataSize        int64        `json:"data_size"`
	DataUsed        int64        `json:"data_used"`
	IndexSize       int64        `json:"index_size"`
	IndexRecords    int64        `json:"index_records"`
	IndexGeneration uint64       `json:"index_generation"`
	Checkpoints     int          `json:"checkpoints"`
	Versions        int          `json:"versions"`
	LastWriter      *writerJSON  `json:"last_writer"`
	WriterActive    bool         `json:"writer_active"`
	Recovery        recoveryJSON `json:"recovery"`
}

func runInfo(e *env, o infoOptions) int {
	f, err := openFile(o.file)
	if err != nil {
		return e.fail(err)
	}
	defer f.Close()
	fi, err := f.Info()
	if err != nil {
		return e.fail(err)
	}
	active, err := engine.WriterActive(o.file)
	if err != nil {
		return e.fail(err)
	}
	if o.json {
		out := infoJSON{
			File: fi.Path, Index: fi.IndexPath, FormatVersion: fi.FormatVersion, Created: jsonTime(fi.Created),
			DataSize: fi.DataSize, DataUsed: fi.DataUsed, IndexSize: fi.IndexSize, IndexRecords: fi.IndexRecords,
			IndexGeneration: fi.IndexGeneration, Checkpoints: fi.Checkpoints, Versions: fi.Versions,
			WriterActive: active, Recovery: mkRecoveryJSON(fi.Recovery),
		}
		if w := fi.LastWriter; w != nil {
			out.LastWriter = &writerJSON{w.PID, jsonTime(w.Opened), w.Sync.String(), w.KeepVersions, differential(w), w.TrackingMisses}
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	tf := timeFmt{o.utc}
	tw := newTable(e.stdout)
	p := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, args...))
	}
	p("file", "%s", fi.Path)
	p("index", "%s", fi.IndexPath)
	p("format version", "%d", fi.FormatVersion)
	p("created", "%s", tf.format(fi.Created))
	p("data file", "%s (%d bytes), %s used", humanSize(fi.DataSize), fi.DataSize, humanSize(fi.DataUsed))
	p("index file", "%s (%d bytes), %d records, rewritten %d times", humanSize(fi.IndexSize), fi.IndexSize, fi.IndexRecords, fi.IndexGeneration)
	p("checkpoints", "%d", fi.Checkpoints)
	p("versions", "%d", fi.Versions)
	if w := fi.LastWriter; w != nil {
		if w.KeepVersions == 0 {
			p("retention", "all versions (KeepVersions 0)")
		} else {
			p("retention", "newest %d versions per checkpoint (KeepVersions %d)", w.KeepVersions, w.KeepVersions)
		}
		p("sync policy", "%s", w.Sync)
		if d := differential(w); d != "" {
			p("differential", "%s", d)
		} else {
			p("differential", "no (every version is saved whole)")
		}
		if w.PID == 0 {
			// Compaction rewrites the session record without the writer's pid and time.
			p("last writer", "unknown pid and open time (the index was compacted)")
		} else {
			p("last writer", "pid %d, opened %s", w.PID, tf.format(w.Opened))
		}
	} else {
		const unknown = "unknown (no writer has opened the file since its index was rebuilt)"
		p("retention", unknown)
		p("sync policy", unknown)
		p("last writer", unknown)
	}
	if active {
		p("writer active", "yes (a process holds the writer's lock)")
	} else {
		p("writer active", "no")
	}
	r := fi.Recovery
	switch {
	case r.Invalid != "":
		p("index damage", "inconsistent record dropped with everything after it: %s", r.Invalid)
	case r.TornTail:
		p("index tail", "%d record(s) after the last complete transaction dropped", r.DroppedRecords)
	}
	if r.DroppedTxns > 0 {
		p("dropped", "%d transaction(s) lost to a reboot before they were durable", r.DroppedTxns)
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

// differential says how the last writer saved large regions: "" when whole, else the
// block size and how it found changed blocks.
func differential(w *engine.SessionInfo) string {
	if !w.Differential {
		return ""
	}
	how := "changed blocks found by hashing every block"
	if w.Tracking {
		how = "changed pages told by the kernel (userfaultfd + PAGEMAP_SCAN) where that costs less than hashing every block and no memory is pinned"
	}
	if m := w.TrackingMisses; m > 0 {
		how += fmt.Sprintf("; the kernel did not report %d write(s) that hashing then found (writes through pinned memory: io_uring, RDMA, a GPU; those regions were hashed from then on, and versions saved before each was found may lack it)", m)
	}
	return fmt.Sprintf("%s blocks, %s", humanSize(int64(w.BlockSize)), how)
}
