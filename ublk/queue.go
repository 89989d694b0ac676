package ublk

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"cloudfs/ioring"

	"golang.org/x/sys/unix"
)

// wakeData is the user_data of the Waker's read; a tag's commands carry the
// tag itself.
const wakeData = ^uint64(0)

// A completion is the end of one request, posted by whoever finished it.
type completion struct {
	tag int
	err error // nil, a syscall.Errno, or the backend's error (see errnoOf)
}

// A queue serves one hardware queue of a device on one locked OS thread,
// which owns the queue's ring and tag table: it issues FETCH_REQ for every
// tag, hands each request that arrives to the backend, and commits the
// results that come back with COMMIT_AND_FETCH_REQ, a batch per
// io_uring_enter. Backend goroutines hand results back through post, which
// wakes the thread through an eventfd read armed on the ring.
type queue struct {
	dev   *Device
	id    int
	depth int
	log   *slog.Logger

	// Owned by the queue thread.
	ring    *ioring.Ring
	descMem []byte        // the kernel's ublksrv_io_desc array, read only
	descs   []ioDesc      // descMem as descriptors
	bufMem  []byte        // depth buffers of dev.maxIO bytes, one per tag
	tags    *tagTable     // where each tag stands in the protocol
	reqs    []request     // the request each serving tag holds
	starts  []time.Time   // when each serving tag's request arrived
	dones   []func(error) // per tag: posts the backend's result
	cqes    []ioring.CQE  // reaped completions, reused
	local   []completion  // finished on the queue thread itself

	mu     sync.Mutex // guards the fields below, and Wake against Close of the waker
	waker  *ioring.Waker
	posted []completion // results from backend goroutines, not yet committed
	spare  []completion // the other half of the double buffer (queue thread only)
	kicked bool         // a wake is pending: no need for another
	closed bool         // the waker is closed; late posts are dropped

	quit  atomic.Bool // stop once no tag is serving (Detach, failed start)
	force atomic.Bool // stop now, even with tags serving (teardown timed out)
	err   error       // why serve stopped early; read after done is closed
	done  chan struct{}
}

func newQueue(d *Device, id int) *queue {
	q := &queue{dev: d, id: id, depth: d.depth, log: d.log.With("queue_id", id),
		tags: newTagTable(d.depth), reqs: make([]request, d.depth), starts: make([]time.Time, d.depth),
		dones: make([]func(error), d.depth), done: make(chan struct{})}
	for tag := range q.dones {
		q.dones[tag] = func(err error) { q.post(tag, err) }
	}
	return q
}

// run is the queue's goroutine. It reports on ready once every tag has its
// FETCH_REQ in the kernel (START_DEV and END_USER_RECOVERY wait for that),
// then serves until the tags die or it is told to quit.
func (q *queue) run(ready chan<- error) {
	defer close(q.done)
	// The kernel binds a queue to the thread that issued its FETCH_REQs and
	// rejects commands from any other (NOTES §4.2). The thread is never
	// unlocked: it ends with the goroutine.
	runtime.LockOSThread()
	if err := q.setup(); err != nil {
		q.release()
		ready <- fmt.Errorf("queue %d: %w", q.id, err)
		return
	}
	ready <- nil
	q.err = q.serve() // reported by Device.Err
	q.release()
}

// setup maps the descriptors and buffers, creates the ring and the waker,
// and submits FETCH_REQ for every tag.
func (q *queue) setup() error {
	d := q.dev
	var err error
	if q.descMem, err = unix.Mmap(d.charFd, descOffset(q.id), descLen(q.depth), unix.PROT_READ,
		unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fmt.Errorf("mmap io descriptors: %w", err)
	}
	q.descs = unsafe.Slice((*ioDesc)(unsafe.Pointer(&q.descMem[0])), q.depth)
	// Untouched pages cost nothing: a tag's buffer fills only as far as its
	// largest request.
	if q.bufMem, err = unix.Mmap(-1, 0, q.depth*d.maxIO, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE); err != nil {
		return fmt.Errorf("mmap buffers: %w", err)
	}
	// One SQE per tag (each tag has one command in flight at most) plus
	// the waker's read; the CQ is twice that, so it never overflows.
	if q.ring, err = ioring.New(ioring.Params{Entries: q.depth + 1, SQE128: true}); err != nil {
		return err
	}
	q.cqes = make([]ioring.CQE, q.ring.CQEntries())
	if q.waker, err = ioring.NewWaker(); err != nil {
		return err
	}
	for tag := range q.depth {
		if err := q.tags.fetch(tag); err != nil {
			return err
		}
		if err := q.prepare(UBLK_U_IO_FETCH_REQ, tag, 0); err != nil {
			return err
		}
	}
	if err := q.ring.PrepareWake(q.waker, wakeData); err != nil {
		return err
	}
	_, err = q.ring.Submit()
	return err
}

