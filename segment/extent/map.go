package extent

import (
	"fmt"

	"github.com/google/btree"
)

// degree is the B-tree degree: nodes hold degree-1 to 2*degree-1 items. With
// random 4 KiB writes, 64 keeps the map at 23.7-24.0 bytes per extent at every
// size from 0.2M to 3M extents. 128 averages 23.5 but swings up to 24.5 as
// node splits come in waves, 32 needs 24.7, and 16 needs 39 because a 15-item
// node half lands in the 240-byte size class and then grows to 64 items. See
// TestMemoryPer4KWrite.
const degree = 64

// Map is the extent map of one volume: a set of non-overlapping extents in
// LBA order. The zero Map is not usable; call [New].
//
// A Map is not safe for concurrent use: the caller serialises all calls,
// including read-only ones (Lookup, Ascend, Len, Sectors, AppendBinary).
// Callbacks must not call methods on the Map they were passed to.
type Map struct {
	t      *btree.BTreeG[item]
	degree int
	data   uint64 // sectors in data extents
	zero   uint64 // sectors in zero extents
}

// New returns an empty map.
func New() *Map { return newMap(degree) }

func newMap(d int) *Map {
	return &Map{t: btree.NewG(d, less), degree: d}
}

// Insert maps [e.LBA, e.LBA+e.Len) to e.Addr (or to zeros if e.Addr == Zero),
// replacing whatever was mapped there. Before it returns, it calls dead, if
// not nil, once for each previously mapped piece (data or zero) that it
// overwrote, trimmed to exactly the overwritten sectors, in LBA order. Pieces
// are reported even when the new mapping equals the old one.
//
// Insert splits and trims the extents it overlaps, and merges e with a
// neighbour that is adjacent in LBA and contiguous in address (or zero like
// e) as long as the merged length is at most MaxLen.
//
// e must be valid (see [Extent]); Insert panics otherwise.
func (m *Map) Insert(e Extent, dead func(Extent)) {
	it := mustItem(e)
	m.cut(it.lba, it.end(), dead)
	m.set(m.merge(it))
	m.checkNear(it.lba, it.end())
}

// Remove unmaps [lba, lba+n), so that those sectors fall through to a parent.
// It calls dead, if not nil, for each piece it removed, as Insert does. It
// panics if lba+n overflows.
func (m *Map) Remove(lba, n uint64, dead func(Extent)) {
	hi := mustEnd(lba, n)
	m.cut(lba, hi, dead)
	m.checkNear(lba, hi)
}

// Remap moves, for every sector x in [lba, lba+n) currently mapped to
// oldAddr+(x-lba), that mapping to newAddr+(x-lba), and returns the number of
// sectors moved. Sectors mapped elsewhere, zeroed or unmapped are left alone.
// The cleaner uses it to relocate live data. Remap splits and merges extents
// as Insert does, without reporting dead pieces: the old addresses are the
// ones the caller is moving away from. It costs one Insert per matching
// extent piece, O(k log n) for k extents overlapping the range.
//
// It panics if lba+n overflows or newAddr+n > Zero.
func (m *Map) Remap(lba uint64, n uint32, oldAddr, newAddr uint64) (moved uint64) {
	hi := mustEnd(lba, uint64(n))
	if newAddr > Zero-uint64(n) {
		panic(fmt.Sprintf("extent: remap to %d+%d beyond %d", newAddr, n, Zero))
	}
	for pos := lba; pos < hi; {
		it, ok := m.seek(pos)
		if !ok || it.lba >= hi {
			break
		}
		s, e := max(it.lba, pos), min(it.end(), hi)
		pos = e
		if it.zero() || it.addrAt(s) != oldAddr+(s-lba) {
			continue
		}
		m.Insert(Extent{LBA: s, Len: uint32(e - s), Addr: newAddr + (s - lba)}, nil)
		moved += e - s
	}
	return moved
}

// Lookup calls fn, in LBA order, with runs that cover [lba, lba+n) exactly:
// mapped, zeroed and unmapped (gap) runs, each clipped to the range. It stops
// early when fn returns false. It panics if lba+n overflows.
func (m *Map) Lookup(lba, n uint64, fn func(r Run) bool) {
	w := walker{pos: lba, hi: mustEnd(lba, n), fn: fn}
	if it, ok := m.before(lba); ok && !w.visit(it) {
		return
	}
	m.t.AscendRange(item{lba: lba}, item{lba: w.hi}, w.visit)
	if !w.stopped && w.pos < w.hi {
		fn(Run{LBA: w.pos, Len: w.hi - w.pos, Kind: Unmapped})
	}
}

