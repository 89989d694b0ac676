package posixshim

import (
	"fmt"
	"maps"
	"slices"
	"syscall"
)

// attr is a snapshot of an inode's attributes, taken under the lock.
type attr struct {
	Ino                 uint64
	Mode                uint32
	UID, GID            uint32
	Nlink, Rdev         uint32
	Size, Blocks        uint64 // Blocks: 512-byte units of mapped chunks
	Atime, Mtime, Ctime int64
}

func (n *inode) attr() attr {
	return attr{Ino: n.Ino, Mode: n.Mode, UID: n.UID, GID: n.GID, Nlink: n.Nlink, Rdev: n.Rdev, Size: n.Size,
		Blocks: uint64(len(n.Chunks)) * chunkSize / 512, Atime: n.Atime, Mtime: n.Mtime, Ctime: n.Ctime}
}

// node returns inode ino, or ENOENT (an inode gone since the kernel looked
// it up: removed while not open).
func (v *volFS) node(ino uint64) (*inode, error) {
	n := v.st.inodes[ino]
	if n == nil {
		return nil, fmt.Errorf("inode %d: %w", ino, syscall.ENOENT)
	}
	return n, nil
}

// dirNode returns directory ino, or ENOTDIR.
func (v *volFS) dirNode(ino uint64) (*inode, error) {
	n, err := v.node(ino)
	if err == nil && !n.isDir() {
		err = fmt.Errorf("inode %d: %w", ino, syscall.ENOTDIR)
	}
	if err == nil && n.Nlink == 0 {
		err = fmt.Errorf("directory %d was removed: %w", ino, syscall.ENOENT)
	}
	return n, err
}

func checkName(name string) error {
	if len(name) > nameMax {
		return fmt.Errorf("name of %d bytes: %w", len(name), syscall.ENAMETOOLONG)
	}
	if !validName(name) {
		return fmt.Errorf("name %q: %w", name, syscall.EINVAL)
	}
	return nil
}

func (v *volFS) getattr(ino uint64) (attr, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n, err := v.node(ino)
	if err != nil {
		return attr{}, err
	}
	return n.attr(), nil
}

func (v *volFS) lookup(parent uint64, name string) (attr, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	d, err := v.dirNode(parent)
	if err != nil {
		return attr{}, err
	}
	ino, ok := d.Entries[name]
	if !ok {
		return attr{}, syscall.ENOENT
	}
	return v.st.inodes[ino].attr(), nil
}

// dirent is one entry of a directory listing.
type dirent struct {
	Name string
	Ino  uint64
	Mode uint32
}

func (v *volFS) readdir(ino uint64) ([]dirent, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	d, err := v.dirNode(ino)
	if err != nil {
		return nil, err
	}
	out := make([]dirent, 0, len(d.Entries))
	for _, name := range slices.Sorted(maps.Keys(d.Entries)) {
		c := v.st.inodes[d.Entries[name]]
		out = append(out, dirent{Name: name, Ino: c.Ino, Mode: c.Mode})
	}
	return out, nil
}

func (v *volFS) readlink(ino uint64) (string, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n, err := v.node(ino)
	if err != nil {
		return "", err
	}
	if n.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return "", syscall.EINVAL
	}
	return n.Target, nil
}

