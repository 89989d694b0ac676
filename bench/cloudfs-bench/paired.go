package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// A paired measurement runs the same load twice on the main file: first as
// raw pwrite/pread on the O_DIRECT device.File (the machine's limit), then
// through one volume of a store freshly formatted on that same file.

// pair is what one paired measurement needs.
type pair struct {
	c    *config
	path string
}

// raw runs l with the operations newOp builds on the raw file, in rounds
// (see rounds).
func (p pair) raw(l load, newOp func(dev *device.File) func(int) opFunc) (loadResult, error) {
	return rounds(l, func(l load) (res loadResult, err error) {
		err = withRaw(p.path, func(dev *device.File) error {
			res, err = l.run(newOp(dev))
			return err
		})
		return res, err
	})
}

// engine runs l in rounds (see rounds); each round formats the file, creates
// a volume of volSize bytes, lets prepare write to it (untimed), then runs l
// with the operations newOp builds on the volume, under the CPU profiler if
// --profile-dir is set.
func (p pair) engine(name string, l load, volSize int64, prepare func(*segment.Volume) error,
	newOp func(v *segment.Volume) func(int) opFunc) (loadResult, error) {
	return rounds(l, func(l load) (res loadResult, err error) {
		err = withEngine(p.path, func(e *engine) error {
			v, err := e.volume(volSize)
			if err == nil && prepare != nil {
				err = prepare(v)
			}
			if err != nil {
				return err
			}
			before := e.counters()
			err = p.c.profile(name, func() (err error) {
				res, err = l.run(newOp(v))
				return err
			})
			logf("  engine %s: %s", name, commitSummary(before, e.counters(), res.ops))
			return err
		})
		return res, err
	})
}

// rounds runs round with l until l.duration has passed in all. A round ends
// early when it has issued l.maxOps operations, the write budget: a store
// formatted afresh for each round then never runs out of free segments, so
// the figure is the log's speed, not the cleaner's.
func rounds(l load, round func(load) (loadResult, error)) (loadResult, error) {
	var total loadResult
	for total.elapsed < l.duration {
		r := l
		r.duration = l.duration - total.elapsed
		res, err := round(r)
		total.ops += res.ops
		total.elapsed += res.elapsed
		total.lat = append(total.lat, res.lat...)
		if err != nil || res.ops == 0 {
			return total, err
		}
	}
	return total, nil
}

// profile runs fn under the CPU profiler when --profile-dir is set.
func (c *config) profile(name string, fn func() error) error {
	if c.profileDir == "" {
		return fn()
	}
	f, err := os.Create(filepath.Join(c.profileDir, name+".engine.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return fn()
}

// budgetOps is how many operations of bs bytes one round of a write
// measurement may issue: --budget of the file, the same on both sides.
func (p pair) budgetOps(bs int64) int64 {
	return int64(p.c.budget*float64(p.c.size)) / bs
}

// volSize is the volume the engine side writes to: half the file, so the log
// has room for every write of the budget plus checkpoints.
func (p pair) volSize() int64 { return p.c.size / 2 &^ (seqBlock - 1) }

func logRun(side string, res loadResult, what string) {
	logf("  %-6s %d ops in %s: %s", side, res.ops, fmtDur(res.elapsed), what)
}

func errSide(side string, err error) error { return fmt.Errorf("%s: %w", side, err) }
