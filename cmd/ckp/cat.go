package main

import (
	"fmt"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

type catOptions struct {
	sf     storeFlags // when file is a store location
	file   string
	target string // NAME[@VERSION]
	force  bool
}

func newCatCmd(e *env) *cobra.Command {
	var o catOptions
	c := &cobra.Command{
		Use:   "cat FILE|LOCATION NAME[@VERSION]",
		Short: "Write a version's raw bytes to standard output",
		Long: `cat writes the raw bytes of one version of a checkpoint to standard output, after
checking them against their hash (damaged data is never written).

VERSION is absolute (1, 2, ...) or relative to the newest (0 is the newest, -1 the one
before, ...); without it cat writes the newest version. Names may contain '@': the
argument is split at its last '@' only when what follows is an integer, and when the
part before it is no checkpoint but the whole argument is, the whole argument is the
name (so "a@b" is checkpoint "a@b", and "x@2@-1" is version -1 of checkpoint "x@2").

cat refuses to write data that is not printable text to a terminal; redirect standard
output, or use --force.

With a store LOCATION it writes a version that a rank committed there (VERSION counts
back from the newest committed one), after checking it against its hashes.
` + storeHelp,
		Example: `  ckp cat run.ckp model > model.bin        # the newest version
  ckp cat run.ckp model@3 > v3.bin         # version 3
  ckp cat run.ckp model@-1 | sha256sum     # the version before the newest`,
		Args: nArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file, o.target = args[0], args[1]
			if isLocation(o.file) {
				e.code = runCatStore(e, o, &o.sf)
				return nil
			}
			e.code = runCat(e, o)
			return nil
		},
	}
	c.Flags().BoolVarP(&o.force, "force", "f", false, "write binary data to a terminal anyway")
	addStoreFlags(c, &o.sf)
	return c
}

func runCat(e *env, o catOptions) int {
	f, err := openFile(o.file)
	if err != nil {
		return e.fail(err)
	}
	r := &reader{path: o.file, f: f}
	defer r.Close()
	name, v, err := target(f, o.target)
	if err != nil {
		return e.fail(err)
	}
	b, vi, err := r.read(name, v)
	if err != nil {
		return e.fail(err)
	}
	if refuseTerminal(isTerminal(e.stdout), b, o.force) {
		e.errorf("%s is binary data (%d bytes); not writing it to a terminal (redirect the output or use --force)", at(name, vi.Version), len(b))
		return exitFailure
	}
	if _, err := e.stdout.Write(b); err != nil {
		return e.fail(fmt.Errorf("write: %w", err))
	}
	return exitOK
}

// refuseTerminal decides whether cat refuses to write b: only to a terminal, only when
// b is not text, and never when forced.
func refuseTerminal(terminal bool, b []byte, force bool) bool {
	return terminal && !force && isBinary(b)
}

// isBinary reports whether b is anything but text that is safe to show on a terminal:
// valid UTF-8 without control characters other than tab, newline and carriage return
// (an escape sequence could reprogram the terminal).
func isBinary(b []byte) bool {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f {
				return true
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return true
		}
		if r >= 0x80 && r < 0xa0 { // C1 controls
			return true
		}
		b = b[n:]
	}
	return false
}
