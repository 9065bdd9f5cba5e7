// Command ckpbench measures the ckp engine against what a user would otherwise write,
// in one run on this machine, and prints the results as a table of throughput, save
// latency and ratios to each baseline, followed by the engine's goals.
//
//	go run ./cmd/ckpbench              # the default suite, within 30 s
//	go run ./cmd/ckpbench -h           # flags
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("ckpbench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.dir, "dir", "", "directory for the benchmark files (default: a temporary directory, removed afterwards)")
	fs.StringVar(&o.sections, "run", strings.Join(defaultSections, ","), "sections to run, comma-separated, from: "+strings.Join(allSections, ","))
	fs.StringVar(&o.size, "size", "", "region size for the save and compute sections (default 64MiB), e.g. 16MiB")
	fs.IntVar(&o.regions, "regions", 0, "regions per save (SaveAll) in the save and compute sections (default 1)")
	fs.IntVar(&o.saves, "saves", 0, "measured saves per run (default: per section)")
	fs.StringVar(&o.sync, "sync", "none,always", "engine sync policies in the save section: none, async, always, every(N), interval(D)")
	fs.Float64Var(&o.compute, "compute", 3, "compute section: bytes the program touches between saves, as a multiple of the region")
	fs.IntVar(&o.keep, "keep", 2, "KeepVersions of the engine/keep rows and of the keep section")
	fs.IntVar(&o.retain, "retain", 0, "KeepVersions of the engine rows per sync policy in the save and small sections (0 keeps every version)")
	fs.IntVar(&o.rounds, "rounds", 2, "runs of each variant, interleaved; the median is reported")
	fs.IntVar(&o.reopenVersions, "reopen-versions", 1_000_000, "versions in the file the reopen section opens")
	fs.IntVar(&o.manyRegions, "many-regions", 10_000, "regions registered and saved by the regions section")
	fs.StringVar(&o.diffSize, "diff-size", "", "region size of the differential section (default 1GiB)")
	fs.IntVar(&o.diffSaves, "diff-saves", 6, "measured saves per run of the differential section")
	fs.StringVar(&o.remote, "remote", "", "remote section: the store to upload to, s3://bucket/prefix (keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or a directory (default: a directory under -dir)")
	fs.StringVar(&o.endpoint, "endpoint", "", "remote section: the S3 server of an s3:// -remote (host:port or URL; default AWS S3)")
	fs.BoolVar(&o.insecure, "insecure", false, "remote section: plain HTTP to the S3 server")
	fs.IntVar(&o.remoteEvery, "remote-every", 16, "remote section: the compute loop uploads every n-th version (Remote.Every; 16 lets a store on the same disk keep up)")
	fs.StringVar(&o.remoteSizeArg, "remote-size", "32MiB", "remote section: bytes per version")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.BoolVar(&o.benchstat, "benchstat", false, "print the results as Go benchmark lines (for benchstat) instead of a table")
	fs.StringVar(&o.plot, "plot", "", "write a chart of throughput vs region size per policy to `FILE` (.png or .svg); runs a size sweep")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to `FILE`")
	fs.BoolVar(&o.quiet, "q", false, "no progress bar, no estimates")
	fs.DurationVar(&o.budget, "budget", defaultBudget, "skip the last rounds once the run would end past this `duration` at the speed measured so far (for the default sections unless given; 0: none)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: ckpbench [flags]\n\nRuns the engine and its baselines on this machine and prints a table of\nthroughput, p50/p99 save latency and ratios to the baselines.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	fs.Visit(func(f *flag.Flag) { o.budgetGiven = o.budgetGiven || f.Name == "budget" })
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ckpbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(os.Stderr, "ckpbench: %v\n", err)
		return 2
	}
	if o.cpuprofile != "" {
		pf, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ckpbench: %v\n", err)
			return 2
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintf(os.Stderr, "ckpbench: %v\n", err)
			return 2
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	rep, err := runSuite(&o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ckpbench: %v\n", err)
		return 1
	}
	switch {
	case o.json:
		err = rep.writeJSON(os.Stdout)
	case o.benchstat:
		err = rep.writeBenchstat(os.Stdout)
	default:
		err = rep.writeTable(os.Stdout)
	}
	if err == nil && o.plot != "" {
		err = writePlot(o.plot, rep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ckpbench: %v\n", err)
		return 1
	}
	return 0
}
