package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ckp-go/ckp/engine"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitDamage  = 1 // verify found damage
	exitFailure = 2 // usage, I/O or other errors
)

// env is what a command writes to. Commands are functions of their options and an env
// that return an exit code, so they can be tested without a process.
type env struct {
	stdout, stderr io.Writer
	// code is the exit code the command that ran asked for.
	code int
}

// run parses args, runs the command they name and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		e.errorf("missing command (see 'ckp help')")
		return exitFailure
	}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		msg := oneLine(err.Error())
		if strings.HasPrefix(msg, "unknown command") {
			msg = strings.TrimSuffix(msg, ` for "ckp"`) + " (see 'ckp help')"
		}
		e.errorf("%s", msg)
		return exitFailure
	}
	return e.code
}

const rootLong = `ckp inspects, verifies, extracts and repairs ckp checkpoint files.

FILE is the data file a program passed to engine.Open; its index is FILE.idx.

Every command except repair opens FILE read-only: it never writes, never takes the
writer's lock, and works while a program is saving to FILE (it shows the versions that
were complete when it opened the file).

Checkpoint names are arbitrary bytes. Names that hold control characters, invalid UTF-8,
leading or trailing spaces, or that start with a double quote are shown quoted and
escaped like a Go string ("a\x00b"); wherever a command takes a NAME, that quoted form
is accepted too.

ls, verify and cat also read a store that the engine's remote tier writes to (an
s3:// location or a directory) instead of FILE; pull brings a rank's versions from a
store into a new file, and job shows what every rank of a job committed.

Exit codes: 0 success, 1 damage found (verify), 2 usage or I/O errors.`

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "ckp",
		Short: "Inspect, verify, extract and repair ckp checkpoint files",
		Long:  rootLong,
		Example: `  ckp ls run.ckp                 # the checkpoints in run.ckp
  ckp ls run.ckp model           # the versions of checkpoint "model"
  ckp verify run.ckp             # check every version's hash
  ckp cat run.ckp model@-1 > m   # the version before the newest
  ckp export run.ckp out/        # the newest version of each checkpoint, as files
  ckp info run.ckp               # sizes, retention, sync policy, writer
  ckp repair run.ckp             # rebuild a lost or damaged index
  ckp job s3://bkt/run --endpoint host:9000   # every rank's newest committed version, the job version
  ckp ls /shared/ckp/run --rank 3              # what rank 3 committed in a store directory
  ckp pull s3://bkt/run run.ckp --rank 3      # rank 3's newest committed versions into a new file`,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newLsCmd(e), newVerifyCmd(e), newCatCmd(e), newExportCmd(e), newInfoCmd(e), newRepairCmd(e),
		newPullCmd(e), newJobCmd(e))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s (see '%s')", err, helpCmd(c))
	})
	var silence func(c *cobra.Command)
	silence = func(c *cobra.Command) {
		c.SilenceErrors = true
		c.SilenceUsage = true
		c.DisableFlagsInUseLine = true
		for _, s := range c.Commands() {
			silence(s)
		}
	}
	silence(root)
	return root
}

// helpCmd is the command that shows c's help.
func helpCmd(c *cobra.Command) string {
	if p := strings.TrimSpace(strings.TrimPrefix(c.CommandPath(), "ckp")); p != "" {
		return "ckp help " + p
	}
	return "ckp help"
}

// nArgs checks the number of positional arguments and says how to call the command.
func nArgs(minN, maxN int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < minN || (maxN >= 0 && len(args) > maxN) {
			return fmt.Errorf("usage: ckp %s (see '%s')", c.Use, helpCmd(c))
		}
		return nil
	}
}

// errorf writes one line "ckp: ..." to stderr.
func (e *env) errorf(format string, args ...any) {
	msg := oneLine(fmt.Sprintf(format, args...))
	fmt.Fprintf(e.stderr, "ckp: %s\n", msg)
}

// fail reports err on stderr and returns exitFailure.
func (e *env) fail(err error) int {
	e.errorf("%s", errText(err))
	return exitFailure
}

