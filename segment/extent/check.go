package extent

import "fmt"

// check verifies the whole map: every extent valid, extents sorted and
// non-overlapping, and the sector totals equal to their sum. Adjacent
// mergeable extents are allowed. It is O(n); tests call it.
func (m *Map) check() error {
	var prevEnd, data, zero uint64
	var n int
	var err error
	m.t.Ascend(func(it item) bool {
		if err = validate(it, prevEnd); err != nil {
			return false
		}
		prevEnd, n = it.end(), n+1
		if it.zero() {
			zero += it.len()
		} else {
			data += it.len()
		}
		return true
	})
	switch {
	case err != nil:
		return fmt.Errorf("extent map check: extent %d: %w", n, err)
	case n != m.t.Len():
		return fmt.Errorf("extent map check: %d extents, Len %d", n, m.t.Len())
	case data != m.data || zero != m.zero:
		return fmt.Errorf("extent map check: sectors %d/%d, counted %d/%d", data, zero, m.data, m.zero)
	}
	return nil
}

// checkNear panics if the extents around [lo, hi) are invalid, out of order
// or overlapping. It runs after each mutation when built with -tags
// invariants, and costs O(log n + extents in the range).
func (m *Map) checkNear(lo, hi uint64) {
	if !invariants {
		return
	}
	start, prevEnd := lo, uint64(0)
	if it, ok := m.before(lo); ok {
		start = it.lba
	}
	m.t.AscendGreaterOrEqual(item{lba: start}, func(it item) bool {
		if err := validate(it, prevEnd); err != nil {
			panic(fmt.Sprintf("extent: invariant broken near [%d, %d): %v", lo, hi, err))
		}
		prevEnd = it.end()
		return it.lba <= hi
	})
}