// walker turns the items of a Lookup into runs with gaps filled in.
type walker struct {
	pos, hi uint64 // next sector to report, end of the range
	fn      func(Run) bool
	stopped bool
}

func (w *walker) visit(it item) bool {
	s, e := max(it.lba, w.pos), min(it.end(), w.hi)
	if s >= e {
		return true
	}
	if s > w.pos && !w.emit(Run{LBA: w.pos, Len: s - w.pos, Kind: Unmapped}) {
		return false
	}
	w.pos = e
	return w.emit(it.slice(s, e).run())
}

func (w *walker) emit(r Run) bool {
	w.stopped = !w.fn(r)
	return !w.stopped
}

// Ascend calls fn with every extent in LBA order until fn returns false.
func (m *Map) Ascend(fn func(e Extent) bool) {
	m.t.Ascend(func(it item) bool { return fn(it.extent()) })
}

// Len returns the number of extents.
func (m *Map) Len() int { return m.t.Len() }

// Sectors returns the number of sectors in data extents and in zero extents.
// It is O(1).
func (m *Map) Sectors() (data, zero uint64) { return m.data, m.zero }

// Clear removes every extent without reporting them.
func (m *Map) Clear() {
	m.t.Clear(false)
	m.data, m.zero = 0, 0
}

// cut unmaps [lo, hi), reporting each removed piece to dead.
func (m *Map) cut(lo, hi uint64, dead func(Extent)) {
	for lo < hi {
		it, ok := m.seek(lo)
		if !ok || it.lba >= hi {
			return
		}
		if it.lba < lo {
			m.set(it.slice(it.lba, lo))
		} else {
			m.delete(it)
		}
		if it.end() > hi {
			m.set(it.slice(hi, it.end()))
		}
		if dead != nil {
			dead(it.slice(max(it.lba, lo), min(it.end(), hi)).extent())
		}
	}
}

// merge joins it, whose range must be unmapped, with the neighbours it
// continues, deleting the right one. The caller stores the result.
func (m *Map) merge(it item) item {
	if l, ok := m.before(it.lba); ok && joinable(l, it) {
		it = makeItem(l.lba, l.len()+it.len(), l.addr())
	}
	if r, ok := m.t.Get(item{lba: it.end()}); ok && joinable(it, r) {
		m.delete(r)
		it = makeItem(it.lba, it.len()+r.len(), it.addr())
	}
	return it
}

// seek returns the first item that ends after pos: the one covering pos, or
// else the first one after it.
func (m *Map) seek(pos uint64) (item, bool) {
	if it, ok := m.before(pos); ok && it.end() > pos {
		return it, true
	}
	return m.atOrAfter(pos)
}

// before returns the last item starting before lba.
func (m *Map) before(lba uint64) (it item, ok bool) {
	if lba == 0 {
		return it, false
	}
	m.t.DescendLessOrEqual(item{lba: lba - 1}, func(x item) bool {
		it, ok = x, true
		return false
	})
	return it, ok
}

// atOrAfter returns the first item starting at or after lba.
func (m *Map) atOrAfter(lba uint64) (it item, ok bool) {
	m.t.AscendGreaterOrEqual(item{lba: lba}, func(x item) bool {
		it, ok = x, true
		return false
	})
	return it, ok
}

// set stores it, replacing any item with the same LBA, and keeps the sector
// counts.
func (m *Map) set(it item) {
	if old, ok := m.t.ReplaceOrInsert(it); ok {
		m.count(old, -1)
	}
	m.count(it, 1)
}

func (m *Map) delete(it item) {
	if old, ok := m.t.Delete(it); ok {
		m.count(old, -1)
	}
}

// count adds sign × it's length to the matching sector total.
func (m *Map) count(it item, sign int) {
	n := it.len()
	if sign < 0 {
		n = -n
	}
	if it.zero() {
		m.zero += n
	} else {
		m.data += n
	}
}
