package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"cloudfs/segment"
	"cloudfs/segment/device"

	"github.com/prometheus/client_golang/prometheus"
)

// prepareFile creates a file of size bytes at path (replacing one left by an
// earlier run) and writes all of it once, sequentially, in 1 MiB blocks of
// random data from 4 writers, then syncs. Every ext4 extent is then allocated
// and initialised before anything is measured: raw overwrites cost what they
// cost on a partition, no raw read hits a hole, and the engine's log lands
// on the same allocated blocks.
func prepareFile(path string, size int64) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := device.Create(path, size); err != nil {
		return err
	}
	dev, err := device.Open(path, device.Options{})
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := seqLoad(4, size/seqBlock, time.Hour).run(seqWrites(dev, size))
	if err == nil {
		err = dev.Sync()
	}
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("prepare %s: %w", path, err)
	}
	logf("prepared %s: %s written sequentially in %s (%s)", path, formatBytes(float64(size)),
		fmtDur(time.Since(start)), mbps(float64(res.ops)*seqBlock/res.elapsed.Seconds()))
	return nil
}

// seqLoad is a load of qd workers stopping after maxOps operations or d.
func seqLoad(qd int, maxOps int64, d time.Duration) load {
	return load{workers: qd, maxOps: maxOps, duration: d}
}

// engine is a store freshly formatted on a file.
type engine struct {
	dev *device.File
	st  *segment.Store
	reg *prometheus.Registry // the store's metrics
}

// openEngine formats the file at path (default segment size) and opens a
// store on it with default options: checkpoints and the cleaner run in the
// background as in production.
func openEngine(path string) (*engine, error) {
	dev, err := device.Open(path, device.Options{})
	if err != nil {
		return nil, err
	}
	if _, err := segment.Format(dev, segment.FormatOptions{}); err != nil {
		dev.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	st, err := segment.Open(dev, segment.Options{Metrics: reg})
	if err != nil {
		dev.Close()
		return nil, err
	}
	return &engine{dev: dev, st: st, reg: reg}, nil
}

// volume creates a volume of size bytes.
func (e *engine) volume(size int64) (*segment.Volume, error) {
	return e.st.Create(uint64(size))
}

func (e *engine) close() error {
	return errors.Join(e.st.Close(), e.dev.Close())
}

// withRaw opens path as a raw O_DIRECT device.File for fn.
func withRaw(path string, fn func(dev *device.File) error) error {
	dev, err := device.Open(path, device.Options{})
	if err != nil {
		return err
	}
	return errors.Join(fn(dev), dev.Close())
}

// withEngine formats path, opens a store for fn and closes it.
func withEngine(path string, fn func(e *engine) error) error {
	e, err := openEngine(path)
	if err != nil {
		return err
	}
	return errors.Join(fn(e), e.close())
}

// counters are the store's counters (cloudfs_segment_*_total) at one moment.
type counters map[string]float64

func (e *engine) counters() counters {
	c := counters{}
	mfs, err := e.reg.Gather()
	if err != nil {
		return c
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil && len(m.GetLabel()) == 0 {
				c[strings.TrimPrefix(mf.GetName(), "cloudfs_segment_")] = m.GetCounter().GetValue()
			}
		}
	}
	return c
}

// commitSummary describes the group commits between two snapshots of the
// counters, for ops operations.
func commitSummary(before, after counters, ops int64) string {
	d := func(k string) float64 { return after[k] - before[k] }
	commits := max(d("group_commits_total"), 1)
	return fmt.Sprintf("%.0f group commits (%.1f ops and %s each), %.0f syncs, %.0f checkpoints, %s appended",
		commits, float64(ops)/commits, formatBytes(d("append_bytes_total")/commits), d("syncs_total"),
		d("checkpoints_total"), formatBytes(d("append_bytes_total")))
}
