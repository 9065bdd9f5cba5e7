package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ckp-go/ckp/engine"
	"github.com/ckp-go/ckp/remote"
	"github.com/ckp-go/ckp/store"
	"github.com/ckp-go/ckp/store/location"
)

// openOptions is what a ckpOpen options string sets.
type openOptions struct {
	engine engine.Options
	// remote is the remote tier's settings; nil without remote=.
	remote *remoteOptions
}

// remoteOptions are the remote tier's settings: where the store is (location, and
// how to reach an S3 one), and the engine.Remote fields but its Store, which Open
// builds from them (engineOptions).
type remoteOptions struct {
	location string
	reach    location.Options
	tier     engine.Remote
}

// An optionKey is one key=value setting of the ckpOpen options string.
type optionKey struct {
	name string
	// set applies the value to o; its error wraps engine.ErrInvalid.
	set func(o *openOptions, value string) error
	// remote: a setting of the remote tier, which needs remote=.
	remote bool
}

// optionKeys are the keys ckpOpen knows, in the order ckp_util.h documents them. A
// new setting is one more row.
var optionKeys = []optionKey{
	{name: "sync", set: setSync},
	{name: "keep", set: func(o *openOptions, v string) error {
		k, err := nonNegative("keep", v)
		o.engine.KeepVersions = k
		return err
	}},
	{name: "workers", set: func(o *openOptions, v string) error {
		w, err := nonNegative("workers", v)
		o.engine.Workers = w
		return err
	}},
	{name: "max_size", set: func(o *openOptions, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return invalidf("options: max_size=%s: want a whole number of bytes", v)
		}
		o.engine.MaxSize = n
		return nil
	}},
	{name: "differential", set: func(o *openOptions, v string) error {
		b, err := boolValue("differential", v)
		o.engine.Differential = b
		return err
	}},
	{name: "block_size", set: func(o *openOptions, v string) error {
		n, err := nonNegative("block_size", v)
		o.engine.BlockSize = n
		return err
	}},
	// The remote tier's settings. Every one but remote= needs remote=.
	remoteKey("remote", func(r *remoteOptions, v string) error {
		if v == "" {
			return invalidf("options: remote=: want a location: s3://bucket/prefix, dir://PATH or a directory")
		}
		r.location = v
		return nil
	}),
	remoteKey("endpoint", func(r *remoteOptions, v string) error {
		if v == "" {
			return invalidf("options: endpoint=: want host:port or a URL")
		}
		r.reach.Endpoint = v
		return nil
	}),
	remoteKey("insecure", func(r *remoteOptions, v string) error {
		b, err := boolValue("insecure", v)
		r.reach.Insecure = b
		return err
	}),
	remoteKey("region", func(r *remoteOptions, v string) error {
		if v == "" {
			return invalidf("options: region=: want a region name such as us-east-1")
		}
		r.reach.Region = v
		return nil
	}),
	remoteKey("every", func(r *remoteOptions, v string) error {
		n, err := nonNegative("every", v)
		r.tier.Every = n
		return err
	}),
	remoteKey("rank", func(r *remoteOptions, v string) error {
		n, err := nonNegative("rank", v)
		r.tier.Rank = n
		return err
	}),
	remoteKey("ranks", func(r *remoteOptions, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return invalidf("options: ranks=%s: want a whole number of at least 1", v)
		}
		r.tier.Ranks = n
		return nil
	}),
	remoteKey("launch", func(r *remoteOptions, v string) error {
		switch {
		case v == "":
			return invalidf("options: launch=: want an id of this launch of the job")
		case len(v) > remote.MaxLaunch:
			return invalidf("options: launch= of %d bytes: at most %d", len(v), remote.MaxLaunch)
		}
		r.tier.Launch = v
		return nil
	}),
	remoteKey("keep_remote", func(r *remoteOptions, v string) error {
		n, err := nonNegative("keep_remote", v)
		r.tier.Keep = n
		return err
	}),
	remoteKey("max_pending", func(r *remoteOptions, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return invalidf("options: max_pending=%s: want a whole number of bytes of at least 1", v)
		}
		r.tier.MaxPending = n
		return nil
	}),
	remoteKey("timeout", func(r *remoteOptions, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return invalidf("options: timeout=%s: want a positive duration such as 500ms, 30s or 2m", v)
		}
		r.tier.Timeout = d
		return nil
	}),
}

// remoteKey returns a key of the remote tier: set applies the value to the remote
// settings, which the first remote key creates.
func remoteKey(name string, set func(r *remoteOptions, value string) error) optionKey {
	return optionKey{name: name, remote: true, set: func(o *openOptions, v string) error {
		if o.remote == nil {
			o.remote = &remoteOptions{}
		}
		return set(o.remote, v)
	}}
}

// separators says, in error messages, what separates the pairs of an options string.
const separators = "options are key=value pairs separated by spaces or commas"

// isSeparator reports whether r separates two key=value pairs: a comma or white space
// (tabs and newlines count as spaces). So no value holds a comma or a space.
func isSeparator(r rune) bool { return r == ',' || unicode.IsSpace(r) }

