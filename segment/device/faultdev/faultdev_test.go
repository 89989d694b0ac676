package faultdev_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"cloudfs/segment/device"
	"cloudfs/segment/device/faultdev"
)

const bs = 4096 // block size of the Mem under test

// newMem returns a 64-block Mem.
func newMem() *device.Mem { return device.NewMem(64*bs, bs) }

// block returns one aligned block filled with b.
func block(b byte) []byte {
	return bytes.Repeat([]byte{b}, bs)
}

// callAll makes calls of each op in turn, rounds times, and returns which
// calls failed with ErrInjected, as "op#n" strings.
func callAll(t *testing.T, d *faultdev.Dev, rounds int) []string {
	t.Helper()
	var failed []string
	note := func(op faultdev.Op, n int, err error) {
		switch {
		case errors.Is(err, faultdev.ErrInjected):
			failed = append(failed, fmt.Sprintf("%v#%d", op, n))
		case err != nil:
			t.Fatalf("%v #%d: unexpected error %v", op, n, err)
		}
	}
	buf := device.AlignedBuf(bs)
	for i := 1; i <= rounds; i++ {
		_, err := d.ReadAt(buf, 0)
		note(faultdev.OpRead, i, err)
		_, err = d.WriteAt(buf, 0)
		note(faultdev.OpWrite, i, err)
		note(faultdev.OpSync, i, d.Sync())
	}
	return failed
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults []faultdev.Fault
		want   []string
	}{
		{"none", nil, nil},
		{"Nth read", []faultdev.Fault{faultdev.Nth(faultdev.OpRead, 2)}, []string{"read#2"}},
		{"Nth write", []faultdev.Fault{faultdev.Nth(faultdev.OpWrite, 1)}, []string{"write#1"}},
		{"Nth sync", []faultdev.Fault{faultdev.Nth(faultdev.OpSync, 3)}, []string{"sync#3"}},
		{"From sync", []faultdev.Fault{faultdev.From(faultdev.OpSync, 3)}, []string{"sync#3", "sync#4"}},
		{"two faults", []faultdev.Fault{faultdev.Nth(faultdev.OpRead, 4), faultdev.Nth(faultdev.OpWrite, 2)},
			[]string{"write#2", "read#4"}},
		{"Nth beyond calls", []faultdev.Fault{faultdev.Nth(faultdev.OpRead, 5)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := faultdev.Wrap(newMem(), tc.faults...)
			got := callAll(t, d, 4 /* rounds */)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("failed calls = %v, want %v", got, tc.want)
			}
			if r, w, s := d.Counts(); r != 4 || w != 4 || s != 4 {
				t.Errorf("Counts() = %d, %d, %d, want 4, 4, 4", r, w, s)
			}
		})
	}
}

// TestFailedWriteWritesNothing checks that an injected write failure does
// not reach the device.
func TestFailedWriteWritesNothing(t *testing.T) {
	m := newMem()
	d := faultdev.Wrap(m, faultdev.Nth(faultdev.OpWrite, 1))
	if n, err := d.WriteAt(block('x'), 0); n != 0 || !errors.Is(err, faultdev.ErrInjected) {
		t.Fatalf("WriteAt = %d, %v, want 0, ErrInjected", n, err)
	}
	buf := device.AlignedBuf(bs)
	if _, err := m.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, make([]byte, bs)) {
		t.Errorf("failed write reached the device")
	}
}

func TestDisarm(t *testing.T) {
	d := faultdev.Wrap(newMem(), faultdev.From(faultdev.OpSync, 1))
	if err := d.Sync(); !errors.Is(err, faultdev.ErrInjected) {
		t.Fatalf("Sync() = %v, want ErrInjected", err)
	}
	d.Disarm()
	if err := d.Sync(); err != nil {
		t.Errorf("Sync() after Disarm = %v, want nil", err)
	}
	if _, _, s := d.Counts(); s != 2 {
		t.Errorf("syncs counted = %d, want 2", s)
	}
}

func TestTorn(t *testing.T) {
	tests := []struct {
		name        string
		keepSectors int
		wantBytes   int
	}{
		{"nothing", 0, 0},
		{"three sectors", 3, 3 * 512},
		{"one block", 8, bs},
		{"block and a sector", 9, bs + 512},
		{"whole write", 16, 2 * bs},
		{"more than the write", 100, 2 * bs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := tornWrite(t, faultdev.Torn(2, tc.keepSectors))
			if n != tc.wantBytes || !errors.Is(err, faultdev.ErrInjected) {
				t.Errorf("torn WriteAt = %d, %v, want %d, ErrInjected", n, err, tc.wantBytes)
			}
			want := append(bytes.Repeat([]byte{'n'}, tc.wantBytes), bytes.Repeat([]byte{'o'}, 2*bs-tc.wantBytes)...)
			if !bytes.Equal(got, want) {
				t.Errorf("after torn write: %d new bytes then old, want %d", bytes.IndexByte(append(got, 'o'), 'o'), tc.wantBytes)
			}
		})
	}
}

