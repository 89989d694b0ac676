package device

import (
	"bytes"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
)

// memChunkSize is the unit Mem allocates lazily. 64 KiB keeps an untouched
// multi-GiB device down to one pointer per chunk (a 4 GiB Mem costs 512 KiB)
// while amortizing each allocation over 16 blocks of 4096 bytes.
const memChunkSize = 64 << 10

// sectorSize is the unit a device can tear a block at: the 512-byte sector
// every disk writes atomically.
const sectorSize = 512

// chunk is one lazily allocated piece of a Mem's contents.
type chunk [memChunkSize]byte

// Mem is an in-memory Device that remembers what a power cut could lose.
// Create it with NewMem. Blocks never written read as zeros and cost no
// memory. For every block written since the last Sync, Mem keeps its
// contents as of that Sync (copied on the first write of each sync epoch and
// freed by Sync), so that CrashClone can revert it.
//
// All methods are safe for concurrent use. ReadAt and WriteAt run in
// parallel with each other (distinct ranges, as Device requires); Sync,
// Discard, CrashClone and Close wait for IO in flight.
type Mem struct {
	size      int64
	blockSize int

	// ioMu is held shared by ReadAt and WriteAt, exclusively by Sync,
	// Discard, CrashClone and Close, which thus never see IO in flight.
	ioMu   sync.RWMutex
	closed bool // guarded by ioMu

	chunks []atomic.Pointer[chunk] // nil: never written, reads as zeros

	mu sync.Mutex // guards unsynced, unless ioMu is held exclusively
	// unsynced maps each block index written since the last Sync to its
	// contents at that Sync; a nil value means all zeros.
	unsynced map[int64][]byte
}

var (
	_ Device    = (*Mem)(nil)
	_ Discarder = (*Mem)(nil)
)

// NewMem returns a zeroed in-memory device of size bytes with the given
// block size. It panics unless blockSize is 512 or 4096 and size is a
// non-negative multiple of blockSize.
func NewMem(size int64, blockSize int) *Mem {
	if blockSize != 512 && blockSize != 4096 {
		panic(fmt.Sprintf("device: NewMem block size %d, want 512 or 4096", blockSize))
	}
	if size < 0 || size%int64(blockSize) != 0 {
		panic(fmt.Sprintf("device: NewMem size %d, want a non-negative multiple of %d", size, blockSize))
	}
	nchunks := (size + memChunkSize - 1) / memChunkSize
	return &Mem{size: size, blockSize: blockSize, chunks: make([]atomic.Pointer[chunk], nchunks)}
}

// Size returns the size given to NewMem.
func (m *Mem) Size() int64 { return m.size }

// BlockSize returns the block size given to NewMem.
func (m *Mem) BlockSize() int { return m.blockSize }

// ReadAt copies len(p) bytes at off into p. Errors wrap ErrClosed,
// ErrUnaligned or ErrOutOfRange, and then nothing is read.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.ioMu.RLock()
	defer m.ioMu.RUnlock()
	if err := m.check(off, int64(len(p))); err != nil {
		return 0, fmt.Errorf("mem: read: %w", err)
	}
	for pc := range pieces(off, int64(len(p))) {
		if c := m.chunks[pc.chunk].Load(); c != nil {
			copy(p[pc.lo:pc.hi], c[pc.off:])
		} else {
			clear(p[pc.lo:pc.hi])
		}
	}
	return len(p), nil
}

// WriteAt copies p to off. The write is lost by CrashClone unless a Sync
// follows it (or the clone's dice keep it). Errors wrap ErrClosed,
// ErrUnaligned or ErrOutOfRange, and then nothing is written.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.ioMu.RLock()
	defer m.ioMu.RUnlock()
	if err := m.check(off, int64(len(p))); err != nil {
		return 0, fmt.Errorf("mem: write: %w", err)
	}
	m.mu.Lock()
	m.saveUnsynced(off, int64(len(p)))
	m.mu.Unlock()
	for pc := range pieces(off, int64(len(p))) {
		copy(m.chunkAt(pc.chunk)[pc.off:], p[pc.lo:pc.hi])
	}
	return len(p), nil
}

