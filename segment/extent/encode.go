package extent

import (
	"encoding/binary"
	"fmt"
	"slices"
)

const (
	headerSize = 8  // count u64
	itemSize   = 16 // LBA u64, packed u64
)

// AppendBinary appends the checkpoint encoding of m (see the package doc) to
// b and returns the extended slice.
func (m *Map) AppendBinary(b []byte) []byte {
	b = slices.Grow(b, headerSize+itemSize*m.t.Len())
	b = binary.LittleEndian.AppendUint64(b, uint64(m.t.Len()))
	m.t.Ascend(func(it item) bool {
		b = binary.LittleEndian.AppendUint64(b, it.lba)
		b = binary.LittleEndian.AppendUint64(b, it.v)
		return true
	})
	return b
}

// Decode reads one map encoded by [Map.AppendBinary] from the front of b and
// returns it with the bytes that follow it. The map does not retain b. It
// does not merge adjacent extents, so re-encoding yields the same bytes.
//
// On invalid input it returns a nil map, nil rest and an error wrapping
// [ErrCorrupt].
func Decode(b []byte) (*Map, []byte, error) {
	if len(b) < headerSize {
		return nil, nil, fmt.Errorf("extent map: header of %d bytes: truncated: %w", len(b), ErrCorrupt)
	}
	count := binary.LittleEndian.Uint64(b)
	body := b[headerSize:]
	if room := uint64(len(body) / itemSize); count > room {
		return nil, nil, fmt.Errorf("extent map: count %d exceeds the %d extents in %d bytes: %w", count, room, len(b), ErrCorrupt)
	}
	body = body[:count*itemSize]
	m := New()
	if err := m.load(body); err != nil {
		return nil, nil, err
	}
	return m, b[headerSize+len(body):], nil
}

// load validates the encoded items in body and inserts them in two ascending
// passes. Inserting in plain ascending order leaves every node of a
// google/btree half full, because a full node splits at its middle and only
// the right half receives later keys. So the first pass inserts, from each
// group of 2*degree keys, the first degree-1 and the last: that builds leaves
// of degree-1 items separated by the last key of each group. The second pass
// then fills each leaf with the degree keys missing from its group, to the
// 2*degree-1 items a node holds before it splits.
func (m *Map) load(body []byte) error {
	var prevEnd uint64
	for i := 0; i < len(body)/itemSize; i++ {
		it := itemAt(body, i)
		if err := validate(it, prevEnd); err != nil {
			return fmt.Errorf("extent map: extent %d at offset %d: %w", i, headerSize+i*itemSize, err)
		}
		prevEnd = it.end()
		if m.firstPass(i) {
			m.set(it)
		}
	}
	for i := 0; i < len(body)/itemSize; i++ {
		if !m.firstPass(i) {
			m.set(itemAt(body, i))
		}
	}
	return nil
}

// firstPass reports whether load inserts the i'th item in its first pass.
func (m *Map) firstPass(i int) bool {
	r := i % (2 * m.degree)
	return r < m.degree-1 || r == 2*m.degree-1
}

func itemAt(body []byte, i int) item {
	p := body[i*itemSize:]
	return item{lba: binary.LittleEndian.Uint64(p), v: binary.LittleEndian.Uint64(p[8:])}
}
