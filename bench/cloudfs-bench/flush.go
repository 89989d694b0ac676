package main

import "cloudfs/segment/device"

// benchFlush: 4 KiB write + flush at queue depth 1. Raw is pwrite +
// fdatasync at random offsets of the file; the engine is WriteAt + Flush
// (what a VM's write followed by FLUSH costs), and, printed too, a write
// with FUA. The ratio compares medians: on a virtual disk a few fdatasyncs
// take hundreds of milliseconds, which swamps the mean of either side (the
// details print mean and p99 too).
func benchFlush(p pair) ([]row, error) {
	l := load{workers: 1, duration: p.c.duration, latency: true}
	raw, err := p.raw(l, func(dev *device.File) func(int) opFunc { return syncWrites(dev, dev.Sync, dev.Size(), 4) })
	if err != nil {
		return nil, errSide("raw", err)
	}
	rs := summarize(raw.lat)
	logf("  raw    pwrite+fdatasync: %s", rs)
	var flush, fua latStats
	err = withEngine(p.path, func(e *engine) error {
		v, err := e.volume(p.volSize())
		if err != nil {
			return err
		}
		if flush, err = p.engineLatency(e, "flush", l, syncWrites(v, v.Flush, p.volSize(), 5)); err != nil {
			return err
		}
		fua, err = p.engineLatency(e, "fua", l, fuaWrites(v, p.volSize(), 6))
		return err
	})
	if err != nil {
		return nil, errSide("engine", err)
	}
	return []row{
		withDetail(ratioRow("flush", "4 KiB write+flush QD1 (p50)", latency(flush.p50), latency(rs.p50), "<=", 1.2), flush, rs),
		withDetail(ratioRow("flush", "4 KiB write FUA QD1 (p50)", latency(fua.p50), latency(rs.p50), "<=", 1.2), fua, rs),
	}, nil
}

// engineLatency runs one QD1 latency load on an open engine.
func (p pair) engineLatency(e *engine, name string, l load, newOp func(int) opFunc) (latStats, error) {
	before := e.counters()
	var res loadResult
	err := p.c.profile(name, func() (err error) {
		res, err = l.run(newOp)
		return err
	})
	s := summarize(res.lat)
	logf("  engine %s: %s; %s", name, s, commitSummary(before, e.counters(), res.ops))
	return s, err
}

func withDetail(r row, eng, raw latStats) row {
	r.Detail = "engine " + eng.String() + "; raw " + raw.String()
	return r
}