// prepare queues a FETCH_REQ or COMMIT_AND_FETCH_REQ for tag.
func (q *queue) prepare(op uint32, tag int, result int32) error {
	cmd := ioCmd{QID: uint16(q.id), Tag: uint16(tag), Result: result}
	if !q.dev.userCopy { // the kernel copies to and from the tag's buffer; with USER_COPY addr must be 0
		cmd.Addr = uint64(uintptr(unsafe.Pointer(&q.bufMem[tag*q.dev.maxIO])))
	}
	return q.ring.PrepareUringCmd(q.dev.charFd, op, asBytes(&cmd), uint64(tag))
}

// serve is the queue's loop: one io_uring_enter submits every commit
// prepared since the last and waits for the next completion.
func (q *queue) serve() error {
	for {
		if q.finished() {
			_, err := q.ring.Submit() // the last commits
			return err
		}
		if _, err := q.ring.SubmitAndWait(1); err != nil {
			return fmt.Errorf("%w: queue %d: %w", ErrQueue, q.id, err)
		}
		for _, c := range q.cqes[:q.ring.Reap(q.cqes)] {
			if err := q.handle(c); err != nil {
				return fmt.Errorf("%w: queue %d: %w", ErrQueue, q.id, err)
			}
		}
		if err := q.commitAll(); err != nil {
			return fmt.Errorf("%w: queue %d: %w", ErrQueue, q.id, err)
		}
	}
}

// finished tells whether the queue has nothing more to do: every tag is
// dead, or it was told to quit and no request is with the backend.
func (q *queue) finished() bool {
	return q.force.Load() || q.tags.inService() == 0 && (q.tags.allDead() || q.quit.Load())
}

// handle processes one completion of the ring.
func (q *queue) handle(c ioring.CQE) error {
	if c.UserData == wakeData {
		if c.Res < 0 {
			return fmt.Errorf("waker read: %w", c.Err())
		}
		q.mu.Lock()
		q.kicked = false
		q.mu.Unlock()
		return q.ring.PrepareWake(q.waker, wakeData)
	}
	tag := int(c.UserData)
	serve, err := q.tags.arrived(tag, c.Res)
	switch {
	case err != nil:
		q.log.Warn("unexpected completion", "tag", tag, "res", c.Res, "err", err)
	case serve:
		q.start(tag)
	case c.Res != UBLK_IO_RES_ABORT:
		q.log.Warn("tag stopped by the kernel", "tag", tag, "err", c.Err())
	}
	return nil
}

// start hands the request that arrived for tag to the backend, or fails it
// at once if it is malformed.
func (q *queue) start(tag int) {
	req, en := decodeRequest(q.descs[tag], q.dev.size, q.dev.maxIO)
	q.reqs[tag], q.starts[tag] = req, time.Now()
	q.dev.m.requests[opIndex(req.op)].Inc()
	if en != 0 {
		q.log.Debug("request refused", "tag", tag, "op", req.op, "err", en)
		q.local = append(q.local, completion{tag, en})
		return
	}
	be := q.dev.be
	switch req.op {
	case UBLK_IO_OP_READ:
		q.dev.readers.Add(1)
		go q.read(tag, q.buf(tag, req.n), req.off)
	case UBLK_IO_OP_WRITE:
		buf := q.buf(tag, req.n)
		if err := q.copyIn(tag, buf); err != nil {
			q.local = append(q.local, completion{tag, err})
			return
		}
		be.WriteAsync(buf, req.off, req.fua, q.dones[tag])
	case UBLK_IO_OP_FLUSH:
		be.FlushAsync(q.dones[tag])
	default: // DISCARD, WRITE_ZEROES
		be.ZeroAsync(req.off, req.n, req.fua, q.dones[tag])
	}
}

// buf is tag's buffer, n bytes long (decodeRequest checked n <= maxIO).
func (q *queue) buf(tag int, n int64) []byte {
	base := tag * q.dev.maxIO
	return q.bufMem[base : base+int(n) : base+q.dev.maxIO]
}