// errText is an error's text without the "ckp: " prefixes the engine puts on its
// errors (errorf adds one).
func errText(err error) string {
	s := err.Error()
	for strings.HasPrefix(s, "ckp: ") {
		s = strings.TrimPrefix(s, "ckp: ")
	}
	return s
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return strings.ReplaceAll(s, "\n", "; ")
}

// openFile opens path read-only. The error, if any, is ready to print.
func openFile(path string) (*engine.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %w", path, pe.Err)
		}
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	// Options.MaxSize must admit the whole file, which a writer may have let grow past
	// the default (MaxSize is a limit: the read-only mapping spans the file's size).
	maxSize := int64(1 << 40)
	if sz := st.Size(); sz > maxSize/2 {
		maxSize = (sz*2 + (1<<21 - 1)) &^ (1<<21 - 1)
	}
	f, err := engine.Open(path, &engine.Options{ReadOnly: true, NoPrefault: true, NoHugePages: true, MaxSize: maxSize})
	if err != nil {
		if errors.Is(err, engine.ErrCorrupt) && !strings.Contains(err.Error(), "ckp repair") {
			return nil, fmt.Errorf("%w (if the index is damaged or lost, `ckp repair %s` rebuilds it)", err, path)
		}
		return nil, err
	}
	return f, nil
}

// showName returns name as it is shown to people: as is when it is printable UTF-8,
// quoted and escaped like a Go string otherwise (and when it starts with a quote, has
// leading or trailing spaces, or is empty, so that the shown form is unambiguous).
func showName(name string) string {
	if needsQuote(name) {
		return strconv.Quote(name)
	}
	return name
}

