package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloudfs/posixshim"
	"cloudfs/replicator"
	"cloudfs/segment"

	"golang.org/x/sys/unix"
)

// shimSource is how the POSIX shim (serve --mount) reaches volumes: a
// volume kept here through this host's replication (or forwarded to its
// primary, as the block device does), a volume kept elsewhere through its
// primary over HTTP. While the shim uses a volume, the volume has no block
// device: one open is refused (EBUSY), else the device is removed until
// the shim releases the volume.
type shimSource struct {
	h  *Host
	rt *routes

	mu  sync.Mutex
	use map[segment.ID]posixshim.Use
}

func (s *shimSource) Open(id string, use posixshim.Use) (posixshim.Disk, func(), error) {
	base, err := segment.ParseID(id)
	if err != nil {
		return nil, nil, fmt.Errorf("%q is not a volume id: %w", id, posixshim.ErrNotFound)
	}
	v, err := s.h.st.Volume(base)
	if errors.Is(err, segment.ErrNotFound) {
		// not kept here: through its primary, if the catalog knows one
		if c := s.rt.remote(base); c != nil {
			return remoteDisk(c, id)
		}
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	in, err := v.Info()
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.use[base]; ok {
		return nil, nil, fmt.Errorf("volume %v is open as a %v: %w", base, u, posixshim.ErrInUse)
	}
	if err := s.h.devs.claim(base); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", err, posixshim.ErrInUse)
	}
	s.use[base] = use
	release := func() {
		s.mu.Lock()
		delete(s.use, base)
		s.mu.Unlock()
		s.h.devs.release(base)
	}
	d := &volumeDisk{b: &backend{local: s.h.devsAcks().Volume(v), rt: s.rt}, v: v, size: int64(in.Size)}
	return d, release, nil
}

// List: the root shows the volumes kept here.
func (s *shimSource) List() []string {
	var ids []string
	for _, h := range s.h.st.Heads() {
		ids = append(ids, h.Base.String())
	}
	return ids
}

// inUse reports whether the shim uses base (a delete is refused).
func (s *shimSource) inUse(base segment.ID) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.use[base]
	return ok
}

// volumeDisk is a volume kept here as the shim's Disk: the device backend's
// path (replication, or forwarding to the primary).
type volumeDisk struct {
	b    *backend
	v    *segment.Volume
	size int64
}

func (d *volumeDisk) ReadAt(p []byte, off int64) (int, error) { return d.b.ReadAt(p, off) }
func (d *volumeDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := waitDone(func(done func(error)) { d.b.WriteAsync(p, off, false, done) }); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (d *volumeDisk) WriteZeroes(off, n int64) error {
	return waitDone(func(done func(error)) { d.b.ZeroAsync(off, n, false, done) })
}
func (d *volumeDisk) Flush() error { return waitDone(d.b.FlushAsync) }
func (d *volumeDisk) Size() int64  { return d.size }

// Blank: never written (no extents of its own, no parent).
func (d *volumeDisk) Blank() (bool, error) {
	in, err := d.v.Info()
	return err == nil && in.Blank(), err
}

func waitDone(f func(done func(error))) error {
	ch := make(chan error, 1)
	f(func(err error) { ch <- err })
	return <-ch
}

// httpDisk is a volume reached over the HTTP API (its primary, or the local
// daemon for `cloudfs mount`, which redirects to the primary).
type httpDisk struct {
	c    *replicator.Client
	id   string
	size int64
}

// remoteDisk opens volume id through c.
func remoteDisk(c *replicator.Client, id string) (posixshim.Disk, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
	defer cancel()
	vi, err := c.Info(ctx, id)
	if replicator.IsStatus(err, 404) {
		return nil, nil, fmt.Errorf("volume %s: %w", id, posixshim.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	return &httpDisk{c: c, id: id, size: int64(vi.Size)}, func() {}, nil
}

// NewHTTPSource is the shim's Source for `cloudfs mount`: every volume
// through the daemon at c (which sends block IO to each volume's primary).
// Exclusivity with block devices is the daemon's only for its own mount.
func NewHTTPSource(c *replicator.Client) posixshim.Source { return httpSource{c} }

type httpSource struct{ c *replicator.Client }

func (s httpSource) Open(id string, _ posixshim.Use) (posixshim.Disk, func(), error) {
	return remoteDisk(s.c, id)
}

func (s httpSource) List() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vols, err := s.c.Volumes(ctx)
	if err != nil {
		return nil
	}
	ids := make([]string, len(vols))
	for i, v := range vols {
		ids[i] = v.ID
	}
	return ids
}

func (d *httpDisk) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), remoteTimeout)
}

func (d *httpDisk) ReadAt(p []byte, off int64) (int, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	if err := d.c.ReadAt(ctx, d.id, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *httpDisk) WriteAt(p []byte, off int64) (int, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	if err := d.c.WriteAt(ctx, d.id, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (d *httpDisk) WriteZeroes(off, n int64) error {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.c.Discard(ctx, d.id, off, n)
}

func (d *httpDisk) Flush() error {
	ctx, cancel := d.ctx()
	defer cancel()
	return d.c.Flush(ctx, d.id)
}

func (d *httpDisk) Size() int64 { return d.size }

// clearStaleMount detaches the mount a killed daemon left on dir (its FUSE
// connection is gone: every access fails with ENOTCONN), so that the shim
// can mount there again.
func clearStaleMount(dir string, log *slog.Logger) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); !errors.Is(err, unix.ENOTCONN) {
		return
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		log.Warn("stale mount of a previous run not removed", "dir", dir, "err", err)
		return
	}
	log.Info("removed the stale mount of a previous run", "dir", dir)
}
