package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ckp-go/ckp/engine"
)

// openOptions is what a ckpOpen options string sets.
type openOptions struct {
	engine engine.Options
}

// An optionKey is one key=value setting of the ckpOpen options string.
type optionKey struct {
	name string
	// set applies the value to o; its error wraps engine.ErrInvalid.
	set func(o *openOptions, value string) error
}

// optionKeys are the keys ckpOpen knows, in the order ckp_util.h documents them. A
// new setting is one more row.
var optionKeys = []optionKey{
	{"sync", setSync},
	{"keep", func(o *openOptions, v string) error {
		k, err := nonNegative("keep", v)
		o.engine.KeepVersions = k
		return err
	}},
	{"workers", func(o *openOptions, v string) error {
		w, err := nonNegative("workers", v)
		o.engine.Workers = w
		return err
	}},
	{"max_size", func(o *openOptions, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return invalidf("options: max_size=%s: want a whole number of bytes", v)
		}
		o.engine.MaxSize = n
		return nil
	}},
	{"differential", func(o *openOptions, v string) error {
		b, err := boolValue("differential", v)
		o.engine.Differential = b
		return err
	}},
	{"block_size", func(o *openOptions, v string) error {
		n, err := nonNegative("block_size", v)
		o.engine.BlockSize = n
		return err
	}},
	// The remote tier's settings: recognised, refused until the tier is built.
	{"remote", remoteNotBuilt("remote")},
	{"endpoint", remoteNotBuilt("endpoint")},
	{"insecure", remoteNotBuilt("insecure")},
	{"every", remoteNotBuilt("every")},
	{"rank", remoteNotBuilt("rank")},
	{"ranks", remoteNotBuilt("ranks")},
}

// parseOptions parses a ckpOpen options string: space-separated key=value pairs (tabs
// and newlines count as spaces). An empty string means the defaults.
func parseOptions(s string) (*openOptions, error) {
	o := &openOptions{}
	seen := make(map[string]bool)
	for _, field := range strings.Fields(s) {
		key, value, ok := strings.Cut(field, "=")
		if !ok || key == "" {
			return nil, invalidf("options: %q is not key=value", field)
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
			return nil, err
		}
	}
	return o, nil
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

func remoteNotBuilt(key string) func(*openOptions, string) error {
	return func(*openOptions, string) error {
		return invalidf("options: %s=: remote tier not built yet", key)
	}
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
