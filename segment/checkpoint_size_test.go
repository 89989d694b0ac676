package segment

import (
	"math/rand/v2"
	"testing"

	"cloudfs/segment/device"
)

// TestCheckpointBodySize: the size the space reserve is computed from is
// the size of the body a checkpoint writes, exactly.
func TestCheckpointBodySize(t *testing.T) {
	dev := device.NewMem(128<<20, 4096)
	if _, err := Format(dev, FormatOptions{SegmentSize: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dev, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(when string) {
		st.mu.RLock()
		defer st.mu.RUnlock()
		if got, want := st.ckptBodySizeLocked(), int64(len(st.encodeCheckpointLocked(1, st.applied))); got != want {
			t.Errorf("%s: ckptBodySizeLocked = %d, the body is %d bytes", when, got, want)
		}
	}
	check("empty")
	for i := range 5 {
		v, err := st.Create(16 << 20)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			if _, err := v.WriteAt(make([]byte, 4096), int64(rng.IntN(4096))*4096); err != nil {
				t.Fatal(err)
			}
		}
		in, _ := v.Info()
		if i%2 == 0 {
			if _, err := st.Branch(in.Version); err != nil {
				t.Fatal(err)
			}
		}
		check("after a volume")
	}
}
