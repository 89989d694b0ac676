package segment

import (
	"bytes"
	"errors"
	"testing"

	"cloudfs/segment/device"
)

// TestDeleteThenBranchInOneBatch queues, in one group commit, the delete of
// the last volume reading through a snapshot and a branch of that snapshot.
// The branch must succeed or fail cleanly, and the log must replay.
func TestDeleteThenBranchInOneBatch(t *testing.T) {
	dev := device.NewMem(64<<20, 4096)
	if _, err := Format(dev, FormatOptions{SegmentSize: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dev, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := st.Create(8 << 20)
	data := bytes.Repeat([]byte{9}, 4096)
	if _, err := v.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	in, _ := v.Info()
	b, err := st.Branch(in.Version)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(v.Base()); err != nil {
		t.Fatal(err)
	}
	// A big write first keeps the writer busy, so the next two ops queue
	// and are collected into one batch.
	big := bytes.Repeat([]byte{1}, 4<<20)
	bigDone := make(chan error, 1)
	b.WriteAsync(big, 1<<20, false, func(err error) { bigDone <- err })
	del := &op{kind: opDelete, base: b.Base(), sync: true, recs: []*rec{{}}}
	br := &op{kind: opBranch, version: in.Version, sync: true, recs: []*rec{{h: Header{Base: RandomID()}}}}
	delDone, brDone := make(chan error, 1), make(chan error, 1)
	del.done = func(err error) { delDone <- err }
	br.done = func(err error) { brDone <- err }
	st.submit(del)
	st.submit(br)
	if err := <-bigDone; err != nil {
		t.Fatal(err)
	}
	if err := <-delDone; err != nil {
		t.Fatal(err)
	}
	if err := <-brDone; err != nil && !errors.Is(err, ErrVersionUnavailable) {
		t.Fatalf("branch: %v", err)
	} else if err == nil {
		nb, _ := st.Volume(br.recs[0].h.Base)
		got := make([]byte, 4096)
		if _, err := nb.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("branch reads %v %d", err, got[0])
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(dev); err != nil {
		t.Fatalf("%v: %v", err, rep.Problems)
	}
	st, err = Open(dev, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}
