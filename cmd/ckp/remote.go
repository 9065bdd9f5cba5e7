package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/location"
	"github.com/spf13/cobra"
)

// Store locations: ls, verify and cat read a store (what the engine's remote tier
// wrote) instead of a file when their first argument is one; pull and job take one.

const storeHelp = `
LOCATION is a store that the remote tier of a program writes to: "s3://bucket/prefix"
(with --endpoint for a server other than AWS S3, --insecure for plain HTTP; keys come
from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a directory ("dir://PATH", or
any existing directory). In a store each rank of a job has its own versions; --rank
says which (0 by default).`

// storeFlags are the flags of the commands that read a store.
type storeFlags struct {
	endpoint, region string
	insecure         bool
	rank             int
	timeout          time.Duration
}

func addStoreFlags(c *cobra.Command, sf *storeFlags) {
	c.Flags().StringVar(&sf.endpoint, "endpoint", "", "S3 server of an s3:// LOCATION (host:port or URL; default AWS S3)")
	c.Flags().BoolVar(&sf.insecure, "insecure", false, "talk plain HTTP to the S3 server")
	c.Flags().StringVar(&sf.region, "region", "", "S3 region (default us-east-1)")
	c.Flags().IntVar(&sf.rank, "rank", 0, "the rank whose versions to read")
	c.Flags().DurationVar(&sf.timeout, "timeout", 0, "give up on a store LOCATION after this long (default: after a minute of failures in a row)")
}

// isLocation reports whether arg names a store rather than a checkpoint file: an
// s3:// or dir:// location, or an existing directory.
func isLocation(arg string) bool {
	if location.IsS3(arg) || strings.HasPrefix(arg, "dir://") {
		return true
	}
	st, err := os.Stat(arg)
	return err == nil && st.IsDir()
}

func (sf *storeFlags) open(loc string) (store.Store, error) {
	if sf.rank < 0 {
		return nil, fmt.Errorf("--rank %d is negative", sf.rank)
	}
	return location.Open(loc, location.Options{Endpoint: sf.endpoint, Insecure: sf.insecure, Region: sf.region})
}

// commandContext is canceled by an interrupt.
func commandContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

// context is the context of a command that reads a store: canceled by an interrupt,
// and after --timeout when it is set.
func (sf *storeFlags) context() (context.Context, context.CancelFunc) {
	ctx, cancel := commandContext()
	if sf.timeout <= 0 {
		return ctx, cancel
	}
	tctx, tcancel := context.WithTimeout(ctx, sf.timeout)
	return tctx, func() { tcancel(); cancel() }
}

// ls LOCATION [NAME]

type lsStoreCheckpointJSON struct {
	jsonName
	First     int    `json:"first"`
	Last      int    `json:"last"`
	Committed int    `json:"committed"`
	Size      int64  `json:"size"`
	Saved     string `json:"saved"`
}

type lsStoreVersionJSON struct {
	Version int      `json:"version"`
	Size    int64    `json:"size"`
	Saved   string   `json:"saved"`
	Hash    string   `json:"hash"`
	Txn     uint64   `json:"txn"`
	Objects []string `json:"objects"`
}

