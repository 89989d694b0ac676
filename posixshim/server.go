package posixshim

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Inode numbers of the mount: 1 is the root, 2 is disks/. Each volume the
// shim touches gets a slot s >= 1 for the life of the mount; its disk file
// is inode s<<slotShift and the inodes of its namespace are s<<slotShift |
// ino (ino < 2^slotShift, far more than a namespace can hold).
const (
	slotShift = 40
	disksIno  = 2
	// disksName is the directory of disk files.
	disksName = "disks"
)

// Server is a mounted shim. Create it with Mount; all methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	src Source
	fs  *fuse.Server

	mu       sync.Mutex
	vols     map[string]*namespace // namespaces in use, by volume id
	disks    map[string]*diskFile  // disk files open, by volume id
	slots    map[string]uint64
	nextSlot uint64

	done     chan struct{} // closed once unmounted and every volume released
	closeErr error
}

// namespace is a volume in use as a namespace.
type namespace struct {
	v       *volFS
	release func()
}

// Mount mounts the shim on dir (an existing directory) and serves it until
// it is unmounted, by Unmount or by umount(8). It needs root (or
// fusermount) and /dev/fuse.
func Mount(dir string, src Source, cfg Config) (*Server, error) {
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "posixshim"), src: src,
		vols: map[string]*namespace{}, disks: map[string]*diskFile{}, slots: map[string]uint64{},
		done: make(chan struct{})}
	ttl := cfg.AttrTimeout
	neg := 0 * ttl // a volume may appear (be created) at any time
	opts := &fs.Options{
		EntryTimeout: &ttl, AttrTimeout: &ttl, NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			FsName: cfg.FsName, Name: "cloudfs",
			// The kernel checks permissions from the mode bits; other
			// users (QEMU running as its own user) may use the mount.
			Options:    []string{"default_permissions"},
			AllowOther: true,
			MaxWrite:   1 << 20,
			// As root, mount(2) directly; else fall back to fusermount.
			DirectMount: true,
			// No extended attributes (nor ACLs): the kernel answers
			// EOPNOTSUPP, which cp -a and tar accept.
			DisableXAttrs: true,
			Debug:         cfg.Debug,
			// go-fuse logs with the log package; route it to the logger.
			Logger: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		},
		Logger: log.New(slogWriter{s.log}, "", 0),
	}
	srv, err := fs.Mount(dir, &rootNode{s: s}, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	s.fs = srv
	s.log.Info("mounted", "dir", dir)
	go func() {
		srv.Wait()
		s.closeErr = s.releaseAll()
		s.log.Info("unmounted", "dir", dir, "err", s.closeErr)
		close(s.done)
	}()
	return s, nil
}

// slogWriter adapts go-fuse's log.Logger output to slog at Warn (it logs
// protocol problems only).
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("fuse", "msg", string(p))
	return len(p), nil
}

// Unmount unmounts the file system, waits for it to stop, then writes a
// checkpoint of every namespace, flushes every volume and releases it. It
// returns the first error of those.
func (s *Server) Unmount() error {
	if err := s.fs.Unmount(); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	<-s.done
	return s.closeErr
}

// Wait blocks until the file system is unmounted and every volume released,
// and returns what Unmount returns.
func (s *Server) Wait() error {
	<-s.done
	return s.closeErr
}

// releaseAll closes every namespace and disk file left.
func (s *Server) releaseAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, ns := range s.vols {
		if err := ns.v.close(); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", id, err))
		}
		ns.release()
		delete(s.vols, id)
	}
	for id, d := range s.disks {
		if err := d.disk.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("disk file %s: %w", id, err))
		}
		d.release()
		delete(s.disks, id)
	}
	return errors.Join(errs...)
}

// slot returns the inode slot base of volume id. Caller holds s.mu.
func (s *Server) slotLocked(id string) uint64 {
	sl, ok := s.slots[id]
	if !ok {
		s.nextSlot++
		sl = s.nextSlot
		s.slots[id] = sl
	}
	return sl << slotShift
}

