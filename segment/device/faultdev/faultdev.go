package faultdev

import (
	"fmt"
	"sync"
	"time"

	"cloudfs/segment/device"
)

// Dev is a device.Device that forwards to another and injects faults. It is
// safe for concurrent use as far as the wrapped device is; faults see calls
// in the order they take the Dev's internal lock.
type Dev struct {
	dev    device.Device
	faults []Fault

	mu       sync.Mutex
	counts   [numOps]int // calls per Op, including failed ones
	disarmed bool
}

var (
	_ device.Device    = (*Dev)(nil)
	_ device.Discarder = (*Dev)(nil)
)

// Wrap returns a Dev that forwards to dev and applies faults, checked in
// order: the first fault that fails or tears a call wins, and the delays
// of all faults add up.
func Wrap(dev device.Device, faults ...Fault) *Dev {
	return &Dev{dev: dev, faults: faults}
}

// Counts returns how many ReadAt, WriteAt and Sync calls the Dev has seen,
// including those that failed.
func (d *Dev) Counts() (reads, writes, syncs int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[OpRead], d.counts[OpWrite], d.counts[OpSync]
}

// Disarm stops all fault injection, including latency. Calls are still
// counted. It is safe to call at any time and more than once.
func (d *Dev) Disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disarmed = true
}

// ReadAt forwards to the wrapped device unless a fault fails the call, in
// which case it reads nothing and returns an error wrapping ErrInjected.
func (d *Dev) ReadAt(p []byte, off int64) (int, error) {
	if e := d.begin(OpRead, len(p)); e.fail {
		return 0, fmt.Errorf("faultdev: read of %d at %d: %w", len(p), off, ErrInjected)
	}
	return d.dev.ReadAt(p, off)
}

// WriteAt forwards to the wrapped device unless a fault fails the call
// (nothing is written) or tears it (a prefix is written); either way the
// error wraps ErrInjected.
func (d *Dev) WriteAt(p []byte, off int64) (int, error) {
	e := d.begin(OpWrite, len(p))
	switch {
	case e.fail:
		return 0, fmt.Errorf("faultdev: write of %d at %d: %w", len(p), off, ErrInjected)
	case e.keep >= 0 && d.valid(p, off):
		return d.tear(p, off, e.keep*sectorSize)
	}
	return d.dev.WriteAt(p, off)
}

// Sync forwards to the wrapped device unless a fault fails the call, in
// which case nothing is synced and the error wraps ErrInjected.
func (d *Dev) Sync() error {
	if e := d.begin(OpSync, 0); e.fail {
		return fmt.Errorf("faultdev: sync: %w", ErrInjected)
	}
	return d.dev.Sync()
}

// Size forwards to the wrapped device.
func (d *Dev) Size() int64 { return d.dev.Size() }

// BlockSize forwards to the wrapped device.
func (d *Dev) BlockSize() int { return d.dev.BlockSize() }

// Close forwards to the wrapped device. It is never failed by a fault.
func (d *Dev) Close() error { return d.dev.Close() }

// Discard forwards to the wrapped device if it is a device.Discarder, and
// otherwise does nothing and returns nil, which discard's advisory contract
// allows. It is never failed by a fault.
func (d *Dev) Discard(off, n int64) error {
	if dd, ok := d.dev.(device.Discarder); ok {
		return dd.Discard(off, n)
	}
	return nil
}

// begin counts a call, decides its effect and sleeps for its delay.
func (d *Dev) begin(op Op, size int) effect {
	e := d.decide(op, size)
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	return e
}

// decide counts a call and combines the faults' effects on it.
func (d *Dev) decide(op Op, size int) effect {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts[op]++
	if d.disarmed {
		return none
	}
	c := call{op: op, n: d.counts[op], sectors: size / sectorSize}
	out := none
	for _, f := range d.faults {
		e := f.decide(c)
		out.delay += e.delay
		if !out.fail && out.keep < 0 {
			out.fail, out.keep = e.fail, e.keep
		}
	}
	return out
}

// valid reports whether a write is aligned and in range, so that tearing
// it cannot land data the whole write would not have.
func (d *Dev) valid(p []byte, off int64) bool {
	bs, n := int64(d.dev.BlockSize()), int64(len(p))
	return off%bs == 0 && n%bs == 0 && off >= 0 && n <= d.dev.Size()-off
}

// tear writes the first n bytes of p, a multiple of 512, and reports
// ErrInjected. A tail that ends inside a block is merged into the block's
// current contents with a read-modify-write, since the wrapped device only
// accepts whole blocks.
func (d *Dev) tear(p []byte, off int64, n int) (int, error) {
	bs := d.dev.BlockSize()
	full := n / bs * bs
	if full > 0 {
		if w, err := d.dev.WriteAt(p[:full], off); err != nil {
			return w, err
		}
	}
	if n > full {
		if err := d.mergeBlock(p[full:n], off+int64(full)); err != nil {
			return full, err
		}
	}
	return n, fmt.Errorf("faultdev: write of %d at %d torn after %d bytes: %w", len(p), off, n, ErrInjected)
}

// mergeBlock overwrites the start of the block at off with head.
func (d *Dev) mergeBlock(head []byte, off int64) error {
	buf := device.AlignedBuf(d.dev.BlockSize())
	if _, err := d.dev.ReadAt(buf, off); err != nil {
		return err
	}
	copy(buf, head)
	_, err := d.dev.WriteAt(buf, off)
	return err
}
