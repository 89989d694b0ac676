package posixshim

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// diskFile is a volume open as disks/<id>: its whole address space as one
// regular file.
type diskFile struct {
	disk    Disk
	release func()
	opens   int // guarded by Server.mu
	// rmw is held shared by sector-aligned writes and exclusively by
	// unaligned ones, whose read-modify-write of the edge sectors must not
	// interleave with another write of those sectors.
	rmw sync.RWMutex
}

// openDisk opens volume id as a disk file, or counts one more open.
func (s *Server) openDisk(id string) (*diskFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.disks[id]; d != nil {
		d.opens++
		return d, nil
	}
	if s.vols[id] != nil {
		err := fmt.Errorf("volume %s is in use as the namespace %s: %w", id, id, ErrInUse)
		s.log.Warn("disk file refused: volume in use as a namespace", "volume", id, "err", err)
		return nil, err
	}
	d, release, err := s.src.Open(id, UseDiskFile)
	if err != nil {
		s.logRefusal("disk file refused", id, err)
		return nil, err
	}
	df := &diskFile{disk: d, release: release, opens: 1}
	s.disks[id] = df
	s.log.Info("disk file opened", "volume", id, "bytes", d.Size())
	return df, nil
}

// closeDisk ends an open of disk file id; the last one flushes the volume
// and releases it.
func (s *Server) closeDisk(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.disks[id]
	if d == nil {
		return nil
	}
	if d.opens--; d.opens > 0 {
		return nil
	}
	delete(s.disks, id)
	err := d.disk.Flush()
	d.release()
	s.log.Info("disk file closed", "volume", id, "err", err)
	return err
}

// diskSize returns the size of volume id, opening it briefly if the shim
// does not have it open.
func (s *Server) diskSize(id string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.disks[id]; d != nil {
		return d.disk.Size(), nil
	}
	if ns := s.vols[id]; ns != nil {
		return ns.v.disk.Size(), nil
	}
	d, release, err := s.src.Open(id, UseDiskFile)
	if err != nil {
		s.logRefusal("disk file refused", id, err)
		return 0, err
	}
	defer release()
	return d.Size(), nil
}

// disksNode is the directory disks/.
type disksNode struct {
	fs.Inode
	s *Server
}

var (
	_ fs.NodeLookuper  = (*disksNode)(nil)
	_ fs.NodeReaddirer = (*disksNode)(nil)
	_ fs.NodeGetattrer = (*disksNode)(nil)
)

func (n *disksNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Nlink, out.Ino = syscall.S_IFDIR|0o755, 2, disksIno
	return 0
}

func (n *disksNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !isVolumeID(name) {
		return nil, syscall.ENOENT
	}
	size, err := n.s.diskSize(name)
	if err != nil {
		return nil, toErrno(err)
	}
	n.s.mu.Lock()
	ino := n.s.slotLocked(name)
	n.s.mu.Unlock()
	dn := &diskNode{s: n.s, id: name, size: size, ino: ino, mode: 0o600}
	dn.fill(&out.Attr)
	out.SetEntryTimeout(n.s.cfg.AttrTimeout)
	out.SetAttrTimeout(n.s.cfg.AttrTimeout)
	return n.NewInode(ctx, dn, fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
}

func (n *disksNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var list []fuse.DirEntry
	for _, id := range n.s.listed() {
		list = append(list, fuse.DirEntry{Name: id, Mode: syscall.S_IFREG})
	}
	return fs.NewListDirStream(list), 0
}

// diskNode is disks/<id>. Its mode and owner live in memory only (they are
// not part of the volume); they start as 0600 root:root.
type diskNode struct {
	fs.Inode
	s    *Server
	id   string
	size int64
	ino  uint64

	mu       sync.Mutex
	mode     uint32
	uid, gid uint32
}

var (
	_ fs.NodeOpener    = (*diskNode)(nil)
	_ fs.NodeReader    = (*diskNode)(nil)
	_ fs.NodeWriter    = (*diskNode)(nil)
	_ fs.NodeFsyncer   = (*diskNode)(nil)
	_ fs.NodeReleaser  = (*diskNode)(nil)
	_ fs.NodeGetattrer = (*diskNode)(nil)
	_ fs.NodeSetattrer = (*diskNode)(nil)
)

func (n *diskNode) fill(out *fuse.Attr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out.Ino, out.Mode, out.Nlink = n.ino, syscall.S_IFREG|n.mode, 1
	out.Size, out.Blocks, out.Blksize = uint64(n.size), uint64(n.size)/512, 4096
	out.Uid, out.Gid = n.uid, n.gid
}

func (n *diskNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	return 0
}

// Setattr changes the mode and owner (in memory). The size is the volume's:
// truncating to it is accepted, to anything else is EINVAL.
func (n *diskNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != uint64(n.size) {
		return syscall.EINVAL
	}
	n.mu.Lock()
	if m, ok := in.GetMode(); ok {
		n.mode = m & 07777
	}
	if u, ok := in.GetUID(); ok {
		n.uid = u
	}
	if g, ok := in.GetGID(); ok {
		n.gid = g
	}
	n.mu.Unlock()
	n.fill(&out.Attr)
	return 0
}

func (n *diskNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	d, err := n.s.openDisk(n.id)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	return d, 0, 0
}

func (n *diskNode) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return toErrno(n.s.closeDisk(n.id))
}

func (n *diskNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	d, ok := f.(*diskFile)
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= n.size || off < 0 {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), n.size-off)]
	if err := readAt(d.disk, dest, off); err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest), 0
}

func (n *diskNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	d, ok := f.(*diskFile)
	if !ok {
		return 0, syscall.EBADF
	}
	if off >= n.size || off < 0 {
		return 0, syscall.EFBIG
	}
	data = data[:min(int64(len(data)), n.size-off)]
	if off%sectorSize == 0 && len(data)%sectorSize == 0 {
		d.rmw.RLock()
		defer d.rmw.RUnlock()
	} else {
		d.rmw.Lock()
		defer d.rmw.Unlock()
	}
	if err := writeAt(d.disk, data, off); err != nil {
		return 0, toErrno(err)
	}
	return uint32(len(data)), 0
}

// Fsync is a flush of the volume: every write acknowledged before it
// becomes durable.
func (n *diskNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	d, ok := f.(*diskFile)
	if !ok {
		return syscall.EBADF
	}
	return toErrno(d.disk.Flush())
}