// parseOptions parses a ckpOpen options string: key=value pairs separated by spaces or
// commas ("sync=always keep=2", "sync=always,keep=2"). An empty string means the
// defaults.
func parseOptions(s string) (*openOptions, error) {
	o := &openOptions{}
	seen := make(map[string]bool)
	var order []string // the keys given, in order
	for _, field := range strings.FieldsFunc(s, isSeparator) {
		key, value, ok := strings.Cut(field, "=")
		if !ok || key == "" {
			return nil, invalidf("options: %q is not key=value (%s)", field, separators)
		}
		k := lookupKey(key)
		if k == nil {
			return nil, invalidf("options: unknown key %q (known keys: %s)", key, knownKeys())
		}
		if seen[key] {
			return nil, invalidf("options: key %q given twice", key)
		}
		seen[key] = true
		if err := k.set(o, value); err != nil {
			if strings.Contains(value, "=") { // two pairs run together: say what separates them
				return nil, fmt.Errorf("%w (%s)", err, separators)
			}
			return nil, err
		}
		order = append(order, key)
	}
	if err := o.checkRemote(order); err != nil {
		return nil, err
	}
	return o, nil
}

// s3Keys are the remote keys that only an s3:// location takes.
var s3Keys = []string{"endpoint", "insecure", "region"}

// checkRemote checks the remote settings together, given the keys in the order the
// string gave them: every remote key needs remote=, the S3 ones an s3:// location,
// and rank= a ranks= above it.
func (o *openOptions) checkRemote(order []string) error {
	r := o.remote
	if r == nil {
		return nil
	}
	if r.location == "" {
		i := slices.IndexFunc(order, func(k string) bool { return lookupKey(k).remote })
		first := order[i]
		return invalidf("options: %s= needs remote= (the store's location: s3://bucket/prefix, dir://PATH or a directory)", first)
	}
	if !location.IsS3(r.location) {
		for _, k := range order {
			if slices.Contains(s3Keys, k) {
				return invalidf("options: %s= is for an s3:// remote, not remote=%s", k, r.location)
			}
		}
	}
	rank, ranks := r.tier.Rank, r.tier.Ranks
	switch {
	case rank > 0 && ranks == 0:
		return invalidf("options: rank=%d needs ranks= (the number of ranks of the job)", rank)
	case ranks > 0 && rank >= ranks:
		return invalidf("options: rank=%d is not below ranks=%d (ranks are 0..ranks-1)", rank, ranks)
	}
	return nil
}

// engineOptions returns the engine's options, with the remote tier's store built
// from its location (without contacting it). A malformed location is EINVAL; a store
// that cannot be opened (a directory that cannot be created) is ErrRemote.
func (o *openOptions) engineOptions() (*engine.Options, error) {
	eo := o.engine
	if o.remote == nil {
		return &eo, nil
	}
	st, err := location.Open(o.remote.location, o.remote.reach)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, invalidf("options: remote=%s: %v", o.remote.location, err)
		}
		return nil, fmt.Errorf("%w: remote=%s: %w", engine.ErrRemote, o.remote.location, err)
	}
	tier := o.remote.tier
	tier.Store = st
	eo.Remote = &tier
	return &eo, nil
}

// remoteTimeout is how long ckpFlush, ckpJobVersion and ckpRestoreJob wait for the
// store: timeout=, else the engine's default.
func (o *openOptions) remoteTimeout() time.Duration {
	if o.remote != nil && o.remote.tier.Timeout > 0 {
		return o.remote.tier.Timeout
	}
	return engine.DefaultRemoteTimeout
}

func lookupKey(name string) *optionKey {
	for i := range optionKeys {
		if optionKeys[i].name == name {
			return &optionKeys[i]
		}
	}
	return nil
}

func knownKeys() string {
	names := make([]string, len(optionKeys))
	for i, k := range optionKeys {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

// setSync parses sync=none|async|always|every:N|interval:DURATION.
func setSync(o *openOptions, v string) error {
	kind, arg, hasArg := strings.Cut(v, ":")
	switch {
	case kind == "none" && !hasArg:
		o.engine.Sync = engine.SyncNone
	case kind == "async" && !hasArg:
		o.engine.Sync = engine.SyncAsync
	case kind == "always" && !hasArg:
		o.engine.Sync = engine.SyncAlways
	case kind == "every" && hasArg:
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			return invalidf("options: sync=%s: every:N needs a whole number N of at least 1", v)
		}
		o.engine.Sync = engine.SyncEvery(n)
	case kind == "interval" && hasArg:
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return invalidf("options: sync=%s: interval:D needs a positive duration such as 500ms or 2s", v)
		}
		o.engine.Sync = engine.SyncInterval(d)
	default:
		return invalidf("options: sync=%s: want none, async, always, every:N or interval:DURATION", v)
	}
	return nil
}

func nonNegative(key, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, invalidf("options: %s=%s: want a whole number of at least 0", key, v)
	}
	return n, nil
}

// invalidf returns an error that wraps engine.ErrInvalid (EINVAL).
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", engine.ErrInvalid, fmt.Sprintf(format, args...))
}

// boolValue parses 0/1 (also false/true, no/yes).
func boolValue(key, v string) (bool, error) {
	switch v {
	case "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, invalidf("options: %s=%s: want 0 or 1", key, v)
}
