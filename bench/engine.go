package bench

import (
	"path/filepath"

	"github.com/ckp-go/ckp/engine"
)

// Engine saves with the engine: one checkpoint per region, Save for one region and
// SaveAll for several, with cfg's policy, retention and workers.
var Engine = Variant{Name: "engine", Open: openEngine}

func openEngine(cfg Config, dir string, regions [][]byte) (Saver, error) {
	opts := &engine.Options{Sync: cfg.Policy, KeepVersions: cfg.Keep, Workers: cfg.Workers}
	if cfg.Remote != nil {
		r, err := cfg.Remote()
		if err != nil {
			return nil, err
		}
		opts.Remote = r
	}
	f, err := engine.Open(filepath.Join(dir, "bench.ckp"), opts)
	if err != nil {
		return nil, err
	}
	s := &engineSaver{f: f}
	for i, r := range regions {
		c, err := f.Register(regionName(i), r)
		if err != nil {
			f.Close()
			return nil, err
		}
		s.c = c
	}
	s.all = len(regions) > 1
	return s, nil
}

func regionName(i int) string { return "region-" + string(rune('a'+i%26)) + string(rune('0'+i/26)) }

type engineSaver struct {
	f   *engine.File
	c   *engine.Checkpoint
	all bool
}

func (s *engineSaver) Save() error {
	if s.all {
		return s.f.SaveAll()
	}
	return s.c.Save()
}

func (s *engineSaver) Close() error { return s.f.Close() }
