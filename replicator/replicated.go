package replicator

import (
	"fmt"

	"cloudfs/segment"
)

// Replicated is a volume as its primary's block device and block API write
// to it: each write goes to the local log, then waits for the replicas the
// volume's mode requires (Acks.Await) before it is acknowledged. A flush
// makes the local log durable and waits the same way for every write
// before it (replicas acknowledge only what they logged durably). Reads
// are the local volume's. With a nil Acks it is the local volume alone.
type Replicated struct {
	*segment.Volume
	acks *Acks
}

// Volume wraps v for writing through this host's replication.
func (a *Acks) Volume(v *segment.Volume) *Replicated { return &Replicated{Volume: v, acks: a} }

// WriteAsync writes p at off; done is called once the write is acknowledged
// by the mode's rules, or fails. done must not block.
func (r *Replicated) WriteAsync(p []byte, off int64, fua bool, done func(error)) {
	if r.held(func() { r.WriteAsync(p, off, fua, done) }, done) {
		return
	}
	n := int64(len(p))
	r.WriteAsyncAt(p, off, fua, func(pos segment.Position, err error) { r.await(pos, n, err, done) })
}

// ZeroAsync zeroes n bytes at off, acknowledged as WriteAsync.
func (r *Replicated) ZeroAsync(off, n int64, fua bool, done func(error)) {
	if r.held(func() { r.ZeroAsync(off, n, fua, done) }, done) {
		return
	}
	r.ZeroAsyncAt(off, n, fua, func(pos segment.Position, err error) { r.await(pos, 0, err, done) })
}

// held reports whether the volume is held for a hand-over; if so, a
// goroutine waits for the end of the hold and then runs again (the volume
// still primary here) or fails with ErrNotPrimary (handed over: the caller
// sends it to the new primary). Otherwise the write is counted in flight
// until await.
func (r *Replicated) held(again func(), done func(error)) bool {
	ch := r.acks.enter(r.Base())
	if ch == nil {
		return false
	}
	go func() {
		<-ch
		if !r.acks.Primary(r.Base()) {
			done(fmt.Errorf("volume %v was handed over: %w", r.Base(), ErrNotPrimary))
			return
		}
		again()
	}()
	return true
}

func (r *Replicated) await(pos segment.Position, n int64, err error, done func(error)) {
	if err != nil {
		r.acks.leave(r.Base())
		done(err)
		return
	}
	r.acks.await(r.Base(), pos.LSN, n, func(err error) {
		r.acks.leave(r.Base())
		done(err)
	})
}

// FlushAsync makes every write acknowledged before it durable here and on
// the replicas the mode waits for.
func (r *Replicated) FlushAsync(done func(error)) {
	if r.held(func() { r.FlushAsync(done) }, done) {
		return
	}
	done = func(done func(error)) func(error) {
		return func(err error) { r.acks.leave(r.Base()); done(err) }
	}(done)
	in, err := r.Info()
	if err != nil {
		done(err)
		return
	}
	r.Volume.FlushAsync(func(err error) {
		if err != nil {
			done(err)
			return
		}
		r.acks.Await(r.Base(), in.LSN, done)
	})
}

// WriteAt writes p at off and waits for its acknowledgement.
func (r *Replicated) WriteAt(p []byte, off int64) (int, error) {
	if err := wait(func(d func(error)) { r.WriteAsync(p, off, false, d) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteZeroes zeroes n bytes at off and waits.
func (r *Replicated) WriteZeroes(off, n int64) error {
	return wait(func(d func(error)) { r.ZeroAsync(off, n, false, d) })
}

// Flush waits for FlushAsync.
func (r *Replicated) Flush() error { return wait(r.FlushAsync) }