func runLsStore(e *env, o lsOptions, sf *storeFlags) int {
	st, err := sf.open(o.file)
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := sf.context()
	defer cancel()
	vs, err := engine.StoreVersions(ctx, st, sf.rank)
	if err != nil {
		return e.fail(err)
	}
	byName := map[string][]engine.StoreVersion{}
	var names []string
	for _, v := range vs {
		if byName[v.Name] == nil {
			names = append(names, v.Name)
		}
		byName[v.Name] = append(byName[v.Name], v)
	}
	tf, szf := timeFmt{o.utc}, sizeFmt{o.bytes}
	if o.name != "" {
		name, ok := findName(names, o.name)
		if !ok {
			return e.fail(fmt.Errorf("rank %d committed no checkpoint %s in %s", sf.rank, showName(o.name), st))
		}
		vs := byName[name]
		if o.json {
			out := struct {
				Store string `json:"store"`
				Rank  int    `json:"rank"`
				jsonName
				Versions []lsStoreVersionJSON `json:"versions"`
			}{Store: st.String(), Rank: sf.rank, jsonName: mkJSONName(name), Versions: []lsStoreVersionJSON{}}
			for _, v := range vs {
				out.Versions = append(out.Versions, lsStoreVersionJSON{v.Version, v.Size, jsonTime(v.Saved), hashHex(v.Hash), v.Txn, v.Objects})
			}
			if err := writeJSON(e.stdout, out); err != nil {
				return e.fail(err)
			}
			return exitOK
		}
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "VERSION\tSIZE\tSAVED\tHASH\tTXN\tOBJECTS")
		for _, v := range vs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", v.Version, szf.format(v.Size), tf.format(v.Saved), hashHex(v.Hash), v.Txn, strings.Join(v.Objects, ","))
		}
		if err := tw.Flush(); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if o.json {
		out := struct {
			Store       string                  `json:"store"`
			Rank        int                     `json:"rank"`
			Checkpoints []lsStoreCheckpointJSON `json:"checkpoints"`
		}{Store: st.String(), Rank: sf.rank, Checkpoints: []lsStoreCheckpointJSON{}}
		for _, n := range names {
			vs := byName[n]
			last := vs[len(vs)-1]
			out.Checkpoints = append(out.Checkpoints, lsStoreCheckpointJSON{mkJSONName(n), vs[0].Version, last.Version, len(vs), last.Size, jsonTime(last.Saved)})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if len(names) == 0 {
		fmt.Fprintf(e.stdout, "rank %d committed nothing in %s\n", sf.rank, st)
		return exitOK
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "NAME\tVERSIONS\tCOMMITTED\tSIZE\tSAVED")
	for _, n := range names {
		vs := byName[n]
		last := vs[len(vs)-1]
		fmt.Fprintf(tw, "%s\t%d..%d\t%d\t%s\t%s\n", showName(n), vs[0].Version, last.Version, len(vs), szf.format(last.Size), tf.format(last.Saved))
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	return exitOK
}

// cat LOCATION NAME[@VERSION]

func runCatStore(e *env, o catOptions, sf *storeFlags) int {
	st, err := sf.open(o.file)
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := sf.context()
	defer cancel()
	name, v, _ := splitVersion(o.target)
	if u, ok := unquoteName(name); ok {
		name = u
	}
	b, sv, err := engine.ReadStoreVersion(ctx, st, sf.rank, name, v)
	if errors.Is(err, engine.ErrNotFound) && v != 0 {
		// "a@b" may be a name with an '@' in it.
		if bb, svv, err2 := engine.ReadStoreVersion(ctx, st, sf.rank, o.target, 0); err2 == nil {
			b, sv, err, name = bb, svv, nil, o.target
		}
	}
	if err != nil {
		return e.fail(err)
	}
	if refuseTerminal(isTerminal(e.stdout), b, o.force) {
		e.errorf("%s is binary data (%d bytes); not writing it to a terminal (redirect the output or use --force)", at(name, sv.Version), len(b))
		return exitFailure
	}
	if _, err := e.stdout.Write(b); err != nil {
		return e.fail(fmt.Errorf("write: %w", err))
	}
	return exitOK
}

// unquoteName accepts the quoted form showName prints.
func unquoteName(arg string) (string, bool) {
	if len(arg) >= 2 && arg[0] == '"' {
		if u, err := strconv.Unquote(arg); err == nil {
			return u, true
		}
	}
	return "", false
}

// verify LOCATION

type verifyStoreJSON struct {
	Store    string             `json:"store"`
	Rank     int                `json:"rank"`
	OK       bool               `json:"ok"`
	Versions int                `json:"versions"`
	Bytes    int64              `json:"bytes"`
	Damaged  []verifyDamageJSON `json:"damaged"`
}

type verifyDamageJSON struct {
	Manifest string `json:"manifest"`
	jsonName
	Version int    `json:"version"`
	Reason  string `json:"reason"`
}

func runVerifyStore(e *env, o verifyOptions, sf *storeFlags) int {
	st, err := sf.open(o.file)
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := sf.context()
	defer cancel()
	var progress func(done, total int64)
	if !o.json && isTerminal(e.stderr) {
		last := -1
		progress = func(done, total int64) {
			if pct := int(done * 100 / max(total, 1)); pct != last {
				last = pct
				fmt.Fprintf(e.stderr, "\rverifying %s: %3d%%", st, pct)
			}
		}
	}
	rep, err := engine.VerifyStore(ctx, st, sf.rank, progress)
	if progress != nil {
		fmt.Fprintf(e.stderr, "\r\033[K")
	}
	if err != nil {
		return e.fail(err)
	}
	if o.json {
		out := verifyStoreJSON{Store: st.String(), Rank: sf.rank, OK: rep.OK(), Versions: rep.Versions, Bytes: rep.Bytes, Damaged: []verifyDamageJSON{}}
		for _, d := range rep.Damaged {
			out.Damaged = append(out.Damaged, verifyDamageJSON{d.Manifest, mkJSONName(d.Name), d.Version, errText(errors.New(d.Reason))})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
	} else {
		for _, d := range rep.Damaged {
			what := d.Manifest
			if d.Name != "" {
				what = at(d.Name, d.Version)
			}
			fmt.Fprintf(e.stdout, "damaged: %s: %s\n", what, errText(errors.New(d.Reason)))
		}
		checked := fmt.Sprintf("%d version(s) of rank %d, %s", rep.Versions, sf.rank, humanSize(rep.Bytes))
		if rep.OK() {
			fmt.Fprintf(e.stdout, "%s: OK: %s intact\n", st, checked)
		} else {
			fmt.Fprintf(e.stdout, "%s: DAMAGED: %d damaged version(s) (checked %s)\n", st, len(rep.Damaged), checked)
		}
	}
	if !rep.OK() {
		return exitDamage
	}
	return exitOK
}

// pull LOCATION FILE

type pullOptions struct {
	loc, file string
	version   int
	sf        storeFlags
}

func newPullCmd(e *env) *cobra.Command {
	var o pullOptions
	c := &cobra.Command{
		Use:   "pull LOCATION FILE",
		Short: "Bring a rank's versions from a store into a new checkpoint file",
		Long: `pull writes one version of every checkpoint that a rank committed in the store
LOCATION into FILE, a new checkpoint file (it must not exist), keeping the version
numbers, after checking every byte against its hash. Without --version it takes the
newest version committed for every checkpoint of the rank, the one a restart of that
rank on a new node would take. A program that opens FILE restores it as usual.
` + storeHelp,
		Example: `  ckp pull s3://bucket/run1 run.ckp --endpoint 10.0.0.5:9000 --rank 3
  ckp pull /shared/ckp/run1 run.ckp --version 120`,
		Args: nArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.loc, o.file = args[0], args[1]
			e.code = runPull(e, o)
			return nil
		},
	}
	addStoreFlags(c, &o.sf)
	c.Flags().IntVar(&o.version, "version", 0, "the version to pull (default: the newest committed for every checkpoint)")
	return c
}

func runPull(e *env, o pullOptions) int {
	st, err := o.sf.open(o.loc)
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := o.sf.context()
	defer cancel()
	v, err := engine.Pull(ctx, st, o.sf.rank, o.file, o.version, nil)
	if err != nil {
		return e.fail(err)
	}
	f, err := openFile(o.file)
	if err != nil {
		return e.fail(err)
	}
	defer f.Close()
	fmt.Fprintf(e.stdout, "pulled version %d of %d checkpoint(s) of rank %d from %s into %s\n", v, len(f.Checkpoints()), o.sf.rank, st, o.file)
	return exitOK
}

// job LOCATION

type jobOptions struct {
	loc   string
	ranks int
	json  bool
	sf    storeFlags
}

func newJobCmd(e *env) *cobra.Command {
	var o jobOptions
	c := &cobra.Command{
		Use:   "job LOCATION",
		Short: "Show what every rank of a job committed, and the job version",
		Long: `job lists, for every rank of the job whose remote tier writes to LOCATION, the
newest version it committed for every one of its checkpoints and how many versions it
has in the store; then the job version: the newest version every rank committed for
every checkpoint, the one a restart of the whole job restores (engine.File.RestoreJob).
The number of ranks comes from the store, or from --ranks.
` + storeHelp,
		Example: `  ckp job s3://bucket/run1 --endpoint 10.0.0.5:9000
  ckp job /shared/ckp/run1 --ranks 64`,
		Args: nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.loc = args[0]
			e.code = runJob(e, o)
			return nil
		},
	}
	c.Flags().StringVar(&o.sf.endpoint, "endpoint", "", "S3 server of an s3:// LOCATION (host:port or URL; default AWS S3)")
	c.Flags().BoolVar(&o.sf.insecure, "insecure", false, "talk plain HTTP to the S3 server")
	c.Flags().StringVar(&o.sf.region, "region", "", "S3 region (default us-east-1)")
	c.Flags().DurationVar(&o.sf.timeout, "timeout", 0, "give up on the store after this long (default: after a minute of failures in a row)")
	c.Flags().IntVar(&o.ranks, "ranks", 0, "the job's number of ranks (default: as the store says)")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runJob(e *env, o jobOptions) int {
	st, err := o.sf.open(o.loc)
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := o.sf.context()
	defer cancel()
	js, err := engine.InspectJob(ctx, st, o.ranks)
	if err != nil {
		return e.fail(err)
	}
	if o.json {
		type rankJSON struct {
			Rank      int  `json:"rank"`
			Joined    bool `json:"joined"`
			Newest    int  `json:"newest"`
			Committed int  `json:"committed"`
		}
		out := struct {
			Store      string     `json:"store"`
			Life       uint64     `json:"life"`
			Base       int        `json:"base"`
			Launch     string     `json:"launch,omitempty"`
			Started    bool       `json:"started"`
			Sealed     bool       `json:"sealed"`
			Ranks      []rankJSON `json:"ranks"`
			JobVersion int        `json:"job_version"`
		}{Store: st.String(), Life: js.Life, Base: js.Base, Launch: js.Launch, Started: js.Started, Sealed: js.Sealed,
			Ranks: []rankJSON{}, JobVersion: js.Version}
		for r := 0; r < js.Ranks; r++ {
			out.Ranks = append(out.Ranks, rankJSON{r, js.Joined[r], js.Newest[r], js.Committed[r]})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if js.Life == 0 {
		fmt.Fprintf(e.stdout, "%s holds no job (no rank has committed anything)\n", st)
		return exitOK
	}
	began := "the start"
	if js.Base > 0 {
		began = fmt.Sprintf("version %d", js.Base)
	}
	state := "started"
	switch {
	case js.Sealed:
		state = "sealed (the next RestoreJob begins life " + fmt.Sprint(js.Life+1) + ")"
	case !js.Started:
		state = "not started (not every rank has joined)"
	}
	fmt.Fprintf(e.stdout, "life %d (began at %s), %s", js.Life, began, state)
	if js.Launch != "" {
		fmt.Fprintf(e.stdout, ", launch %q", js.Launch)
	}
	fmt.Fprintln(e.stdout)
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "RANK\tJOINED\tNEWEST\tCOMMITTED")
	for r := 0; r < js.Ranks; r++ {
		newest := "-"
		if js.Newest[r] > 0 {
			newest = fmt.Sprint(js.Newest[r])
		}
		joined := "no"
		if js.Joined[r] {
			joined = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", r, joined, newest, js.Committed[r])
	}
	if err := tw.Flush(); err != nil {
		return e.fail(err)
	}
	if js.Version > 0 {
		fmt.Fprintf(e.stdout, "job version: %d (complete on every rank in life %d)\n", js.Version, js.VersionLife)
	} else {
		fmt.Fprintln(e.stdout, "job version: none (no version is complete on every rank: the job starts over)")
	}
	return exitOK
}
