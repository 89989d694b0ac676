package daemon

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"sync"
	"syscall"
	"time"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/ublk"
)

// routes says, for each volume this host keeps but is not the primary of,
// where its primary is: the block device and the block API send its IO
// there (remote IO). A volume not listed is served here.
type routes struct {
	secret string
	client *http.Client
	mu     sync.RWMutex
	to     map[segment.ID]string // volume -> its primary's API URL
}

func newRoutes(secret string) *routes {
	return &routes{secret: secret, to: map[segment.ID]string{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}}
}

// primary returns the API URL of base's primary, "" if it is served here.
func (rt *routes) primary(base segment.ID) string {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.to[base]
}

func (rt *routes) set(to map[segment.ID]string) {
	rt.mu.Lock()
	rt.to = to
	rt.mu.Unlock()
}

// setOne points base at its new primary now, ahead of the catalog.
func (rt *routes) setOne(base segment.ID, url string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	to := maps.Clone(rt.to)
	to[base] = url
	rt.to = to
}

// forget serves base here from now, ahead of the catalog.
func (rt *routes) forget(base segment.ID) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	to := maps.Clone(rt.to)
	delete(to, base)
	rt.to = to
}

// remote returns a client of base's primary, nil if it is served here.
func (rt *routes) remote(base segment.ID) *replicator.Client {
	if url := rt.primary(base); url != "" {
		return &replicator.Client{URL: url, Secret: rt.secret, HTTP: rt.client}
	}
	return nil
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
	c := b.rt.remote(b.local.Base())
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

// movedDone wraps a local IO's done: an IO refused because the volume has
// just been handed over (or fenced) is sent to the new primary by retry.
func (b *backend) movedDone(retry func(), done func(error)) func(error) {
	return func(err error) {
		if (errors.Is(err, replicator.ErrNotPrimary) || errors.Is(err, segment.ErrReadOnly)) &&
			b.rt.remote(b.local.Base()) != nil {
			go retry()
			return
		}
		done(err)
	}
}

func (b *backend) WriteAsync(p []byte, off int64, fua bool, done func(error)) {
	c := b.rt.remote(b.local.Base())
	if c == nil {
		b.local.WriteAsync(p, off, fua, b.movedDone(func() { b.WriteAsync(p, off, fua, done) }, done))
		return
	}
	go func() {
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