// TestTornRandom checks that Torn(n, -1) keeps a strict, reproducible
// sector prefix.
func TestTornRandom(t *testing.T) {
	_, n1, _ := tornWrite(t, faultdev.Torn(2, -1))
	got, n2, err := tornWrite(t, faultdev.Torn(2, -1))
	if n1 != n2 {
		t.Errorf("Torn(2, -1) kept %d then %d bytes, want equal", n1, n2)
	}
	if n2%512 != 0 || n2 >= 2*bs || !errors.Is(err, faultdev.ErrInjected) {
		t.Errorf("Torn(2, -1): WriteAt = %d, %v, want a sector multiple below %d, ErrInjected", n2, err, 2*bs)
	}
	if !bytes.Equal(got[:n2], bytes.Repeat([]byte{'n'}, n2)) || !bytes.Equal(got[n2:], bytes.Repeat([]byte{'o'}, 2*bs-n2)) {
		t.Errorf("Torn(2, -1): contents are not %d new bytes then old", n2)
	}
}

// tornWrite writes two blocks of 'o' (call 1) and then two of 'n' (call 2)
// through a Dev with fault f, and returns what the device holds and what
// the second WriteAt returned.
func tornWrite(t *testing.T, f faultdev.Fault) ([]byte, int, error) {
	t.Helper()
	m := newMem()
	d := faultdev.Wrap(m, f)
	old := bytes.Repeat([]byte{'o'}, 2*bs)
	if _, err := d.WriteAt(old, bs); err != nil {
		t.Fatal(err)
	}
	n, err := d.WriteAt(bytes.Repeat([]byte{'n'}, 2*bs), bs)
	got := make([]byte, 2*bs)
	if _, err := m.ReadAt(got, bs); err != nil {
		t.Fatal(err)
	}
	return got, n, err
}

// TestTornInvalid checks that a torn write that is invalid fails as the
// device would, and writes nothing.
func TestTornInvalid(t *testing.T) {
	m := newMem()
	d := faultdev.Wrap(m, faultdev.Torn(1, 3))
	if _, err := d.WriteAt(make([]byte, 2*bs), m.Size()-bs); !errors.Is(err, device.ErrOutOfRange) {
		t.Errorf("torn out-of-range WriteAt = %v, want ErrOutOfRange", err)
	}
	got := make([]byte, bs)
	if _, err := m.ReadAt(got, m.Size()-bs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, bs)) {
		t.Errorf("torn out-of-range write landed data")
	}
}

// TestLatency checks, in a synctest bubble with its fake clock, that each
// call sleeps for the next duration the seeded generator yields.
func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxDelay = 10 * time.Millisecond
		d := faultdev.Wrap(newMem(), faultdev.Latency(rand.New(rand.NewPCG(5, 6)), maxDelay))
		want := rand.New(rand.NewPCG(5, 6))
		buf := device.AlignedBuf(bs)
		ops := []func() error{
			func() error { _, err := d.ReadAt(buf, 0); return err },
			func() error { _, err := d.WriteAt(buf, 0); return err },
			d.Sync,
		}
		for i := range 30 {
			start := time.Now()
			if err := ops[i%len(ops)](); err != nil {
				t.Fatal(err)
			}
			got, wantD := time.Since(start), time.Duration(want.Int64N(int64(maxDelay)+1))
			if got != wantD {
				t.Errorf("call %d took %v, want %v", i, got, wantD)
			}
		}
	})
}

// TestConcurrent checks that counting stays exact under concurrent use.
func TestConcurrent(t *testing.T) {
	const goroutines, writes = 8, 20
	d := faultdev.Wrap(newMem(), faultdev.From(faultdev.OpWrite, 50))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	for g := range goroutines {
		wg.Go(func() {
			buf := device.AlignedBuf(bs)
			for range writes {
				if _, err := d.WriteAt(buf, int64(g)*bs); errors.Is(err, faultdev.ErrInjected) {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if want := goroutines*writes - 49; failed != want {
		t.Errorf("%d writes failed, want %d", failed, want)
	}
}

// TestDiscard checks that Discard reaches a Mem and is a no-op on a device
// without discard support.
func TestDiscard(t *testing.T) {
	m := newMem()
	if _, err := m.WriteAt(block('x'), 0); err != nil {
		t.Fatal(err)
	}
	if err := faultdev.Wrap(m).Discard(0, bs); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, bs)
	if _, err := m.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, bs)) {
		t.Errorf("Discard did not reach the Mem")
	}
	if err := faultdev.Wrap(noDiscard{m}).Discard(0, bs); err != nil {
		t.Errorf("Discard on a device without Discard = %v, want nil", err)
	}
}

// noDiscard hides a device's Discard method.
type noDiscard struct{ device.Device }

func TestOpString(t *testing.T) {
	tests := []struct {
		op   faultdev.Op
		want string
	}{
		{faultdev.OpRead, "read"},
		{faultdev.OpWrite, "write"},
		{faultdev.OpSync, "sync"},
		{faultdev.Op(9), "Op(9)"},
	}
	for _, tc := range tests {
		if got := tc.op.String(); got != tc.want {
			t.Errorf("Op(%d).String() = %q, want %q", int(tc.op), got, tc.want)
		}
	}
}
