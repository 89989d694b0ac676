package posixshim

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fsNode is a file, directory, symlink or special file of a namespace. Its
// StableAttr.Ino is the volume's slot base | the inode number within the
// volume, unique across the mount.
type fsNode struct {
	fs.Inode
	v    *volFS
	base uint64 // slot << slotShift
	ino  uint64
	ttl  time.Duration
}

var (
	_ fs.NodeLookuper   = (*fsNode)(nil)
	_ fs.NodeGetattrer  = (*fsNode)(nil)
	_ fs.NodeSetattrer  = (*fsNode)(nil)
	_ fs.NodeReaddirer  = (*fsNode)(nil)
	_ fs.NodeMkdirer    = (*fsNode)(nil)
	_ fs.NodeMknoder    = (*fsNode)(nil)
	_ fs.NodeCreater    = (*fsNode)(nil)
	_ fs.NodeSymlinker  = (*fsNode)(nil)
	_ fs.NodeReadlinker = (*fsNode)(nil)
	_ fs.NodeLinker     = (*fsNode)(nil)
	_ fs.NodeUnlinker   = (*fsNode)(nil)
	_ fs.NodeRmdirer    = (*fsNode)(nil)
	_ fs.NodeRenamer    = (*fsNode)(nil)
	_ fs.NodeOpener     = (*fsNode)(nil)
	_ fs.NodeReader     = (*fsNode)(nil)
	_ fs.NodeWriter     = (*fsNode)(nil)
	_ fs.NodeFlusher    = (*fsNode)(nil)
	_ fs.NodeFsyncer    = (*fsNode)(nil)
	_ fs.NodeReleaser   = (*fsNode)(nil)
	_ fs.NodeStatfser   = (*fsNode)(nil)
)

// fillAttr copies a into out.
func fillAttr(out *fuse.Attr, a attr, base uint64) {
	out.Ino = base | a.Ino
	out.Mode = a.Mode
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Blksize = 4096
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.UID, a.GID
	out.Rdev = a.Rdev
	out.Atime, out.Atimensec = uint64(a.Atime/1e9), uint32(a.Atime%1e9)
	out.Mtime, out.Mtimensec = uint64(a.Mtime/1e9), uint32(a.Mtime%1e9)
	out.Ctime, out.Ctimensec = uint64(a.Ctime/1e9), uint32(a.Ctime%1e9)
}

// child returns the fs.Inode for a, filling out.
func (n *fsNode) child(ctx context.Context, a attr, out *fuse.EntryOut) *fs.Inode {
	fillAttr(&out.Attr, a, n.base)
	out.SetEntryTimeout(n.ttl)
	out.SetAttrTimeout(n.ttl)
	c := &fsNode{v: n.v, base: n.base, ino: a.Ino, ttl: n.ttl}
	return n.NewInode(ctx, c, fs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: n.base | a.Ino})
}

func (n *fsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a, err := n.v.lookup(n.ino, name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, a, out), 0
}

func (n *fsNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.v.getattr(n.ino)
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a, n.base)
	out.SetTimeout(n.ttl)
	return 0
}

func (n *fsNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var req setattrReq
	if m, ok := in.GetMode(); ok {
		req.Mask, req.Mode = req.Mask|attrMode, m
	}
	if u, ok := in.GetUID(); ok {
		req.Mask, req.UID = req.Mask|attrUID, u
	}
	if g, ok := in.GetGID(); ok {
		req.Mask, req.GID = req.Mask|attrGID, g
	}
	if s, ok := in.GetSize(); ok {
		req.Mask, req.Size = req.Mask|attrSize, s
	}
	if t, ok := in.GetATime(); ok {
		req.Mask, req.Atime = req.Mask|attrAtime, t.UnixNano()
	}
	if t, ok := in.GetMTime(); ok {
		req.Mask, req.Mtime = req.Mask|attrMtime, t.UnixNano()
	}
	a, err := n.v.setattr(n.ino, req)
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a, n.base)
	out.SetTimeout(n.ttl)
	return 0
}

func (n *fsNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, err := n.v.readdir(n.ino)
	if err != nil {
		return nil, toErrno(err)
	}
	list := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		list[i] = fuse.DirEntry{Name: e.Name, Ino: n.base | e.Ino, Mode: e.Mode}
	}
	return fs.NewListDirStream(list), 0
}

// owner returns the uid and gid a new inode in directory n gets: the
// caller's, but the directory's group if it is set-group-ID; and whether
// the directory is set-group-ID.
func (n *fsNode) owner(ctx context.Context) (uid, gid uint32, sgid bool) {
	if c, ok := fuse.FromContext(ctx); ok {
		uid, gid = c.Uid, c.Gid
	}
	if a, err := n.v.getattr(n.ino); err == nil && a.Mode&syscall.S_ISGID != 0 {
		gid, sgid = a.GID, true
	}
	return uid, gid, sgid
}

func (n *fsNode) make(ctx context.Context, name string, mode, rdev uint32, target string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	uid, gid, sgid := n.owner(ctx)
	if sgid && mode&syscall.S_IFMT == syscall.S_IFDIR {
		mode |= syscall.S_ISGID
	}
	a, err := n.v.create(n.ino, name, mode, uid, gid, rdev, target)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, a, out), 0
}

func (n *fsNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.make(ctx, name, syscall.S_IFDIR|mode&07777, 0, "", out)
}

func (n *fsNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT == 0 {
		mode |= syscall.S_IFREG
	}
	return n.make(ctx, name, mode, dev, "", out)
}

func (n *fsNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.make(ctx, name, syscall.S_IFLNK|0o777, 0, target, out)
}

func (n *fsNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	child, errno := n.make(ctx, name, syscall.S_IFREG|mode&07777, 0, "", out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if err := n.v.open(out.Ino &^ n.base); err != nil {
		return nil, nil, 0, toErrno(err)
	}
	return child, nil, 0, 0
}

func (n *fsNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.v.readlink(n.ino)
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(t), 0
}

func (n *fsNode) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*fsNode)
	if !ok || t.v != n.v {
		return nil, syscall.EXDEV
	}
	a, err := n.v.link(t.ino, n.ino, name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, a, out), 0
}

func (n *fsNode) Unlink(ctx context.Context, name string) syscall.Errno {
	return toErrno(n.v.remove(n.ino, name, false))
}

func (n *fsNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	return toErrno(n.v.remove(n.ino, name, true))
}

func (n *fsNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	p, ok := newParent.(*fsNode)
	if !ok || p.v != n.v {
		return syscall.EXDEV
	}
	return toErrno(n.v.rename(n.ino, name, p.ino, newName, flags))
}

func (n *fsNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, toErrno(n.v.open(n.ino))
}

func (n *fsNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	k, err := n.v.read(n.ino, dest, off)
	if err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *fsNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	k, err := n.v.write(n.ino, data, off)
	return uint32(k), toErrno(err)
}

func (n *fsNode) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return toErrno(n.v.flush(n.ino))
}

func (n *fsNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	return toErrno(n.v.fsync(n.ino))
}

func (n *fsNode) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return toErrno(n.v.release(n.ino))
}

func (n *fsNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	s := n.v.statfs()
	out.Blocks, out.Bfree, out.Bavail = s.Blocks, s.Bfree, s.Bfree
	out.Files, out.Ffree = s.Files, s.Ffree
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, nameMax
	return 0
}
