package segment

import (
	"bytes"
	"errors"
	"testing"

	"cloudfs/segment/device"
)

func TestSmoke(t *testing.T) {
	dev := device.NewMem(256<<20, 4096)
	if _, err := Format(dev, FormatOptions{SegmentSize: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dev, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Create(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.Repeat([]byte("a"), 8192)
	if _, err := v.WriteAt(a, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if _, err := v.ReadAt(got, 4096); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("read = %v %q...", err, got[:8])
	}
	in, _ := v.Info()
	b, err := st.Branch(in.Version)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(bytes.Repeat([]byte("b"), 4096), 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAt(got, 4096); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("branch read = %v %q", err, got[:8])
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(dev, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Recovery(); r.Checkpoint == 0 {
		t.Errorf("Recovery() after a clean Close = %+v, want the closing checkpoint's generation", r)
	}
	v, _ = st.Volume(v.Base())
	if _, err := v.ReadAt(got, 4096); err != nil || got[0] != 'b' || got[4096] != 'a' {
		t.Fatalf("after reopen read = %v %q %q", err, got[:4], got[4096:4100])
	}
	b, _ = st.Volume(b.Base())
	if _, err := b.ReadAt(got, 4096); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("branch after reopen = %v", err)
	}
	// crash without checkpoint: write then crash-clone
	if _, err := v.WriteAt(bytes.Repeat([]byte("c"), 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed := dev.CrashClone(device.CrashCfg{UnsyncedPercent: 50})
	st2, err := Open(crashed, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := st2.Volume(v.Base())
	if _, err := v2.ReadAt(got[:4096], 0); err != nil || got[0] != 'c' {
		t.Fatalf("after crash = %v %q", err, got[:4])
	}
	st.Close()
	st2.Close()
}

// TestWriteAsyncAtPosition: the position a write reports is the volume's
// version right after it, for data and for zeroes, also when the write
// becomes several entries.
func TestWriteAsyncAtPosition(t *testing.T) {
	dev := device.NewMem(256<<20, 4096)
	if _, err := Format(dev, FormatOptions{SegmentSize: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dev, Options{NoBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, err := st.Create(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, submit func(done func(Position, error))) {
		ch := make(chan Position, 1)
		submit(func(p Position, err error) {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			ch <- p
		})
		p := <-ch
		in, _ := v.Info()
		if p.LSN != in.LSN || p.Version != in.Version {
			t.Errorf("%s: position = %d %v, want %d %v", name, p.LSN, p.Version, in.LSN, in.Version)
		}
	}
	big := bytes.Repeat([]byte("x"), (MaxEntrySectors+3)*SectorSize)
	check("write", func(d func(Position, error)) { v.WriteAsyncAt(big[:4096], 0, false, d) })
	check("multi-entry write", func(d func(Position, error)) { v.WriteAsyncAt(big, 1<<20, false, d) })
	check("zero", func(d func(Position, error)) { v.ZeroAsyncAt(0, 4096, true, d) })
	ch := make(chan error, 1)
	v.WriteAsyncAt(big[:100], 0, false, func(p Position, err error) {
		if p != (Position{}) {
			t.Errorf("failed write reports position %v", p)
		}
		ch <- err
	})
	if err := <-ch; !errors.Is(err, ErrOutOfRange) {
		t.Errorf("unaligned write: %v, want ErrOutOfRange", err)
	}
}
