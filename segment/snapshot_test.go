package segment_test

import (
	"bytes"
	"sync"
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/segtest"
)

// TestBranchOfReleasedSnapshot deletes the last volume that reads through a
// snapshot while a branch of that snapshot is queued behind it in the same
// group commit. The branch must either succeed (and read the snapshot's data)
// or fail with ErrVersionUnavailable; the store must stay consistent and
// recover.
func TestBranchOfReleasedSnapshot(t *testing.T) {
	dev, st := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	v, err := st.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{9}, 4096)
	if _, err := v.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	in, _ := v.Info()
	b, err := st.Branch(in.Version) // freezes v's map as snapshot in.Version
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(v.Base()); err != nil { // b still references the snapshot
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		var wg sync.WaitGroup
		var nb *segment.Volume
		var berr error
		wg.Add(2)
		go func() { defer wg.Done(); _ = st.Delete(b.Base()) }()
		go func() { defer wg.Done(); nb, berr = st.Branch(in.Version) }()
		wg.Wait()
		if berr != nil {
			break // the snapshot went first: fine
		}
		got := make([]byte, 4096)
		if _, err := nb.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("branch of the snapshot reads %v %d", err, got[0])
		}
		b = nb
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	segtest.MustCheck(t, dev)
	st2 := segtest.Open(t, dev, segment.Options{NoBackground: true})
	_ = st2
}
