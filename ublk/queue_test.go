package ublk

import (
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"testing"

	"cloudfs/ioring"
)

// recBackend records the calls it gets and completes them at once, with err.
type recBackend struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (b *recBackend) record(s string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, s)
	return b.err
}

func (b *recBackend) ReadAt(p []byte, off int64) (int, error) {
	if err := b.record("read"); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (b *recBackend) WriteAsync(_ []byte, _ int64, fua bool, done func(error)) {
	if fua {
		done(b.record("write fua"))
		return
	}
	done(b.record("write"))
}
func (b *recBackend) ZeroAsync(_, _ int64, _ bool, done func(error)) { done(b.record("zero")) }
func (b *recBackend) FlushAsync(done func(error))                    { done(b.record("flush")) }

// newTestQueue is a queue without a kernel device: its ring is real (so
// commits can be prepared) but never submitted, its descriptors and
// buffers are plain memory, and it copies no data (no USER_COPY).
func newTestQueue(t *testing.T, be Backend) *queue {
	const depth, maxIO = 4, 64 << 10
	d := &Device{size: 1 << 20, depth: depth, maxIO: maxIO, be: be, charFd: -1,
		log: slog.New(slog.DiscardHandler), m: newMetrics(nil)}
	q := newQueue(d, 0)
	q.descs, q.bufMem = make([]ioDesc, depth), make([]byte, depth*maxIO)
	var err error
	if q.ring, err = ioring.New(ioring.Params{Entries: depth + 1, SQE128: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.ring.Close() })
	for tag := range depth {
		if err := q.tags.fetch(tag); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

// The dispatch of each kind of request: which backend call it makes, and
// what result the commit carries. Bad requests fail alone.
func TestQueueDispatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      ioDesc
		beErr  error
		call   string
		result int32
	}{
		{"read", ioDesc{OpFlags: UBLK_IO_OP_READ, NrSectors: 8}, nil, "read", 4096},
		{"write", ioDesc{OpFlags: UBLK_IO_OP_WRITE, NrSectors: 128, StartSector: 8}, nil, "write", 64 << 10},
		{"write fua", ioDesc{OpFlags: UBLK_IO_OP_WRITE | UBLK_IO_F_FUA, NrSectors: 1}, nil, "write fua", 512},
		{"flush", ioDesc{OpFlags: UBLK_IO_OP_FLUSH}, nil, "flush", 0},
		{"discard larger than a buffer", ioDesc{OpFlags: UBLK_IO_OP_DISCARD, NrSectors: 2048}, nil, "zero", 0},
		{"write zeroes", ioDesc{OpFlags: UBLK_IO_OP_WRITE_ZEROES, NrSectors: 16}, nil, "zero", 0},
		{"unknown op", ioDesc{OpFlags: UBLK_IO_OP_WRITE_SAME, NrSectors: 8}, nil, "", -int32(syscall.EOPNOTSUPP)},
		{"out of range", ioDesc{OpFlags: UBLK_IO_OP_READ, NrSectors: 8, StartSector: 2047}, nil, "", -int32(syscall.EIO)},
		{"store full", ioDesc{OpFlags: UBLK_IO_OP_WRITE, NrSectors: 8}, errors.Join(errors.New("full"), syscall.ENOSPC),
			"write", -int32(syscall.ENOSPC)},
		{"store error on read", ioDesc{OpFlags: UBLK_IO_OP_READ, NrSectors: 8}, errors.New("corrupt"), "read", -int32(syscall.EIO)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &recBackend{err: tc.beErr}
			q := newTestQueue(t, be)
			const tag = 2
			q.descs[tag] = tc.d
			if serve, err := q.tags.arrived(tag, UBLK_IO_RES_OK); err != nil || !serve {
				t.Fatalf("arrived: %v, %v", serve, err)
			}
			q.start(tag)
			q.dev.readers.Wait()
			done := append(append([]completion(nil), q.posted...), q.local...)
			if len(done) != 1 || done[0].tag != tag {
				t.Fatalf("completions %+v, want one for tag %d", done, tag)
			}
			if got := q.reqs[tag].result(errnoOf(done[0].err, nil)); got != tc.result {
				t.Fatalf("result %d, want %d", got, tc.result)
			}
			if (tc.call == "" && len(be.calls) != 0) || (tc.call != "" && (len(be.calls) != 1 || be.calls[0] != tc.call)) {
				t.Fatalf("backend calls %q, want %q", be.calls, tc.call)
			}
			if err := q.commitAll(); err != nil {
				t.Fatal(err)
			}
			if q.tags.inService() != 0 || q.ring.Pending() != 1 || len(q.posted)+len(q.local) != 0 {
				t.Fatalf("after commit: in service %d, pending SQEs %d", q.tags.inService(), q.ring.Pending())
			}
		})
	}
}

// A backend that calls done twice does not corrupt the tag table.
func TestQueueDoubleDone(t *testing.T) {
	q := newTestQueue(t, &recBackend{})
	q.descs[0] = ioDesc{OpFlags: UBLK_IO_OP_FLUSH}
	if _, err := q.tags.arrived(0, UBLK_IO_RES_OK); err != nil {
		t.Fatal(err)
	}
	q.start(0)
	q.dones[0](nil) // the second call
	if err := q.commitAll(); err != nil {
		t.Fatal(err)
	}
	if q.ring.Pending() != 1 || q.tags.inService() != 0 {
		t.Fatalf("pending SQEs %d, in service %d; want one commit", q.ring.Pending(), q.tags.inService())
	}
}

// Results posted from many goroutines all reach the queue thread.
func TestQueuePostConcurrent(t *testing.T) {
	q := newTestQueue(t, &recBackend{})
	var wg sync.WaitGroup
	for tag := range q.depth {
		if _, err := q.tags.arrived(tag, UBLK_IO_RES_OK); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { q.post(tag, nil) })
	}
	wg.Wait()
	if err := q.commitAll(); err != nil {
		t.Fatal(err)
	}
	if q.ring.Pending() != q.depth || q.tags.inService() != 0 {
		t.Fatalf("pending SQEs %d, in service %d", q.ring.Pending(), q.tags.inService())
	}
}