// create makes a new inode named name in parent. mode carries the file
// type; target is a symlink's target.
func (v *volFS) create(parent uint64, name string, mode, uid, gid, rdev uint32, target string) (attr, error) {
	if err := checkName(name); err != nil {
		return attr{}, err
	}
	if len(target) > pathMax {
		return attr{}, syscall.ENAMETOOLONG
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	d, err := v.dirNode(parent)
	if err != nil {
		return attr{}, err
	}
	if _, ok := d.Entries[name]; ok {
		return attr{}, syscall.EEXIST
	}
	ino := v.st.nextIno
	r := &record{Kind: recCreate, Ino: ino, Parent: parent, Mode: mode, UID: uid, GID: gid, Rdev: rdev,
		Time: v.now(), Name: name, Name2: target}
	if err := v.do(r); err != nil {
		return attr{}, err
	}
	return v.st.inodes[ino].attr(), nil
}

func (v *volFS) link(ino, parent uint64, name string) (attr, error) {
	if err := checkName(name); err != nil {
		return attr{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	d, err := v.dirNode(parent)
	if err != nil {
		return attr{}, err
	}
	n, err := v.node(ino)
	switch {
	case err != nil:
		return attr{}, err
	case n.isDir():
		return attr{}, syscall.EPERM
	case n.Nlink == 0:
		return attr{}, syscall.ENOENT
	case n.Nlink == 1<<32-1:
		return attr{}, syscall.EMLINK
	}
	if _, ok := d.Entries[name]; ok {
		return attr{}, syscall.EEXIST
	}
	if err := v.do(&record{Kind: recLink, Ino: ino, Parent: parent, Time: v.now(), Name: name}); err != nil {
		return attr{}, err
	}
	return n.attr(), nil
}

// remove unlinks name from parent; dir selects rmdir's rules.
func (v *volFS) remove(parent uint64, name string, dir bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	d, err := v.dirNode(parent)
	if err != nil {
		return err
	}
	ino, ok := d.Entries[name]
	if !ok {
		return syscall.ENOENT
	}
	n := v.st.inodes[ino]
	switch {
	case dir && !n.isDir():
		return syscall.ENOTDIR
	case !dir && n.isDir():
		return syscall.EISDIR
	case dir && len(n.Entries) > 0:
		return syscall.ENOTEMPTY
	}
	return v.do(&record{Kind: recUnlink, Parent: parent, Time: v.now(), Name: name})
}

func (v *volFS) rename(p1 uint64, n1 string, p2 uint64, n2 string, flags uint32) error {
	if flags&^(renameNoReplace|renameExchange) != 0 || flags == renameNoReplace|renameExchange {
		return syscall.EINVAL
	}
	if err := checkName(n2); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	d1, err := v.dirNode(p1)
	if err != nil {
		return err
	}
	d2, err := v.dirNode(p2)
	if err != nil {
		return err
	}
	src, ok := d1.Entries[n1]
	if !ok {
		return syscall.ENOENT
	}
	dst, exists := d2.Entries[n2]
	if v.within(p2, src) || flags&renameExchange != 0 && exists && v.within(p1, dst) {
		return fmt.Errorf("rename %q into its own subtree: %w", n1, syscall.EINVAL)
	}
	switch {
	case flags&renameExchange != 0 && !exists:
		return syscall.ENOENT
	case flags&renameNoReplace != 0 && exists:
		return syscall.EEXIST
	case exists && flags&renameExchange == 0 && dst != src:
		s, t := v.st.inodes[src], v.st.inodes[dst]
		switch {
		case s.isDir() && !t.isDir():
			return syscall.ENOTDIR
		case !s.isDir() && t.isDir():
			return syscall.EISDIR
		case t.isDir() && len(t.Entries) > 0:
			return syscall.ENOTEMPTY
		}
	}
	return v.do(&record{Kind: recRename, Parent: p1, Parent2: p2, Flags: flags, Time: v.now(), Name: n1, Name2: n2})
}

// setattrReq is a change of attributes; Mask says which fields count.
type setattrReq struct {
	Mask         uint32
	Mode         uint32
	UID, GID     uint32
	Size         uint64
	Atime, Mtime int64
}

func (v *volFS) setattr(ino uint64, req setattrReq) (attr, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n, err := v.node(ino)
	if err != nil {
		return attr{}, err
	}
	if req.Mask&attrSize != 0 {
		switch {
		case n.isDir():
			return attr{}, syscall.EISDIR
		case !n.isReg():
			return attr{}, syscall.EINVAL
		case req.Size > maxFileSize:
			return attr{}, syscall.EFBIG
		case req.Size > n.Size:
			if err := v.zeroTail(n, n.Size, req.Size); err != nil {
				return attr{}, err
			}
		}
	}
	r := &record{Kind: recSetattr, Ino: ino, Mask: req.Mask | attrCtime, Mode: req.Mode, UID: req.UID, GID: req.GID,
		Size: req.Size, Atime: req.Atime, Mtime: req.Mtime, Time: v.now()}
	if req.Mask&attrSize != 0 && req.Mask&attrMtime == 0 {
		r.Mask |= attrMtime
		r.Mtime = r.Time
	}
	if err := v.do(r); err != nil {
		return attr{}, err
	}
	delete(v.dirty, ino)
	return n.attr(), nil
}

// zeroTail zeroes the bytes from the old end of file from up to to (or the
// end of its chunk) before a file grows, so that whatever an earlier, longer
// life of the file left there reads as zeros. Chunks after it are unmapped.
func (v *volFS) zeroTail(n *inode, from, to uint64) error {
	if from%chunkSize == 0 {
		return nil
	}
	c, ok := n.Chunks[from/chunkSize]
	if !ok {
		return nil
	}
	end := min(to, roundUp(from, chunkSize))
	return zeroAt(v.disk, v.sb.chunkOff(c)+int64(from%chunkSize), int64(end-from))
}

// read reads up to len(p) bytes of file ino at off and returns how many
// (fewer at the end of the file).
func (v *volFS) read(ino uint64, p []byte, off int64) (int, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	n, err := v.node(ino)
	if err != nil {
		return 0, err
	}
	if off < 0 || uint64(off) >= n.Size {
		return 0, nil
	}
	p = p[:min(uint64(len(p)), n.Size-uint64(off))]
	for done := 0; done < len(p); {
		pos := uint64(off) + uint64(done)
		within := pos % chunkSize
		k := int(min(chunkSize-within, uint64(len(p)-done)))
		if c, ok := n.Chunks[pos/chunkSize]; ok {
			if err := readAt(v.disk, p[done:done+k], v.sb.chunkOff(c)+int64(within)); err != nil {
				return 0, err
			}
		} else {
			clear(p[done : done+k])
		}
		done += k
	}
	return len(p), nil
}

// write writes p to file ino at off: in place where the file has chunks,
// into newly allocated chunks elsewhere; then one journal write maps the new
// chunks and sets the new size.
func (v *volFS) write(ino uint64, p []byte, off int64) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n, err := v.node(ino)
	if err != nil {
		return 0, err
	}
	end := uint64(off) + uint64(len(p))
	if off < 0 || end > maxFileSize {
		return 0, syscall.EFBIG
	}
	if uint64(off) > n.Size {
		if err := v.zeroTail(n, n.Size, uint64(off)); err != nil {
			return 0, err
		}
	}
	maps, err := v.writeChunks(n, p, uint64(off))
	for _, m := range maps {
		v.st.alloc.clear(m.Data) // reserved while writing; the record marks them
	}
	if err != nil {
		return 0, err
	}
	now := v.now()
	if end <= n.Size && len(maps) == 0 {
		n.Mtime, n.Ctime = now, now
		v.dirty[ino] = true
		return len(p), nil
	}
	recs := []*record{{Kind: recSetattr, Ino: ino, Mask: attrMtime | attrCtime, Mtime: now, Time: now}}
	if end > n.Size {
		recs[0].Mask |= attrSize
		recs[0].Size = end
	}
	for len(maps) > 0 {
		k := min(len(maps), maxMapsPerRecord)
		recs = append(recs, &record{Kind: recMap, Ino: ino, Maps: maps[:k]})
		maps = maps[k:]
	}
	if err := v.do(recs...); err != nil {
		return 0, err
	}
	delete(v.dirty, ino)
	return len(p), nil
}

// writeChunks writes p at file offset off and returns the chunks it
// allocated (marked in use until the caller clears them).
func (v *volFS) writeChunks(n *inode, p []byte, off uint64) ([]chunkMap, error) {
	var maps []chunkMap
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		within := pos % chunkSize
		k := int(min(chunkSize-within, uint64(len(p)-done)))
		if c, ok := n.Chunks[pos/chunkSize]; ok {
			if err := writeAt(v.disk, p[done:done+k], v.sb.chunkOff(c)+int64(within)); err != nil {
				return maps, err
			}
		} else {
			c, ok := v.st.alloc.find()
			if !ok {
				return maps, fmt.Errorf("volume %s: no free data chunk: %w", v.id, ErrNoSpace)
			}
			v.st.alloc.set(c)
			maps = append(maps, chunkMap{File: pos / chunkSize, Data: c})
			// A new chunk is written whole: zeros around the data, so that
			// whatever a freed chunk held never shows (the store keeps
			// none of the zero sectors).
			buf := make([]byte, chunkSize)
			copy(buf[within:], p[done:done+k])
			if _, err := v.disk.WriteAt(buf, v.sb.chunkOff(c)); err != nil {
				return maps, err
			}
		}
		done += k
	}
	return maps, nil
}

// commitTimes journals the times of dirty inodes (of ino only, unless nil).
// Caller holds mu exclusively.
func (v *volFS) commitTimes(ino *uint64) error {
	var recs []*record
	for i := range v.dirty {
		if ino != nil && *ino != i {
			continue
		}
		if n := v.st.inodes[i]; n != nil {
			recs = append(recs, &record{Kind: recSetattr, Ino: i, Mask: attrMtime | attrCtime, Mtime: n.Mtime, Time: n.Ctime})
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := v.do(recs...); err != nil {
		return err
	}
	for _, r := range recs {
		delete(v.dirty, r.Ino)
	}
	return nil
}

// open counts an open of ino.
func (v *volFS) open(ino uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := v.node(ino); err != nil {
		return err
	}
	v.st.open[ino]++
	return nil
}

// flush journals ino's pending times (close(2) of one descriptor).
func (v *volFS) flush(ino uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.commitTimes(&ino)
}

// fsync makes ino's data and metadata durable: pending times, then a flush
// of the volume (which makes every earlier write durable).
func (v *volFS) fsync(ino uint64) error {
	if err := v.flush(ino); err != nil {
		return err
	}
	return v.disk.Flush()
}

// release ends an open of ino; the last close of a removed file frees it.
func (v *volFS) release(ino uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	err := v.commitTimes(&ino)
	v.st.release(ino)
	v.reclaim(v.st.takeFreed())
	return err
}

// statfs describes the namespace's capacity in 4096-byte blocks.
type statfs struct {
	Blocks, Bfree, Files, Ffree uint64
}

func (v *volFS) statfs() statfs {
	v.mu.RLock()
	defer v.mu.RUnlock()
	const per = chunkSize / 4096
	// Inodes are limited only by the checkpoint slot; report what a slot
	// holds at about 64 bytes each.
	files := v.sb.SlotSize / 64
	return statfs{Blocks: uint64(v.st.alloc.n) * per, Bfree: uint64(v.st.alloc.free) * per,
		Files: files, Ffree: files - min(files, uint64(len(v.st.inodes)))}
}

// within reports whether directory ino is dir or lies beneath it. The
// kernel checks this before a rename reaches the shim; the shim checks it
// again because a loop would detach a subtree from the root for good.
func (v *volFS) within(ino, dir uint64) bool {
	if ino == dir {
		return true
	}
	d := v.st.inodes[dir]
	if d == nil || !d.isDir() {
		return false
	}
	for _, child := range d.Entries {
		if v.within(ino, child) {
			return true
		}
	}
	return false
}