// isVolumeID reports whether name is a volume id: 40 lower-case hex digits.
func isVolumeID(name string) bool {
	if len(name) != 40 {
		return false
	}
	for _, c := range []byte(name) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// namespace returns the namespace of volume id, opening (and formatting
// if blank) the volume on first use.
func (s *Server) namespace(id string) (*volFS, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.vols[id]; ns != nil {
		return ns.v, s.slotLocked(id), nil
	}
	if s.disks[id] != nil {
		err := fmt.Errorf("volume %s is open as %s/%s: %w", id, disksName, id, ErrInUse)
		s.log.Warn("namespace refused: volume open as a disk file", "volume", id, "err", err)
		return nil, 0, err
	}
	d, release, err := s.src.Open(id, UseNamespace)
	if err != nil {
		s.logRefusal("namespace refused", id, err)
		return nil, 0, err
	}
	v, err := openVolFS(id, d, s.log.With("volume", id))
	if err != nil {
		release()
		s.logRefusal("namespace refused", id, err)
		return nil, 0, err
	}
	s.vols[id] = &namespace{v: v, release: release}
	return v, s.slotLocked(id), nil
}

// logRefusal says why a volume was refused, at a level that matches the
// cause: a missing volume is routine, a foreign or corrupt layout is not.
func (s *Server) logRefusal(msg, id string, err error) {
	switch toErrno(err) {
	case syscall.ENOENT:
		s.log.Debug(msg, "volume", id, "err", err)
	case syscall.EBUSY, syscall.EROFS, syscall.EMEDIUMTYPE:
		s.log.Warn(msg, "volume", id, "err", err)
	default:
		s.log.Error(msg, "volume", id, "err", err)
	}
}

// listed returns the ids the root lists: the source's and those in use.
func (s *Server) listed() []string {
	ids := map[string]bool{}
	for _, id := range s.src.List() {
		if isVolumeID(id) {
			ids[id] = true
		}
	}
	s.mu.Lock()
	for id := range s.vols {
		ids[id] = true
	}
	for id := range s.disks {
		ids[id] = true
	}
	s.mu.Unlock()
	return slices.Sorted(maps.Keys(ids))
}

// rootNode is the mount's root: disks/ and one directory per volume.
type rootNode struct {
	fs.Inode
	s *Server
}

var (
	_ fs.NodeLookuper  = (*rootNode)(nil)
	_ fs.NodeReaddirer = (*rootNode)(nil)
	_ fs.NodeGetattrer = (*rootNode)(nil)
)

func (r *rootNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Nlink, out.Ino = syscall.S_IFDIR|0o755, 2, 1
	return 0
}

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ttl := r.s.cfg.AttrTimeout
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
	if name == disksName {
		out.Mode, out.Nlink, out.Ino = syscall.S_IFDIR|0o755, 2, disksIno
		return r.NewInode(ctx, &disksNode{s: r.s}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: disksIno}), 0
	}
	if !isVolumeID(name) {
		return nil, syscall.ENOENT
	}
	v, base, err := r.s.namespace(name)
	if err != nil {
		return nil, toErrno(err)
	}
	a, err := v.getattr(rootIno)
	if err != nil {
		return nil, toErrno(err)
	}
	fillAttr(&out.Attr, a, base)
	n := &fsNode{v: v, base: base, ino: rootIno, ttl: ttl}
	return r.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: base | rootIno}), 0
}

func (r *rootNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	list := []fuse.DirEntry{{Name: disksName, Mode: syscall.S_IFDIR, Ino: disksIno}}
	for _, id := range r.s.listed() {
		list = append(list, fuse.DirEntry{Name: id, Mode: syscall.S_IFDIR})
	}
	return fs.NewListDirStream(list), 0
}
