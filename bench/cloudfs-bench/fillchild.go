package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// fillChildArg is the hidden first argument that makes the harness the
// crash child: it fills a store, prints a fillReport on stdout and waits for
// the parent's SIGKILL with the store open and its goroutines running.
const fillChildArg = "__fill-child"

// fillConfig is the child's job, passed as JSON in its second argument.
type fillConfig struct {
	Path     string
	Fill     int64 // bytes of 4 KiB random writes
	Volume   int64 // size of the thin volume written
	Workers  int
	Branches int
}

// fillReport is what the child measured, and what the parent checks after
// the restart.
type fillReport struct {
	Base        string // the volume's base id
	Written     int64  // bytes of the fill
	FillSeconds float64
	HeapBefore  uint64 // live heap after Open and Create
	HeapAfter   uint64 // live heap after the fill and a checkpoint
	// HeapMid and WrittenMid: the same after the first half of the fill; the
	// growth from there to the end, per byte written, is the index's
	// marginal cost, free of the store's fixed buffers.
	HeapMid     uint64
	WrittenMid  int64
	Extents     int // of the volume after the fill
	BranchNanos []int64
	CkptBody    int64 // bytes of the newest checkpoint's body
	SinceCkpt   int64 // log bytes written since the newest checkpoint (estimate)
	Final       segment.Info
	Probes      []probe // recent acknowledged writes, to read back
}

// probe is an acknowledged 4 KiB write: its offset and checksum.
type probe struct {
	Off int64
	Sum uint32
}

// childMain is the child's main: it never returns. After its report it
// waits, store open, for the parent's SIGKILL (Pdeathsig kills it should
// the parent die first).
func childMain(arg string) {
	if err := runFillChild(arg); err != nil {
		fmt.Fprintln(os.Stderr, "cloudfs-bench child:", err)
		os.Exit(1)
	}
	time.Sleep(childTimeout)
	fmt.Fprintln(os.Stderr, "cloudfs-bench child: not killed")
	os.Exit(1)
}