func needsQuote(s string) bool {
	if s == "" || s[0] == '"' || s[0] == ' ' || s[len(s)-1] == ' ' || !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// findName returns the checkpoint that arg names: the name itself if the file has it,
// else the name arg is the quoted form of (as showName prints it).
func findName(names []string, arg string) (string, bool) {
	for _, n := range names {
		if n == arg {
			return n, true
		}
	}
	if len(arg) >= 2 && arg[0] == '"' {
		if u, err := strconv.Unquote(arg); err == nil {
			for _, n := range names {
				if n == u {
					return n, true
				}
			}
		}
	}
	return "", false
}

// nameArg maps a NAME argument to a checkpoint name of f or returns a printable error.
func nameArg(f *engine.File, arg string) (string, error) {
	if n, ok := findName(f.Checkpoints(), arg); ok {
		return n, nil
	}
	return "", fmt.Errorf("no checkpoint %s in %s", showName(arg), f.Path())
}

// splitVersion splits NAME[@VERSION] at the last '@' when what follows parses as an
// integer; otherwise the whole argument is the name and the version is 0 (the newest).
func splitVersion(arg string) (name string, v int, hasVersion bool) {
	i := strings.LastIndexByte(arg, '@')
	if i < 0 {
		return arg, 0, false
	}
	n, err := strconv.Atoi(arg[i+1:])
	if err != nil {
		return arg, 0, false
	}
	return arg[:i], n, true
}

// target resolves NAME[@VERSION] against f: the split described at splitVersion; when
// the part before the '@' is no checkpoint but the whole argument is one, the whole
// argument is the name (and the version the newest).
func target(f *engine.File, arg string) (name string, v int, err error) {
	names := f.Checkpoints()
	n, v, has := splitVersion(arg)
	if got, ok := findName(names, n); ok {
		return got, v, nil
	}
	if has {
		if got, ok := findName(names, arg); ok {
			return got, 0, nil
		}
	}
	return "", 0, fmt.Errorf("no checkpoint %s in %s", showName(n), f.Path())
}

// at formats NAME@VERSION for people.
func at(name string, v int) string {
	return fmt.Sprintf("%s@%d", showName(name), v)
}

// reader reads verified versions from a file a writer may be changing. The view a
// read-only File gives is the one at Open: a writer may since have dropped a version of
// that view (retention) and reused its slot, or published versions past the end of the
// data file as the view measured it. Such a version reads back as ErrVersion (the engine
// saw it dropped) or ErrCorrupt; reader then looks again with a fresh view before it
// believes the error.
type reader struct {
	path string
	f    *engine.File
}

func (r *reader) Close() error { return r.f.Close() }

// refresh replaces the view with a fresh one.
func (r *reader) refresh() error {
	nf, err := openFile(r.path)
	if err != nil {
		return err
	}
	r.f.Close()
	r.f = nf
	return nil
}

// read returns a verified copy of version v (absolute, or relative when <= 0) of name.
// A relative version is resolved in the view the copy comes from.
func (r *reader) read(name string, v int) ([]byte, engine.VersionInfo, error) {
	b, vi, err := r.f.ReadVersion(name, v)
	// ErrVersion: the engine found the version dropped by the writer since the view
	// opened (or never there): a fresh view resolves it again.
	stale := func(err error) bool {
		return errors.Is(err, engine.ErrCorrupt) || errors.Is(err, engine.ErrVersion)
	}
	for attempt := 0; err != nil && stale(err) && attempt < 5; attempt++ {
		if attempt > 0 && !writerActive(r.path) {
			break
		}
		if rerr := r.refresh(); rerr != nil {
			break
		}
		b, vi, err = r.f.ReadVersion(name, v)
	}
	if err != nil && errors.Is(err, engine.ErrCorrupt) && vi.Version > 0 && writerActive(r.path) && r.dropped(name, vi) {
		return nil, vi, fmt.Errorf("version %d of %s was dropped by the writer (retention) and its space reused while it was being read; try again, or read a newer version",
			vi.Version, showName(name))
	}
	return b, vi, err
}

// dropped reports whether a fresh view no longer keeps version vi of name.
func (r *reader) dropped(name string, vi engine.VersionInfo) bool {
	if r.refresh() != nil {
		return false
	}
	vs, err := r.f.VersionsOf(name)
	if err != nil {
		return errors.Is(err, engine.ErrNotFound)
	}
	for _, x := range vs {
		if x.Version == vi.Version && x.Offset == vi.Offset {
			return false
		}
	}
	return true
}

// writerActive reports whether a writer holds path; errors count as "no".
func writerActive(path string) bool {
	a, err := engine.WriterActive(path)
	return err == nil && a
}

// Formatting.

const (
	timeLayout = "2006-01-02 15:04:05.000Z07:00"
	timeWidth  = len("2006-01-02 15:04:05.000Z")
)

type timeFmt struct{ utc bool }

func (t timeFmt) format(tm time.Time) string {
	if tm.IsZero() || tm.UnixNano() == 0 {
		return "-"
	}
	if t.utc {
		tm = tm.UTC()
	}
	return tm.Format(timeLayout)
}

// jsonTime is a time for JSON output: RFC 3339 in UTC with nanoseconds.
func jsonTime(tm time.Time) string {
	if tm.IsZero() || tm.UnixNano() == 0 {
		return ""
	}
	return tm.UTC().Format(time.RFC3339Nano)
}

type sizeFmt struct{ exact bool }

func (s sizeFmt) format(n int64) string {
	if s.exact {
		return strconv.FormatInt(n, 10)
	}
	return humanSize(n)
}

// humanSize formats a byte count with binary units: 512 B, 4.0 KiB, 1.5 GiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n) / 1024
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func hashHex(h uint64) string { return fmt.Sprintf("%016x", h) }

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// jsonName is a checkpoint name in JSON output. JSON strings cannot hold invalid UTF-8
// (encoders replace it with U+FFFD), so such names also come as base64 of their bytes.
type jsonName struct {
	Name       string `json:"name"`
	NameBase64 string `json:"name_base64,omitempty"`
}

func mkJSONName(n string) jsonName {
	j := jsonName{Name: n}
	if !utf8.ValidString(n) {
		j.NameBase64 = base64.StdEncoding.EncodeToString([]byte(n))
	}
	return j
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fd := f.Fd()
	return isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
}
