package posixshim

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"
	"cloudfs/testenv"
)

// volDisk adapts a segment.Volume to Disk, as the daemon does.
type volDisk struct {
	*segment.Volume
	size int64
}

func (d volDisk) Size() int64 { return d.size }

// Blank reports whether the volume was never written.
func (d volDisk) Blank() (bool, error) {
	in, err := d.Info()
	if err != nil {
		return false, err
	}
	return in.Blank(), nil
}

// storeSource is a Source over a real store, with a set of volumes that
// act as raw devices (what the daemon's ublk exposure looks like).
type storeSource struct {
	st *segment.Store

	mu    sync.Mutex
	raw   map[string]bool
	inUse map[string]Use
}

func newSource(st *segment.Store) *storeSource {
	return &storeSource{st: st, raw: map[string]bool{}, inUse: map[string]Use{}}
}

func (s *storeSource) Open(id string, use Use) (Disk, func(), error) {
	base, err := segment.ParseID(id)
	if err != nil {
		return nil, nil, fmt.Errorf("volume %q: %w", id, ErrNotFound)
	}
	v, err := s.st.Volume(base)
	if err != nil {
		return nil, nil, err
	}
	in, err := v.Info()
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw[id] {
		return nil, nil, fmt.Errorf("volume %s is exposed as a raw device: %w", id, ErrInUse)
	}
	s.inUse[id] = use
	return volDisk{Volume: v, size: int64(in.Size)}, func() {
		s.mu.Lock()
		delete(s.inUse, id)
		s.mu.Unlock()
	}, nil
}

func (s *storeSource) List() []string {
	var ids []string
	for _, h := range s.st.Heads() {
		ids = append(ids, h.Base.String())
	}
	return ids
}

// testVolumeSize is the size of test volumes: thin, so it costs only what
// is written.
const testVolumeSize = 256 << 20

// rig is a store on a Mem device, a volume on it, and optionally the shim
// mounted over the store.
type rig struct {
	dev *device.Mem
	st  *segment.Store
	src *storeSource
	vol *segment.Volume
	id  string
	dir string // mount point
	srv *Server
}

// newRig makes a store of storeSize bytes (0: 1 GiB) and one volume.
func newRig(t testing.TB, storeSize int64) *rig {
	t.Helper()
	if storeSize == 0 {
		storeSize = 1 << 30
	}
	dev, st := segtest.NewStore(t, storeSize, segment.Options{})
	vol, err := st.Create(testVolumeSize)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{dev: dev, st: st, src: newSource(st), vol: vol, id: vol.Base().String()}
}

// mount mounts the shim over the rig's store; the test's cleanup unmounts
// it (before the store's cleanup closes and checks the store).
func (r *rig) mount(t testing.TB) {
	t.Helper()
	testenv.RequireFUSE(t)
	r.dir = t.TempDir()
	srv, err := Mount(r.dir, r.src, Config{Logger: segtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
}

// ns returns the path of the rig's volume directory.
func (r *rig) ns() string { return filepath.Join(r.dir, r.id) }

// memDisk is a Disk in a byte slice, for decoder fuzzing and unit tests
// that need no store. Tests of the shim's behaviour use real stores.
type memDisk struct {
	mu sync.Mutex
	b  []byte
}

func newMemDisk(size int) *memDisk { return &memDisk{b: make([]byte, size)} }

func (d *memDisk) check(p []byte, off int64) error {
	if off%sectorSize != 0 || len(p)%sectorSize != 0 || off < 0 || off+int64(len(p)) > int64(len(d.b)) {
		return fmt.Errorf("memdisk: io %d+%d: %w", off, len(p), segment.ErrOutOfRange)
	}
	return nil
}

func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(p, off); err != nil {
		return 0, err
	}
	return copy(p, d.b[off:]), nil
}

func (d *memDisk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(p, off); err != nil {
		return 0, err
	}
	return copy(d.b[off:], p), nil
}

func (d *memDisk) Flush() error { return nil }
func (d *memDisk) Size() int64  { return int64(len(d.b)) }
