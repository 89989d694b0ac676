package segment

import (
	"math/rand/v2"
	"testing"
)

// TestRuns checks runs against a map of lsn -> segment under random adds.
func TestRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		var r runs
		model := map[uint64]uint32{}
		for op := 0; op < 50; op++ {
			first := uint64(rng.IntN(60) + 1)
			if rng.IntN(2) == 0 && len(r) > 0 { // mostly appends, like the writer
				first = r[len(r)-1].last + 1
			}
			last := first + uint64(rng.IntN(5))
			seg := uint32(rng.IntN(3))
			r.add(first, last, seg)
			for l := first; l <= last; l++ {
				model[l] = seg
			}
			for i := 1; i < len(r); i++ {
				if r[i-1].last >= r[i].first || r[i].first > r[i].last {
					t.Fatalf("runs out of order: %v", r)
				}
			}
			for l := uint64(1); l < 70; l++ {
				i := r.find(l)
				want, ok := model[l]
				if (i >= 0) != ok || ok && r[i].seg != want {
					t.Fatalf("find(%d) = %d in %v, want segment %d (present %v)", l, i, r, want, ok)
				}
			}
		}
	}
}
