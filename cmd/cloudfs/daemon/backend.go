package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/ublk"
)

// routes says, for each volume this host keeps but is not the primary of,
// where its primary is: the block device and the block API send its IO
// there (remote IO). A volume not listed is served here. An orphan is a
// replicated volume with no primary to serve it now: its primary's lease
// expired and the failover has not finished; its IO waits for one.
type routes struct {
	secret string
	client *http.Client
	mu     sync.RWMutex
	to     map[segment.ID]string // volume -> its primary's API URL
	orphan map[segment.ID]bool
	// acquirer, if set, moves a volume's primary role to this host for a
	// write made here (serve --acquire-on-write); set once replication runs.
	acquirer atomic.Pointer[replication]
}

// acquire tries to make this host base's primary for a write made here;
// false if it is off or did not happen (the write goes to the primary).
func (rt *routes) acquire(base segment.ID) bool {
	r := rt.acquirer.Load()
	return r != nil && r.acquireForWrite(base)
}

func newRoutes(secret string) *routes {
	return &routes{secret: secret, to: map[segment.ID]string{}, orphan: map[segment.ID]bool{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}}
}

// primary returns the API URL of base's primary, "" if it is served here.
func (rt *routes) primary(base segment.ID) string {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.to[base]
}

func (rt *routes) set(to map[segment.ID]string, orphan map[segment.ID]bool) {
	rt.mu.Lock()
	rt.to, rt.orphan = to, orphan
	rt.mu.Unlock()
}

// orphaned reports whether base has no primary to serve it now.
func (rt *routes) orphaned(base segment.ID) bool {
	_, orphan := rt.lookup(base)
	return orphan
}

// lookup returns a client of base's primary (nil if it is served here) and
// whether base is an orphan, under one lock: a device's IO asks both.
func (rt *routes) lookup(base segment.ID) (*replicator.Client, bool) {
	rt.mu.RLock()
	url, orphan := rt.to[base], rt.orphan[base]
	rt.mu.RUnlock()
	if url == "" {
		return nil, orphan
	}
	return &replicator.Client{URL: url, Secret: rt.secret, HTTP: rt.client}, orphan
}

// setOne points base at its new primary now, ahead of the catalog.
func (rt *routes) setOne(base segment.ID, url string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	to := maps.Clone(rt.to)
	to[base] = url
	rt.to = to
	rt.unorphanLocked(base)
}

// forget serves base here from now, ahead of the catalog.
func (rt *routes) forget(base segment.ID) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	to := maps.Clone(rt.to)
	delete(to, base)
	rt.to = to
	rt.unorphanLocked(base)
}

func (rt *routes) unorphanLocked(base segment.ID) {
	if rt.orphan[base] {
		orphan := maps.Clone(rt.orphan)
		delete(orphan, base)
		rt.orphan = orphan
	}
}

// remote returns a client of base's primary, nil if it is served here.
func (rt *routes) remote(base segment.ID) *replicator.Client {
	c, _ := rt.lookup(base)
	return c
}

// backend is a volume's block device as this host serves it: through this
// host's replication when it is the primary (or the volume is not
// replicated), else forwarded to the primary over HTTP. It decides at every
// IO, so a device keeps working when the primary moves.
type backend struct {
	local *replicator.Replicated
	rt    *routes
}

var _ ublk.Backend = (*backend)(nil)

// remoteTimeout bounds one forwarded IO; the kernel's own timeout is longer.
const remoteTimeout = 20 * time.Second

func (b *backend) ReadAt(p []byte, off int64) (int, error) {
	c, orphan := b.rt.lookup(b.local.Base())
	if orphan && c == nil {
		// an orphan's copy here may lack acknowledged writes: it is read
		// once a failover made it the primary's, or at the new primary
		if !b.awaitPrimary() {
			return 0, fmt.Errorf("volume %v: no primary serves it (failover under way or impossible): %w",
				b.local.Base(), replicator.ErrNoQuorum)
		}
		c = b.rt.remote(b.local.Base())
	}
	if c == nil {
		return b.local.ReadAt(p, off)
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
	defer cancel()
	if err := c.ReadAt(ctx, b.local.Base().String(), p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// movedDone wraps a local IO's done: an IO refused because this host's
// store does not own the volume goes again, by retry, once the volume has a
// primary to go to: it has just been handed over or fenced (the route to
// the new primary is set at once), or a failover is under way (a route
// appears, or this host takes the volume over). The IO waits for that up
// to remoteTimeout, and then fails with the store's error.
func (b *backend) movedDone(retry func(), done func(error)) func(error) {
	return func(err error) {
		if !errors.Is(err, replicator.ErrNotPrimary) && !errors.Is(err, segment.ErrReadOnly) {
			done(err)
			return
		}
		go func() {
			if b.awaitPrimary() {
				retry()
				return
			}
			done(err)
		}()
	}
}

// awaitPrimary reports whether the volume is routed to a primary or owned
// by this host's store, waiting up to remoteTimeout for that while it is
// an orphan.
func (b *backend) awaitPrimary() bool {
	deadline := time.Now().Add(remoteTimeout)
	for {
		c, orphan := b.rt.lookup(b.local.Base())
		if c != nil {
			return true
		}
		if in, err := b.local.Info(); err != nil {
			return false
		} else if in.Owned {
			return true
		}
		if !orphan || time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *backend) WriteAsync(p []byte, off int64, fua bool, done func(error)) {
	c := b.rt.remote(b.local.Base())
	if c == nil {
		b.local.WriteAsync(p, off, fua, b.movedDone(func() { b.WriteAsync(p, off, fua, done) }, done))
		return
	}
	go func() {
		if b.rt.acquire(b.local.Base()) { // served here from now on
			b.WriteAsync(p, off, fua, done)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
		defer cancel()
		err := c.WriteAt(ctx, b.local.Base().String(), p, off)
		if err == nil && fua {
			err = c.Flush(ctx, b.local.Base().String())
		}
		done(err)
	}()
}

func (b *backend) ZeroAsync(off, n int64, fua bool, done func(error)) {
	c := b.rt.remote(b.local.Base())
	if c == nil {
		b.local.ZeroAsync(off, n, fua, b.movedDone(func() { b.ZeroAsync(off, n, fua, done) }, done))
		return
	}
	go func() {
		if b.rt.acquire(b.local.Base()) {
			b.ZeroAsync(off, n, fua, done)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
		defer cancel()
		err := c.Discard(ctx, b.local.Base().String(), off, n)
		if err == nil && fua {
			err = c.Flush(ctx, b.local.Base().String())
		}
		done(err)
	}()
}

func (b *backend) FlushAsync(done func(error)) {
	c := b.rt.remote(b.local.Base())
	if c == nil {
		b.local.FlushAsync(b.movedDone(func() { b.FlushAsync(done) }, done))
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
		defer cancel()
		done(c.Flush(ctx, b.local.Base().String()))
	}()
}

// errnoOf maps store errors, and a primary's answers to forwarded IO, to
// the errno a device's IO completes with.
func errnoOf(err error) syscall.Errno {
	switch {
	case errors.Is(err, segment.ErrNoSpace), replicator.IsStatus(err, http.StatusInsufficientStorage):
		return syscall.ENOSPC
	case errors.Is(err, segment.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, segment.ErrNotFound):
		return syscall.ENODEV
	}
	return 0 // ublk's rule: EIO
}
