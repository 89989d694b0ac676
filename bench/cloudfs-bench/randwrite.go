package main

import (
	"fmt"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// benchRandWrite: 4 KiB random writes at queue depth --qd (one goroutine per
// outstanding write), raw over the whole file, engine over one volume.
func benchRandWrite(p pair) ([]row, error) {
	l := load{workers: p.c.randQD, duration: p.c.duration, maxOps: p.budgetOps(blockSize)}
	raw, err := p.raw(l, func(dev *device.File) func(int) opFunc { return randWrites(dev, dev.Size(), 1) })
	if err != nil {
		return nil, errSide("raw", err)
	}
	logRun("raw", raw, iops(raw.rate(), blockSize).Text)
	eng, err := p.engine("randwrite", l, p.volSize(), nil,
		func(v *segment.Volume) func(int) opFunc { return randWrites(v, p.volSize(), 2) })
	if err != nil {
		return nil, errSide("engine", err)
	}
	logRun("engine", eng, iops(eng.rate(), blockSize).Text)
	what := fmt.Sprintf("4 KiB random write QD%d", p.c.randQD)
	return []row{ratioRow("randwrite", what, iops(eng.rate(), blockSize), iops(raw.rate(), blockSize), ">=", 1.2)}, nil
}