// copyIn fetches a write's data with USER_COPY (pread on /dev/ublkcN at
// the tag's offset); without it the kernel has copied it already.
func (q *queue) copyIn(tag int, buf []byte) error {
	if !q.dev.userCopy {
		return nil
	}
	n, err := unix.Pread(q.dev.charFd, buf, ioBufOffset(q.id, tag))
	if err == nil && n != len(buf) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		q.log.Warn("user copy of write data", "tag", tag, "err", err)
		return syscall.EIO
	}
	return nil
}

// read serves a READ on a goroutine of its own (ReadAt may block): the
// backend fills buf, which goes to the kernel with USER_COPY (pwrite on
// /dev/ublkcN, allowed from any thread) or by the kernel's copy at commit.
func (q *queue) read(tag int, buf []byte, off int64) {
	defer q.dev.readers.Done()
	n, err := q.dev.be.ReadAt(buf, off)
	if n == len(buf) && errors.Is(err, io.EOF) {
		err = nil // io.ReaderAt may report EOF with a full read at the end
	}
	if err == nil && n != len(buf) {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && q.dev.userCopy {
		var w int
		w, err = unix.Pwrite(q.dev.charFd, buf, ioBufOffset(q.id, tag))
		if err == nil && w != len(buf) {
			err = io.ErrShortWrite
		}
		if err != nil {
			q.log.Warn("user copy of read data", "tag", tag, "err", err)
			err = syscall.EIO
		}
	}
	q.post(tag, err)
}

// post hands a result back to the queue thread from any goroutine and
// wakes it, unless a wake is already pending. It never blocks for long.
func (q *queue) post(tag int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return // the queue was forced down; nothing can be committed any more
	}
	q.posted = append(q.posted, completion{tag, err})
	q.wakeLocked()
}

// kick wakes the queue thread so that it looks at quit and force.
func (q *queue) kick() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.wakeLocked()
	}
}

func (q *queue) wakeLocked() {
	if q.kicked || q.waker == nil {
		return
	}
	q.kicked = true
	if err := q.waker.Wake(); err != nil {
		q.log.Error("queue wake-up", "err", err)
	}
}

// commitAll prepares COMMIT_AND_FETCH_REQ for every result posted since
// the last call; the next io_uring_enter submits them together.
func (q *queue) commitAll() error {
	q.mu.Lock()
	batch := q.posted
	q.posted = q.spare[:0]
	q.mu.Unlock()
	n := len(batch) + len(q.local)
	for _, c := range append(batch, q.local...) {
		if err := q.commit(c); err != nil {
			return err
		}
	}
	clear(batch)
	q.spare, q.local = batch[:0], q.local[:0]
	if n > 0 {
		q.dev.m.batches.Inc()
	}
	return nil
}

// commit prepares the commit of one result.
func (q *queue) commit(c completion) error {
	if err := q.tags.commit(c.tag); err != nil {
		// A backend that called done twice: the second result has no request.
		q.log.Error("result for a tag without a request", "tag", c.tag, "err", err)
		return nil
	}
	req, en := q.reqs[c.tag], errnoOf(c.err, q.dev.errno)
	op := opIndex(req.op)
	m := q.dev.m
	m.commits.Inc()
	m.duration[op].Observe(time.Since(q.starts[c.tag]).Seconds())
	if en != 0 {
		m.failures[op].Inc()
		q.log.Debug("request failed", "tag", c.tag, "op", opNames[op], "offset", req.off, "bytes", req.n, "err", c.err)
	} else {
		m.bytes[op].Add(float64(req.n))
	}
	return q.prepare(UBLK_U_IO_COMMIT_AND_FETCH_REQ, c.tag, req.result(en))
}

// release closes the ring (the kernel cancels what is still fetching) and
// frees the queue's memory. Buffers that a backend may still write are
// left mapped.
func (q *queue) release() {
	if q.ring != nil {
		q.ring.Close()
	}
	q.mu.Lock()
	q.closed = true
	if q.waker != nil {
		q.waker.Close()
	}
	q.mu.Unlock()
	if q.descMem != nil {
		_ = unix.Munmap(q.descMem)
	}
	if q.bufMem != nil && q.tags.inService() == 0 {
		_ = unix.Munmap(q.bufMem)
	} else if q.bufMem != nil {
		q.log.Warn("buffers left mapped: the backend still holds requests", "requests", q.tags.inService())
	}
}
