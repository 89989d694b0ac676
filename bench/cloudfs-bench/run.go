package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// bench is one measurement: the --only names it answers to and how it runs.
type bench struct {
	names []string
	run   func(c *config, dir string) ([]row, error)
}

// benches run in this order. The paired ones share the main file, prepared
// once; restart, branch and memory share one fill of their own file.
var benches = []bench{
	{[]string{"randwrite"}, paired(benchRandWrite)},
	{[]string{"seqwrite"}, paired(benchSeqWrite)},
	{[]string{"randread"}, paired(benchRandRead)},
	{[]string{"flush"}, paired(benchFlush)},
	{[]string{"restart", "branch", "memory"}, func(c *config, dir string) ([]row, error) {
		return benchCrash(c, filepath.Join(dir, "fill.img"))
	}},
	{[]string{"replication"}, benchReplication},
	{[]string{"resync"}, benchResync},
	{[]string{"shim"}, benchShim},
}

func paired(fn func(pair) ([]row, error)) func(*config, string) ([]row, error) {
	return func(c *config, dir string) ([]row, error) { return fn(pair{c: c, path: mainFile(dir)}) }
}

func mainFile(dir string) string { return filepath.Join(dir, "main.img") }

var start = time.Now()

// logf prints a progress line with the time since the start.
func logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs the selected benchmarks, prints the table and writes the JSON. A
// benchmark that fails is reported and the others still run.
func run(c *config) error {
	dir, err := os.MkdirTemp(c.dir, "cloudfs-bench-")
	if err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(dir)
	}
	printHeader(c, dir)
	if c.selected("randwrite", "seqwrite", "randread", "flush", "replication", "resync") {
		if err := prepareFile(mainFile(dir), c.size); err != nil {
			return err
		}
	}
	var rows []row
	var errs []error
	for _, b := range benches {
		if !c.selected(b.names...) {
			continue
		}
		logf("%s", strings.Join(b.names, ", "))
		r, err := b.run(c, dir)
		if err != nil {
			err = fmt.Errorf("%s: %w", strings.Join(b.names, ", "), err)
			logf("FAILED %v", err)
			errs = append(errs, err)
		}
		rows = append(rows, r...)
	}
	fmt.Println()
	printTable(os.Stdout, rows)
	printDetails(rows)
	if c.jsonPath != "" {
		errs = append(errs, writeJSON(c.jsonPath, report{Time: start, Config: c.describe(dir), Results: rows}))
	}
	return errors.Join(errs...)
}

func printDetails(rows []row) {
	for _, r := range rows {
		if r.Detail != "" {
			fmt.Printf("  %s: %s\n", r.What, r.Detail)
		}
	}
}

func printHeader(c *config, dir string) {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Printf("cloudfs-bench: %s, GOMAXPROCS %d, %d CPUs, Linux %s\n", runtime.Version(), runtime.GOMAXPROCS(0),
		runtime.NumCPU(), strings.TrimSpace(string(kernel)))
	for _, k := range []string{"dir", "size", "duration", "budget", "qd", "seq-qd", "fill", "fill-volume", "fill-file"} {
		fmt.Printf("  --%s=%s", k, c.describe(dir)[k])
	}
	fmt.Println()
	fmt.Println("Store and raw files are opened O_DIRECT; each is written in full once, sequentially, before it is measured.")
}

// describe returns the settings of the run, for the header and the JSON.
func (c *config) describe(dir string) map[string]string {
	return map[string]string{
		"dir": dir, "size": formatBytes(float64(c.size)), "duration": c.duration.String(),
		"budget": fmt.Sprint(c.budget), "qd": fmt.Sprint(c.randQD), "seq-qd": fmt.Sprint(c.seqQD),
		"fill": formatBytes(float64(c.fill)), "fill-volume": formatBytes(float64(c.fillVolume)),
		"fill-file": formatBytes(float64(c.fillFile)), "go": runtime.Version(), "cpus": fmt.Sprint(runtime.NumCPU()),
	}
}
