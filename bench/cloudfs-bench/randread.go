package main

import (
	"fmt"
	"time"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// benchRandRead: 4 KiB random reads at queue depth --qd over the same span
// of bytes on both sides: the first half of the raw file, and a volume of
// that size written in full beforehand (1 MiB sequential writes of stamped
// random data, untimed). The engine's reads check every sector's stamp.
func benchRandRead(p pair) ([]row, error) {
	span := p.volSize()
	l := load{workers: p.c.randQD, duration: p.c.duration}
	raw, err := p.raw(l, func(dev *device.File) func(int) opFunc { return randReads(dev, span, 3, false) })
	if err != nil {
		return nil, errSide("raw", err)
	}
	logRun("raw", raw, iops(raw.rate(), blockSize).Text)
	eng, err := p.engine("randread", l, span, fillVolume,
		func(v *segment.Volume) func(int) opFunc { return randReads(v, span, 3, true) })
	if err != nil {
		return nil, errSide("engine", err)
	}
	logRun("engine", eng, iops(eng.rate(), blockSize).Text)
	what := fmt.Sprintf("4 KiB random read QD%d", p.c.randQD)
	return []row{ratioRow("randread", what, iops(eng.rate(), blockSize), iops(raw.rate(), blockSize), ">=", 0.8)}, nil
}

// fillVolume writes all of v once with 1 MiB sequential writes from 4 workers.
func fillVolume(v *segment.Volume) error {
	in, err := v.Info()
	if err != nil {
		return err
	}
	size := int64(in.Size)
	res, err := seqLoad(4, size/seqBlock, time.Hour).run(seqWrites(v, size))
	if err == nil {
		logf("  engine volume of %s written for reading in %s (%s)", formatBytes(float64(size)), fmtDur(res.elapsed),
			mbps(float64(size)/res.elapsed.Seconds()))
	}
	return err
}
