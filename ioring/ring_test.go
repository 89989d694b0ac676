package ioring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newRing(t *testing.T, p Params) *Ring {
	t.Helper()
	r, err := New(p)
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// reapN waits for and returns exactly n completions.
func reapN(t *testing.T, r *Ring, n int) []CQE {
	t.Helper()
	if _, err := r.SubmitAndWait(n); err != nil {
		t.Fatalf("SubmitAndWait(%d): %v", n, err)
	}
	got := make([]CQE, n+1)
	if k := r.Reap(got); k != n {
		t.Fatalf("Reap = %d completions, want %d", k, n)
	}
	return got[:n]
}

func TestParamsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		ok   bool
	}{
		{"zero", Params{}, false},
		{"one", Params{Entries: 1}, true},
		{"too many", Params{Entries: maxEntries + 1}, false},
		{"cq below sq", Params{Entries: 8, CQEntries: 4}, false},
		{"cq", Params{Entries: 8, CQEntries: 64, SQE128: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidParams)) {
				t.Fatalf("validate(%+v) = %v, want ok=%v", tc.p, err, tc.ok)
			}
		})
	}
}

func TestNop(t *testing.T) {
	for _, sqe128 := range []bool{false, true} {
		r := newRing(t, Params{Entries: 4, SQE128: sqe128})
		if r.SQEntries() != 4 || r.CQEntries() != 8 || r.SQE128() != sqe128 {
			t.Fatalf("ring sizes %d/%d sqe128=%v", r.SQEntries(), r.CQEntries(), r.SQE128())
		}
		if err := r.PrepareNop(42); err != nil {
			t.Fatal(err)
		}
		c := reapN(t, r, 1)[0]
		if c.UserData != 42 || c.Res != 0 || c.Err() != nil {
			t.Fatalf("nop completion %+v", c)
		}
	}
}

