package main

import (
	"fmt"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// benchSeqWrite: 1 MiB sequential writes at queue depth --seq-qd (each
// worker takes the next MiB), raw from the file's start, engine from the
// volume's.
func benchSeqWrite(p pair) ([]row, error) {
	l := load{workers: p.c.seqQD, duration: p.c.duration, maxOps: p.budgetOps(seqBlock)}
	raw, err := p.raw(l, func(dev *device.File) func(int) opFunc { return seqWrites(dev, dev.Size()) })
	if err != nil {
		return nil, errSide("raw", err)
	}
	rawBps := raw.rate() * seqBlock
	logRun("raw", raw, mbps(rawBps))
	eng, err := p.engine("seqwrite", l, p.volSize(), nil,
		func(v *segment.Volume) func(int) opFunc { return seqWrites(v, p.volSize()) })
	if err != nil {
		return nil, errSide("engine", err)
	}
	engBps := eng.rate() * seqBlock
	logRun("engine", eng, mbps(engBps))
	what := fmt.Sprintf("1 MiB sequential write QD%d", p.c.seqQD)
	return []row{ratioRow("seqwrite", what, throughput(engBps), throughput(rawBps), ">=", 0.8)}, nil
}