// runFillChild fills and prints the report on stdout.
func runFillChild(arg string) error {
	var fc fillConfig
	if err := json.Unmarshal([]byte(arg), &fc); err != nil {
		return err
	}
	rep, err := fill(fc)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// ckptWatch follows the store's checkpoints through its debug log.
type ckptWatch struct {
	logged *atomic.Int64 // the filler's log estimate
	body   atomic.Int64  // body bytes of the newest checkpoint
	at     atomic.Int64  // logged when it became durable
}

func (w *ckptWatch) logger() *slog.Logger {
	return tapLogger(func(r slog.Record) {
		if r.Message == "checkpoint written" {
			w.body.Store(attrInt(r, "bytes"))
			w.at.Store(w.logged.Load())
		}
	})
}

// fill runs the child's measurements on a store with default options
// (background checkpoints and cleaner on).
func fill(fc fillConfig) (*fillReport, error) {
	dev, err := device.Open(fc.Path, device.Options{})
	if err != nil {
		return nil, err
	}
	if _, err := segment.Format(dev, segment.FormatOptions{}); err != nil {
		return nil, err
	}
	f := &filler{workers: fc.Workers, span: fc.Volume}
	w := &ckptWatch{logged: &f.logged}
	st, err := segment.Open(dev, segment.Options{Logger: w.logger()})
	if err != nil {
		return nil, err
	}
	if f.v, err = st.Create(uint64(fc.Volume)); err != nil {
		return nil, err
	}
	rep := &fillReport{Base: f.v.Base().String(), HeapBefore: liveHeap()}
	if err := measureFill(st, f, fc, rep); err != nil {
		return nil, err
	}
	if rep.BranchNanos, err = timeBranches(st, f, fc.Branches); err != nil {
		return nil, err
	}
	if err := positionCrash(f, w, rep); err != nil {
		return nil, err
	}
	rep.Probes = f.probes()
	rep.Final, err = f.v.Info()
	return rep, err
}

// measureFill writes fc.Fill bytes, checkpoints (so no checkpoint body is in
// flight) and measures the live heap.
func measureFill(st *segment.Store, f *filler, fc fillConfig, rep *fillReport) error {
	start := time.Now()
	half, err := f.run(fc.Fill / blockSize / 2)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	if err := st.Checkpoint(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	rep.HeapMid, rep.WrittenMid = liveHeap(), half.ops*blockSize
	res, err := f.run(fc.Fill/blockSize - half.ops)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	rep.Written, rep.FillSeconds = (half.ops+res.ops)*blockSize, time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "  child: filled %s in %.1f s (%s IOPS)\n", formatBytes(float64(rep.Written)),
		rep.FillSeconds, si(res.rate()))
	if err := st.Checkpoint(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	rep.HeapAfter = liveHeap()
	in, err := f.v.Info()
	rep.Extents = in.Extents
	return err
}

// liveHeap returns the live heap after two full collections (the second
// frees what finalizers and sync.Pool victims held).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// timeBranches writes 4 KiB to the volume and branches its new head, n times,
// and returns the time of each Branch call.
func timeBranches(st *segment.Store, f *filler, n int) ([]int64, error) {
	op := f.newOp(0)
	lat := make([]int64, 0, n)
	for i := range n {
		if err := op(int64(-1 - i)); err != nil {
			return nil, err
		}
		in, err := f.v.Info()
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, err := st.Branch(in.Version); err != nil {
			return nil, fmt.Errorf("branch %d of %v: %w", i, in.Version, err)
		}
		lat = append(lat, int64(time.Since(t0)))
		f.logged.Add(segment.SectorSize) // the branch record: a header alone
	}
	return lat, nil
}

// checkpointBytes is segment.Options' default CheckpointBytes.
const checkpointBytes = 256 << 20

// positionCrash keeps writing until the log since the newest checkpoint is
// 90% of the amount that triggers the next one (the background goroutine
// checkpoints at max(CheckpointBytes, 4 x body), cleaner.go): the parent's
// SIGKILL then lands at nearly the worst moment for roll-forward.
func positionCrash(f *filler, w *ckptWatch, rep *fillReport) error {
	for {
		window := max(checkpointBytes, 4*w.body.Load())
		since := f.logged.Load() - w.at.Load()
		need := window*9/10 - since
		if need <= 0 {
			rep.CkptBody, rep.SinceCkpt = w.body.Load(), since
			return nil
		}
		if _, err := f.run(need/recordBytes + 1); err != nil {
			return fmt.Errorf("position: %w", err)
		}
	}
}

// filler writes 4 KiB blocks of stamped random data at random offsets of a
// volume from several goroutines, and remembers each worker's last write.
type filler struct {
	v       *segment.Volume
	workers int
	span    int64
	logged  atomic.Int64 // log bytes of its acknowledged writes (estimate)
	last    []probe
	seed    uint64
}

func (f *filler) run(ops int64) (loadResult, error) {
	f.seed++ // fresh offsets each run
	f.last = make([]probe, f.workers)
	return load{workers: f.workers, duration: time.Hour, maxOps: ops}.run(f.newOp)
}

func (f *filler) newOp(worker int) opFunc {
	buf := payload(blockSize, f.seed<<8+uint64(worker))
	offs := newOffsets(f.span, blockSize, worker, f.seed<<8+100)
	return func(i int64) error {
		off := offs.next()
		stamp(buf, off, i)
		if _, err := f.v.WriteAt(buf, off); err != nil {
			return err
		}
		f.logged.Add(recordBytes)
		if worker < len(f.last) {
			f.last[worker] = probe{Off: off, Sum: checksum(buf)}
		}
		return nil
	}
}

// probes returns the last write of each worker, leaving out offsets written
// by two of them (which one landed last is unknown).
func (f *filler) probes() []probe {
	count := map[int64]int{}
	for _, p := range f.last {
		count[p.Off]++
	}
	var out []probe
	for _, p := range f.last {
		if count[p.Off] == 1 && p.Sum != 0 {
			out = append(out, p)
		}
	}
	return out
}
