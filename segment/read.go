package segment

import (
	"fmt"
	"sync"
	"time"
	"unsafe"

	"cloudfs/segment/device"
	"cloudfs/segment/extent"
)

// piece is one part of a read: len(dst) bytes from sector address addr, or
// zeros when zero is set.
type piece struct {
	dst  []byte
	addr uint64
	zero bool
}

// ReadAt reads len(p) bytes at byte offset off (both multiples of 512, within
// the volume). Unwritten ranges read through to the parent branch, then as
// zeros. It implements io.ReaderAt and is safe to call concurrently with
// anything, including writes to the same range (it returns either version
// of each sector).
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	start := time.Now()
	s := v.s
	s.mu.RLock()
	vol := v.stateLocked()
	if vol == nil {
		s.mu.RUnlock()
		return 0, fmt.Errorf("volume %v: %w", v.base, ErrNotFound)
	}
	if uint64(off)+uint64(len(p)) > vol.size {
		s.mu.RUnlock()
		return 0, fmt.Errorf("volume %v: read at %d+%d beyond %d: %w", v.base, off, len(p), vol.size, ErrOutOfRange)
	}
	var pieces []piece
	resolve(vol.m, vol.parent, uint64(off/SectorSize), p, &pieces)
	for _, pc := range pieces {
		if !pc.zero {
			s.segs[s.segOf(pc.addr)].pins.Add(1)
		}
	}
	s.mu.RUnlock()
	err := s.readPieces(pieces)
	for _, pc := range pieces {
		if !pc.zero {
			s.segs[s.segOf(pc.addr)].pins.Add(-1)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("volume %v: read at %d: %w", v.base, off, err)
	}
	if m := vol.met; m != nil {
		m.readSec.Observe(time.Since(start).Seconds())
		m.reads.Inc()
		m.readBytes.Add(float64(len(p)))
	}
	return len(p), nil
}

// resolve splits a read of dst at sector lba into pieces, looking through map
// m, then its parents.
func resolve(m *extent.Map, parent *snapshot, lba uint64, dst []byte, out *[]piece) {
	m.Lookup(lba, uint64(len(dst)/SectorSize), func(r extent.Run) bool {
		d := dst[(r.LBA-lba)*SectorSize : (r.LBA-lba+r.Len)*SectorSize]
		switch {
		case r.Kind == extent.Mapped:
			*out = append(*out, piece{dst: d, addr: r.Addr})
		case r.Kind == extent.Unmapped && parent != nil:
			resolve(parent.m, parent.parent, r.LBA, d, out)
		default:
			*out = append(*out, piece{dst: d, zero: true})
		}
		return true
	})
}

var bouncePool = sync.Pool{New: func() any { b := device.AlignedBuf(1 << 20); return &b }}

// readPieces reads every piece from the device: straight into dst when dst
// meets the device's alignment (O_DIRECT), else through an aligned bounce
// buffer.
func (s *Store) readPieces(pieces []piece) error {
	align := int64(s.dev.BlockSize())
	var bp *[]byte
	defer func() {
		if bp != nil {
			bouncePool.Put(bp)
		}
	}()
	for _, pc := range pieces {
		if pc.zero {
			clear(pc.dst)
			continue
		}
		off := int64(pc.addr) * SectorSize
		if off%align == 0 && int64(len(pc.dst))%align == 0 && uintptr(unsafe.Pointer(&pc.dst[0]))%uintptr(align) == 0 {
			if _, err := s.dev.ReadAt(pc.dst, off); err != nil {
				return err
			}
			continue
		}
		if bp == nil {
			bp = bouncePool.Get().(*[]byte)
		}
		for done := 0; done < len(pc.dst); {
			off := int64(pc.addr)*SectorSize + int64(done)
			start := off &^ (align - 1)
			n := min(int64(len(pc.dst)-done), int64(len(*bp))-(off-start)-align)
			end := (off + n + align - 1) &^ (align - 1)
			buf := (*bp)[:end-start]
			if _, err := s.dev.ReadAt(buf, start); err != nil {
				return err
			}
			done += copy(pc.dst[done:done+int(n)], buf[off-start:])
		}
	}
	return nil
}
