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
	dir       string
	size      int64         // the volume and the loop device's file
	storeSize int64         // the daemon's store file
	runtime   time.Duration // limit of each fio job on each device
	ioengine  string
	jsonPath  string
	cloudfs   string // the daemon binary
}

func parseFlags(args []string) (*config, error) {
	c := &config{size: 512 << 20}
	fs := flag.NewFlagSet("ublk-bench", flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", os.TempDir(), "directory for the daemon's store and the loop device's file (one file system)")
	fs.Var((*sizeFlag)(&c.size), "size", "size of the volume and of the loop device's file")
	fs.Var((*sizeFlag)(&c.storeSize), "store-size", "size of the daemon's store file (default 3 x --size: every job's writes fit without the cleaner)")
	fs.DurationVar(&c.runtime, "runtime", 10*time.Second, "time limit of each fio job on each device (jobs also stop at their size)")
	fs.StringVar(&c.ioengine, "ioengine", "libaio", "fio's ioengine: libaio or io_uring")
	fs.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&c.cloudfs, "cloudfs", os.Getenv("CLOUDFS_BIN"), "the cloudfs binary (default $CLOUDFS_BIN, else cloudfs in PATH)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.cloudfs == "" {
		c.cloudfs = "cloudfs"
	}
	if c.storeSize == 0 {
		c.storeSize = 3 * c.size
	}
	switch {
	case c.size < minRegion:
		return nil, fmt.Errorf("--size %s: want at least %s", formatBytes(float64(c.size)), formatBytes(minRegion))
	case c.runtime < time.Second:
		return nil, fmt.Errorf("--runtime %v: want at least 1s", c.runtime)
	case c.ioengine != "libaio" && c.ioengine != "io_uring":
		return nil, fmt.Errorf("--ioengine %q: want libaio or io_uring", c.ioengine)
	}
	return c, nil
}

// sizeFlag is a byte count written as 4096, 512K, 64M, 4G or 4GiB, rounded
// down to 1 MiB, the sequential job's block size.
type sizeFlag int64

func (s *sizeFlag) String() string { return formatBytes(float64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n &^ (1<<20 - 1))
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

func formatBytes(b float64) string {
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if b < 1024 {
			return fmt.Sprintf("%.4g %s", b, u)
		}
		b /= 1024
	}
	return fmt.Sprintf("%.4g TiB", b)
}
