package extent

import (
	"fmt"
	"math"
)

const (
	// Zero is the address of a zero extent: its range reads as zeros and
	// masks any parent (discard, write-zeroes, all-zero sectors). It is the
	// largest 44-bit value, so it fits the packed item word.
	Zero uint64 = 1<<addrBits - 1

	// MaxLen is the longest single extent in sectors: the largest value the
	// 20-bit length field of the packed item word can hold.
	MaxLen = 1<<lenBits - 1

	// addrBits + lenBits = 64: an address and a length pack into one word.
	addrBits = 44
	lenBits  = 20
)

// Extent maps the sectors [LBA, LBA+Len) to [Addr, Addr+Len), or to zeros
// when Addr == Zero. A valid extent has 0 < Len <= MaxLen, LBA+Len <= 2^64-1,
// and either Addr == Zero or Addr+Len <= Zero.
type Extent struct {
	LBA  uint64
	Len  uint32
	Addr uint64
}

// String formats e as "[LBA+Len)@Addr" or "[LBA+Len)@zero".
func (e Extent) String() string {
	if e.Addr == Zero {
		return fmt.Sprintf("[%d+%d)@zero", e.LBA, e.Len)
	}
	return fmt.Sprintf("[%d+%d)@%d", e.LBA, e.Len, e.Addr)
}

// Kind says what backs a [Run].
type Kind uint8

const (
	// Unmapped is a gap in the map: the caller falls through to a parent
	// volume or reads zeros.
	Unmapped Kind = iota
	// Mapped means sector Run.LBA+i is stored at address Run.Addr+i.
	Mapped
	// Zeroed means the run reads as zeros and masks any parent.
	Zeroed
)

// String returns the lower-case name of k.
func (k Kind) String() string {
	switch k {
	case Unmapped:
		return "unmapped"
	case Mapped:
		return "mapped"
	case Zeroed:
		return "zeroed"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Run is one piece of a [Map.Lookup] walk. Addr is meaningful only when Kind
// is Mapped; it is Zero for Zeroed runs and 0 for Unmapped runs.
type Run struct {
	LBA  uint64
	Len  uint64
	Addr uint64
	Kind Kind
}

// item is the 16-byte B-tree element: one extent, keyed by lba, with
// v = addr<<lenBits | len.
type item struct {
	lba uint64
	v   uint64
}

func less(a, b item) bool { return a.lba < b.lba }

func makeItem(lba, n, addr uint64) item { return item{lba: lba, v: addr<<lenBits | n} }

func (it item) len() uint64  { return it.v & MaxLen }
func (it item) addr() uint64 { return it.v >> lenBits }
func (it item) end() uint64  { return it.lba + it.len() }
func (it item) zero() bool   { return it.addr() == Zero }

// addrAt returns the address of sector x, which it must cover.
func (it item) addrAt(x uint64) uint64 {
	if it.zero() {
		return Zero
	}
	return it.addr() + (x - it.lba)
}

// slice returns the part [lo, hi) of it; it must cover [lo, hi).
func (it item) slice(lo, hi uint64) item { return makeItem(lo, hi-lo, it.addrAt(lo)) }

func (it item) extent() Extent {
	return Extent{LBA: it.lba, Len: uint32(it.len()), Addr: it.addr()}
}

func (it item) run() Run {
	r := Run{LBA: it.lba, Len: it.len(), Addr: it.addr(), Kind: Mapped}
	if it.zero() {
		r.Kind = Zeroed
	}
	return r
}

// joinable reports whether b continues a: adjacent in LBA, contiguous in
// address (or both zero), and short enough to be one extent.
func joinable(a, b item) bool {
	switch {
	case a.end() != b.lba || a.len()+b.len() > MaxLen:
		return false
	case a.zero() || b.zero():
		return a.zero() && b.zero()
	}
	return a.addr()+a.len() == b.addr()
}

// validate checks one item against the end of its predecessor (0 for the
// first). The error wraps ErrCorrupt.
func validate(it item, prevEnd uint64) error {
	n := it.len()
	switch {
	case n == 0:
		return fmt.Errorf("lba %d: zero length: %w", it.lba, ErrCorrupt)
	case !it.zero() && it.addr() > Zero-n:
		return fmt.Errorf("lba %d: address %d+%d beyond %d: %w", it.lba, it.addr(), n, Zero, ErrCorrupt)
	case it.lba > math.MaxUint64-n:
		return fmt.Errorf("lba %d: length %d overflows: %w", it.lba, n, ErrCorrupt)
	case it.lba < prevEnd:
		return fmt.Errorf("lba %d: before end %d of previous extent: %w", it.lba, prevEnd, ErrCorrupt)
	}
	return nil
}

// mustItem converts e to an item, panicking if e is invalid: callers of
// Insert and Remap own that contract.
func mustItem(e Extent) item {
	if e.Len == 0 || e.Len > MaxLen {
		panic(fmt.Sprintf("extent: %v: length out of range (0, %d]", e, MaxLen))
	}
	if e.Addr > Zero {
		panic(fmt.Sprintf("extent: %v: address beyond %d", e, Zero))
	}
	it := makeItem(e.LBA, uint64(e.Len), e.Addr)
	if err := validate(it, 0); err != nil {
		panic(fmt.Sprintf("extent: %v: %v", e, err))
	}
	return it
}

// mustEnd returns lba+n, panicking on overflow.
func mustEnd(lba, n uint64) uint64 {
	if lba > math.MaxUint64-n {
		panic(fmt.Sprintf("extent: range %d+%d overflows", lba, n))
	}
	return lba + n
}
