package main

import (
	"fmt"

	"github.com/ckp-go/ckp/engine"
	"github.com/spf13/cobra"
)

type lsOptions struct {
	sf    storeFlags // when file is a store location
	file  string
	name  string // "" lists the checkpoints
	json  bool
	utc   bool
	bytes bool
}

func newLsCmd(e *env) *cobra.Command {
	var o lsOptions
	c := &cobra.Command{
		Use:   "ls FILE|LOCATION [NAME]",
		Short: "List the checkpoints in a file, or the versions of one",
		Long: `ls lists the checkpoints in FILE: one row per name with the versions kept
(first..last), how many are kept, the size and save time of the newest version, and
the bytes its kept versions take in the data file (trailers and slack included).

With NAME it lists the kept versions of that checkpoint: one row per version with its
number, size, save time, payload hash (xxhash64, hex), offset in the data file and
the transaction (Save or SaveAll) that wrote it. Versions saved by one SaveAll share a
transaction.

Times are local (--utc for UTC); sizes are rounded to binary units (--bytes for exact
byte counts). --json prints the same facts for programs: exact sizes, RFC 3339 UTC
times, hashes as 16 hex digits; names that are not valid UTF-8 also come as
"name_base64".

With a store LOCATION it lists what a rank committed there: one row per checkpoint
with its committed versions, and with NAME one row per committed version with the
data objects that hold it.
` + storeHelp,
		Example: `  ckp ls run.ckp
  ckp ls run.ckp model
  ckp ls --json run.ckp | jq '.checkpoints[].name'`,
		Args: nArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			if len(args) > 1 {
				o.name = args[1]
			}
			if isLocation(o.file) {
				e.code = runLsStore(e, o, &o.sf)
				return nil
			}
			e.code = runLs(e, o)
			return nil
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	c.Flags().BoolVar(&o.utc, "utc", false, "print times in UTC")
	c.Flags().BoolVarP(&o.bytes, "bytes", "b", false, "print exact byte counts")
	addStoreFlags(c, &o.sf)
	return c
}

type lsCheckpointJSON struct {
	jsonName
	First  int    `json:"first"`
	Last   int    `json:"last"`
	Kept   int    `json:"kept"`
	Size   int64  `json:"size"`
	Saved  string `json:"saved"`
	OnDisk int64  `json:"on_disk"`
}

type lsVersionJSON struct {
	Version int    `json:"version"`
	Size    int64  `json:"size"`
	Saved   string `json:"saved"`
	Hash    string `json:"hash"`
	Offset  int64  `json:"offset"`
	Txn     uint64 `json:"txn"`
	Stored  int64  `json:"stored"`
	Written int64  `json:"written"`
	// Changed is the share of the version's blocks its slot holds (1 when stored whole).
	Changed float64 `json:"changed"`
	Delta   bool    `json:"delta,omitempty"`
	Base    int     `json:"base,omitempty"`
}

func runLs(e *env, o lsOptions) int {
	f, err := openFile(o.file)
	if err != nil {
		return e.fail(err)
	}
	defer f.Close()
	if o.name != "" {
		return lsVersions(e, f, o)
	}
	return lsCheckpoints(e, f, o)
}

func lsCheckpoints(e *env, f *engine.File, o lsOptions) int {
	type row struct {
		name string
		vs   []engine.VersionInfo
	}
	var rows []row
	for _, n := range f.Checkpoints() {
		vs, err := f.VersionsOf(n)
		if err != nil {
			return e.fail(err)
		}
		if len(vs) == 0 {
			continue
		}
		rows = append(rows, row{n, vs})
	}
	if o.json {
		out := struct {
			File        string             `json:"file"`
			Checkpoints []lsCheckpointJSON `json:"checkpoints"`
		}{File: o.file, Checkpoints: []lsCheckpointJSON{}}
		for _, r := range rows {
			last := r.vs[len(r.vs)-1]
			out.Checkpoints = append(out.Checkpoints, lsCheckpointJSON{
				jsonName: mkJSONName(r.name),
				First:    r.vs[0].Version, Last: last.Version, Kept: len(r.vs),
				Size: last.Size, Saved: jsonTime(last.Saved), OnDisk: stored(r.vs),
			})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if len(rows) == 0 {
		fmt.Fprintf(e.stdout, "%s holds no checkpoints\n", o.file)
		return exitOK
	}
	tf, sf := timeFmt{o.utc}, sizeFmt{o.bytes}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "NAME\tVERSIONS\tKEPT\tSIZE\tSAVED\tON DISK")
	for _, r := range rows {
		last := r.vs[len(r.vs)-1]
		fmt.Fprintf(tw, "%s\t%d..%d\t%d\t%s\t%s\t%s\n", showName(r.name), r.vs[0].Version, last.Version,
			len(r.vs), sf.format(last.Size), tf.format(last.Saved), sf.format(stored(r.vs)))
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

func stored(vs []engine.VersionInfo) int64 {
	var n int64
	for _, v := range vs {
		n += v.Stored
	}
	return n
}

func lsVersions(e *env, f *engine.File, o lsOptions) int {
	name, err := nameArg(f, o.name)
	if err != nil {
		return e.fail(err)
	}
	vs, err := f.VersionsOf(name)
	if err != nil {
		return e.fail(err)
	}
	if o.json {
		out := struct {
			File string `json:"file"`
			jsonName
			Versions []lsVersionJSON `json:"versions"`
		}{File: o.file, jsonName: mkJSONName(name), Versions: []lsVersionJSON{}}
		for _, v := range vs {
			out.Versions = append(out.Versions, lsVersionJSON{
				Version: v.Version, Size: v.Size, Saved: jsonTime(v.Saved), Hash: hashHex(v.Hash),
				Offset: v.Offset, Txn: v.Txn, Stored: v.Stored, Written: v.Written, Changed: v.Changed,
				Delta: v.Delta, Base: v.Base,
			})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	tf, sf := timeFmt{o.utc}, sizeFmt{o.bytes}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "VERSION\tSIZE\tSAVED\tHASH\tOFFSET\tTXN\tWRITTEN\tCHANGED")
	for _, v := range vs {
		changed := "whole"
		if v.BlockSize > 0 {
			changed = fmt.Sprintf("%.1f%% of %s blocks", 100*v.Changed, sf.format(int64(v.BlockSize)))
			if v.Delta {
				changed += fmt.Sprintf(" (delta on %d)", v.Base)
			} else {
				changed += " (full)"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", v.Version, sf.format(v.Size), tf.format(v.Saved),
			hashHex(v.Hash), v.Offset, v.Txn, sf.format(v.Written), changed)
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}