func TestReadWriteFsync(t *testing.T) {
	r := newRing(t, Params{Entries: 8})
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	want := bytes.Repeat([]byte("cloudfs!"), 1024)
	if err := r.PrepareWrite(fd, want, 4096, 1); err != nil {
		t.Fatal(err)
	}
	if c := reapN(t, r, 1)[0]; c.UserData != 1 || int(c.Res) != len(want) {
		t.Fatalf("write completion %+v, want res %d", c, len(want))
	}
	for i, datasync := range []bool{false, true} {
		if err := r.PrepareFsync(fd, datasync, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range reapN(t, r, 2) {
		if c.Res != 0 {
			t.Fatalf("fsync completion %+v", c)
		}
	}
	got := make([]byte, len(want)+100)
	if err := r.PrepareRead(fd, got, 4096, 2); err != nil {
		t.Fatal(err)
	}
	if c := reapN(t, r, 1)[0]; int(c.Res) != len(want) || !bytes.Equal(got[:c.Res], want) {
		t.Fatalf("read completion %+v, data equal %v", c, bytes.Equal(got[:len(want)], want))
	}
}

func TestBatch(t *testing.T) {
	const n = 32
	r := newRing(t, Params{Entries: n})
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = bytes.Repeat([]byte{byte(i)}, 512)
		if err := r.PrepareWrite(int(f.Fd()), bufs[i], int64(i)*512, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if r.Pending() != n || r.Free() != 0 {
		t.Fatalf("pending %d free %d before submit", r.Pending(), r.Free())
	}
	submitted, err := r.Submit() // one io_uring_enter for all of them
	if err != nil || submitted != n {
		t.Fatalf("Submit = %d, %v; want %d", submitted, err, n)
	}
	seen := map[uint64]bool{}
	cqes := make([]CQE, n)
	for len(seen) < n {
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		for _, c := range cqes[:r.Reap(cqes)] {
			if c.Res != 512 {
				t.Fatalf("completion %+v", c)
			}
			seen[c.UserData] = true
		}
	}
	all, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if !bytes.Equal(all[i*512:(i+1)*512], bufs[i]) {
			t.Fatalf("block %d differs", i)
		}
	}
}

func TestSQFull(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	for i := range 4 {
		if err := r.PrepareNop(uint64(i)); err != nil {
			t.Fatalf("PrepareNop %d: %v", i, err)
		}
	}
	if err := r.PrepareNop(4); !errors.Is(err, ErrSQFull) {
		t.Fatalf("PrepareNop on a full SQ = %v, want ErrSQFull", err)
	}
	reapN(t, r, 4)
	if r.Free() != 4 {
		t.Fatalf("free after submit = %d, want 4", r.Free())
	}
	if err := r.PrepareNop(5); err != nil {
		t.Fatalf("PrepareNop after submit: %v", err)
	}
	reapN(t, r, 1)
}

// The CQ holds twice the SQ; with NODROP, completions beyond it are kept by
// the kernel and delivered as the CQ drains.
func TestCQOverflowNotLost(t *testing.T) {
	r := newRing(t, Params{Entries: 4, CQEntries: 4})
	if r.Features()&IORING_FEAT_NODROP == 0 {
		t.Skip("kernel without IORING_FEAT_NODROP")
	}
	total := 0
	for range 3 {
		for i := range 4 {
			if err := r.PrepareNop(uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]CQE, 16)
	for total < 12 {
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		total += r.Reap(buf)
	}
	if total != 12 {
		t.Fatalf("reaped %d completions, want 12", total)
	}
}

func TestErrno(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	if err := r.PrepareRead(-1, make([]byte, 8), 0, 7); err != nil {
		t.Fatal(err)
	}
	c := reapN(t, r, 1)[0]
	if !errors.Is(c.Err(), syscall.EBADF) {
		t.Fatalf("read of fd -1: %+v, err %v, want EBADF", c, c.Err())
	}
	// A uring_cmd on a regular file is not supported by its driver.
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := r.PrepareUringCmd(int(f.Fd()), 1, []byte{1, 2, 3}, 8); err != nil {
		t.Fatal(err)
	}
	if c := reapN(t, r, 1)[0]; c.Err() == nil {
		t.Fatalf("uring_cmd on a regular file succeeded: %+v", c)
	}
	if err := r.PrepareUringCmd(int(f.Fd()), 1, make([]byte, CmdSize64+1), 9); !errors.Is(err, ErrCmdTooLong) {
		t.Fatalf("long payload on a 64-byte ring: %v", err)
	}
	if _, err := New(Params{Entries: 0}); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("New(0 entries) = %v", err)
	}
}

func TestUringCmdPayload(t *testing.T) {
	r := newRing(t, Params{Entries: 2, SQE128: true})
	cmd := make([]byte, CmdSize)
	for i := range cmd {
		cmd[i] = byte(i + 1)
	}
	if err := r.PrepareUringCmd(5, 0xdeadbeef, cmd, 3); err != nil {
		t.Fatal(err)
	}
	// Inspect the SQE in place before it is submitted.
	idx := (r.sqLocal - 1) & *r.sqMask
	raw := r.sqeMem[int(idx)*sqe128Size : int(idx+1)*sqe128Size]
	if raw[0] != IORING_OP_URING_CMD || raw[4] != 5 || raw[8] != 0xef || raw[11] != 0xde {
		t.Fatalf("sqe header % x", raw[:16])
	}
	if !bytes.Equal(raw[sqeCmdOffset:], cmd) {
		t.Fatalf("sqe cmd area % x, want % x", raw[sqeCmdOffset:], cmd)
	}
	if err := r.PrepareUringCmd(5, 1, make([]byte, CmdSize+1), 4); !errors.Is(err, ErrCmdTooLong) {
		t.Fatalf("payload over CmdSize: %v", err)
	}
}

func TestWaker(t *testing.T) {
	r := newRing(t, Params{Entries: 4})
	w, err := NewWaker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for round := range 3 {
		if err := r.PrepareWake(w, 99); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for range 3 { // several wakes coalesce into one completion
				if err := w.Wake(); err != nil {
					t.Error(err)
				}
			}
		})
		c := reapN(t, r, 1)[0]
		wg.Wait()
		if c.UserData != 99 || c.Res != 8 {
			t.Fatalf("round %d: wake completion %+v", round, c)
		}
	}
}

func TestWaitTimeout(t *testing.T) {
	r := newRing(t, Params{Entries: 2})
	if r.Features()&IORING_FEAT_EXT_ARG == 0 {
		t.Skip("kernel without IORING_FEAT_EXT_ARG")
	}
	if _, err := r.SubmitAndWaitTimeout(1, time.Millisecond); !errors.Is(err, unix.ETIME) {
		t.Fatalf("wait on an idle ring = %v, want ETIME", err)
	}
	if err := r.PrepareNop(1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SubmitAndWaitTimeout(1, time.Minute); err != nil {
		t.Fatalf("wait for a nop: %v", err)
	}
	if r.Ready() != 1 {
		t.Fatalf("ready = %d", r.Ready())
	}
}

func TestClosed(t *testing.T) {
	r, err := New(Params{Entries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.PrepareNop(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("PrepareNop after Close = %v", err)
	}
	if _, err := r.Submit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v", err)
	}
}