// Sync marks every completed write durable and frees the saved pre-write
// contents. It returns nil, or an error wrapping ErrClosed.
func (m *Mem) Sync() error {
	m.ioMu.Lock()
	defer m.ioMu.Unlock()
	if m.closed {
		return fmt.Errorf("mem: sync: %w", ErrClosed)
	}
	m.unsynced = nil
	return nil
}

// Discard zeroes [off, off+n) and frees the chunks it covers entirely. For
// CrashClone it counts as an unsynced write of zeros. Errors wrap
// ErrClosed, ErrUnaligned or ErrOutOfRange.
func (m *Mem) Discard(off, n int64) error {
	m.ioMu.Lock()
	defer m.ioMu.Unlock()
	if err := m.check(off, n); err != nil {
		return fmt.Errorf("mem: discard: %w", err)
	}
	m.saveUnsynced(off, n)
	for pc := range pieces(off, n) {
		c := m.chunks[pc.chunk].Load()
		switch {
		case c == nil:
		case pc.hi-pc.lo == memChunkSize:
			m.chunks[pc.chunk].Store(nil)
		default:
			clear(c[pc.off : pc.off+int(pc.hi-pc.lo)])
		}
	}
	return nil
}

// Close makes every later call except Size, BlockSize and CrashClone
// return ErrClosed. The contents stay readable through CrashClone, which
// models a power cut after Close; unsynced writes are still at risk.
func (m *Mem) Close() error {
	m.ioMu.Lock()
	defer m.ioMu.Unlock()
	if m.closed {
		return fmt.Errorf("mem: close: %w", ErrClosed)
	}
	m.closed = true
	return nil
}

// check validates a request; the caller holds ioMu.
func (m *Mem) check(off, n int64) error {
	if m.closed {
		return ErrClosed
	}
	return checkRange(off, n, m.blockSize, m.size)
}

// saveUnsynced records the current contents of every block in [off, off+n)
// not yet written in this sync epoch. The caller holds mu, or ioMu
// exclusively.
func (m *Mem) saveUnsynced(off, n int64) {
	if m.unsynced == nil {
		m.unsynced = make(map[int64][]byte)
	}
	bs := int64(m.blockSize)
	for b := off / bs; b < (off+n)/bs; b++ {
		if _, ok := m.unsynced[b]; !ok {
			m.unsynced[b] = m.blockCopy(b)
		}
	}
}

// blockCopy returns a copy of block b, or nil if it is all zeros.
func (m *Mem) blockCopy(b int64) []byte {
	c, coff := m.locate(b)
	if c == nil {
		return nil
	}
	blk := c[coff : coff+m.blockSize]
	if isZero(blk) {
		return nil
	}
	return bytes.Clone(blk)
}

// locate returns the chunk holding block b, or nil if it is unallocated,
// and b's offset within it.
func (m *Mem) locate(b int64) (*chunk, int) {
	off := b * int64(m.blockSize)
	return m.chunks[off/memChunkSize].Load(), int(off % memChunkSize)
}

// chunkAt returns chunk i, allocating it if needed. Concurrent callers
// agree on one allocation.
func (m *Mem) chunkAt(i int) *chunk {
	if c := m.chunks[i].Load(); c != nil {
		return c
	}
	m.chunks[i].CompareAndSwap(nil, new(chunk))
	return m.chunks[i].Load()
}

// zeroBlock is compared against to detect all-zero blocks.
var zeroBlock [4096]byte

// isZero reports whether b, at most 4096 bytes, is all zeros.
func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// piece is the part of a request that falls in one chunk.
type piece struct {
	chunk  int   // chunk index
	off    int   // offset within the chunk
	lo, hi int64 // range within the request
}

// pieces splits the request [off, off+n) at chunk boundaries.
func pieces(off, n int64) iter.Seq[piece] {
	return func(yield func(piece) bool) {
		for lo := int64(0); lo < n; {
			pos := off + lo
			coff := int(pos % memChunkSize)
			hi := min(n, lo+int64(memChunkSize-coff))
			if !yield(piece{int(pos / memChunkSize), coff, lo, hi}) {
				return
			}
			lo = hi
		}
	}
}
