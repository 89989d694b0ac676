package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is the harness's command line.
type config struct {
	dir        string
	size       int64         // the main file, for the paired raw/engine measurements
	duration   time.Duration // per side of each paired measurement
	budget     float64       // fraction of the file one write measurement may write
	only       map[string]bool
	jsonPath   string
	profileDir string
	keep       bool

	randQD, seqQD int

	fill       int64 // payload of the crash/branch/memory fill
	fillVolume int64 // size of the thin volume the fill writes to
	fillFile   int64 // size of the fill's file (0: 2 x fill)
	branches   int
}

// benchNames are the names --only takes, in the order they run.
var benchNames = []string{"randwrite", "seqwrite", "randread", "flush", "restart", "branch", "memory", "replication", "resync", "shim"}

func parseFlags(args []string) (*config, error) {
	c := &config{size: 4 << 30, fill: 4 << 30, fillVolume: 64 << 30}
	fs := flag.NewFlagSet("cloudfs-bench", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", os.TempDir(), "directory for the benchmark files (needs O_DIRECT: ext4, xfs)")
	fs.Var((*sizeFlag)(&c.size), "size", "size of the main file (paired raw/engine measurements)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "time per side of each paired measurement")
	fs.Float64Var(&c.budget, "budget", 0.5, "fraction of the file one round of a write measurement writes before the store is formatted afresh")
	only := fs.String("only", "", "comma-separated benchmarks to run (default all): "+strings.Join(benchNames, ","))
	fs.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&c.profileDir, "profile-dir", "", "write a CPU profile of each engine run into this directory")
	fs.BoolVar(&c.keep, "keep", false, "keep the benchmark files")
	fs.IntVar(&c.randQD, "qd", 32, "queue depth of the 4 KiB random measurements")
	fs.IntVar(&c.seqQD, "seq-qd", 4, "queue depth of the 1 MiB sequential measurement")
	fs.Var((*sizeFlag)(&c.fill), "fill", "bytes of 4 KiB random writes before the crash (restart, branch, memory)")
	fs.Var((*sizeFlag)(&c.fillVolume), "fill-volume", "size of the thin volume the fill writes to")
	fs.Var((*sizeFlag)(&c.fillFile), "fill-file", "size of the fill's file (default 2 x --fill + 1 GiB)")
	fs.IntVar(&c.branches, "branches", 100, "branches timed")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.fillFile == 0 {
		// the fill's log (4.5 KiB per 4 KiB write), the writes that position
		// the crash (up to 256 MiB) and the cleaner's 20% of free segments
		c.fillFile = 2*c.fill + 1<<30
	}
	var err error
	c.only, err = parseOnly(*only)
	return c, err
}

// parseOnly turns --only into a set; empty selects everything.
func parseOnly(s string) (map[string]bool, error) {
	sel := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !contains(benchNames, name) {
			return nil, fmt.Errorf("--only: unknown benchmark %q (have %s)", name, strings.Join(benchNames, ","))
		}
		sel[name] = true
	}
	if len(sel) == 0 {
		for _, n := range benchNames {
			sel[n] = true
		}
	}
	return sel, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// selected reports whether any of names was asked for.
func (c *config) selected(names ...string) bool {
	for _, n := range names {
		if c.only[n] {
			return true
		}
	}
	return false
}

// sizeFlag is a byte count written as 4096, 512K, 64M, 4G or 4GiB; sizes are
// rounded down to 4 KiB, the file's block size.
type sizeFlag int64

func (s *sizeFlag) String() string { return formatBytes(float64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n &^ (blockSize - 1))
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(v)), "IB"), "B")
	shift := 0
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			shift, t = 10*(i+1), t[:len(t)-1]
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a byte count such as 4096, 512M or 4G", v)
	}
	return int64(n * float64(int64(1)<<shift)), nil
}
