package posixshim

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"syscall"
)

// rootIno is the inode number of a namespace's root directory.
const rootIno = 1

// inode is the metadata of one file, directory, symlink or special file.
type inode struct {
	Ino                 uint64
	Mode                uint32 // type and permission bits, as st_mode
	UID, GID            uint32
	Nlink               uint32
	Rdev                uint32
	Size                uint64
	Atime, Mtime, Ctime int64  // unix nanoseconds
	Target              string // symlinks
	// Chunks maps file chunk index to data chunk (regular files). A missing
	// chunk reads as zeros.
	Chunks map[uint64]uint32
	// Entries maps names to inode numbers (directories).
	Entries map[string]uint64
}

func (n *inode) isDir() bool { return n.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (n *inode) isReg() bool { return n.Mode&syscall.S_IFMT == syscall.S_IFREG }

// state is a namespace's metadata: every inode and the allocation of data
// chunks. It is a pure data structure (no IO, no clock, no locks): the
// journal's records change it through apply, live and at replay alike.
type state struct {
	nextIno uint64
	inodes  map[uint64]*inode
	alloc   *bitmap
	// open counts the open files of each inode (live only, never saved). An
	// inode whose last name goes while it is open stays, nameless, until its
	// last close; replay frees it at once.
	open map[uint64]int
	// freed collects the data chunks freed since the caller last took them,
	// so that their space can be given back to the store.
	freed []uint32
}

// newState returns the state of a freshly formatted namespace: an empty root
// directory owned by uid:gid.
func newState(chunks uint32, now int64, uid, gid uint32) *state {
	s := emptyState(chunks)
	s.inodes[rootIno] = &inode{Ino: rootIno, Mode: syscall.S_IFDIR | 0o755, UID: uid, GID: gid, Nlink: 2,
		Atime: now, Mtime: now, Ctime: now, Entries: map[string]uint64{}}
	s.nextIno = rootIno + 1
	return s
}

func emptyState(chunks uint32) *state {
	return &state{inodes: map[uint64]*inode{}, alloc: newBitmap(chunks), open: map[uint64]int{}}
}

// errCorrupt reports a record that cannot apply to the state: at replay, the
// journal does not describe the namespace it follows.
func errCorruptf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrCorrupt)...)
}

// dir returns directory ino.
func (s *state) dir(ino uint64) (*inode, error) {
	d := s.inodes[ino]
	if d == nil || !d.isDir() {
		return nil, errCorruptf("inode %d is not a directory", ino)
	}
	return d, nil
}

// apply changes the state by one record. Records the caller built from the
// state apply without error; an error means the journal is corrupt.
// Records naming an inode that no longer exists (an open file removed
// before a crash) are ignored.
func (s *state) apply(r *record) error {
	switch r.Kind {
	case recCreate:
		return s.applyCreate(r)
	case recLink:
		return s.applyLink(r)
	case recUnlink:
		d, err := s.dir(r.Parent)
		if err != nil {
			return err
		}
		if _, ok := d.Entries[r.Name]; !ok {
			return errCorruptf("unlink %d/%q: no such entry", r.Parent, r.Name)
		}
		s.unlink(d, r.Name, r.Time)
		return nil
	case recRename:
		return s.applyRename(r)
	case recSetattr:
		if n := s.inodes[r.Ino]; n != nil {
			s.setattr(n, r)
		}
		return nil
	case recMap:
		return s.applyMap(r)
	}
	return errCorruptf("record kind %d", r.Kind)
}

func (s *state) applyCreate(r *record) error {
	d, err := s.dir(r.Parent)
	if err != nil {
		return err
	}
	if _, ok := d.Entries[r.Name]; ok || s.inodes[r.Ino] != nil || r.Ino < rootIno || !validName(r.Name) {
		return errCorruptf("create %d/%q as %d: exists or invalid", r.Parent, r.Name, r.Ino)
	}
	n := &inode{Ino: r.Ino, Mode: r.Mode, UID: r.UID, GID: r.GID, Nlink: 1, Rdev: r.Rdev,
		Atime: r.Time, Mtime: r.Time, Ctime: r.Time, Target: r.Name2}
	switch n.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		n.Nlink, n.Entries = 2, map[string]uint64{}
		d.Nlink++
	case syscall.S_IFREG:
		n.Chunks = map[uint64]uint32{}
	case syscall.S_IFLNK:
		n.Size = uint64(len(n.Target))
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	default:
		return errCorruptf("create %d: mode %o", r.Ino, r.Mode)
	}
	s.inodes[n.Ino] = n
	d.Entries[r.Name] = n.Ino
	d.Mtime, d.Ctime = r.Time, r.Time
	s.nextIno = max(s.nextIno, r.Ino+1)
	return nil
}

func (s *state) applyLink(r *record) error {
	d, err := s.dir(r.Parent)
	if err != nil {
		return err
	}
	n := s.inodes[r.Ino]
	if _, ok := d.Entries[r.Name]; ok || !validName(r.Name) {
		return errCorruptf("link %d/%q: exists or invalid", r.Parent, r.Name)
	}
	if n == nil || n.isDir() || n.Nlink == 0 {
		return errCorruptf("link %d/%q to %d: not a linkable inode", r.Parent, r.Name, r.Ino)
	}
	d.Entries[r.Name] = n.Ino
	n.Nlink++
	n.Ctime, d.Mtime, d.Ctime = r.Time, r.Time, r.Time
	return nil
}

// unlink removes d's entry name (which exists), freeing its inode when that
// was its last name and it is not open.
func (s *state) unlink(d *inode, name string, now int64) {
	n := s.inodes[d.Entries[name]]
	delete(d.Entries, name)
	d.Mtime, d.Ctime = now, now
	if n.isDir() {
		d.Nlink--
		n.Nlink = 0
	} else {
		n.Nlink--
		n.Ctime = now
	}
	if n.Nlink == 0 && s.open[n.Ino] == 0 {
		s.drop(n)
	}
}

// drop removes inode n and frees its data chunks.
func (s *state) drop(n *inode) {
	for _, c := range n.Chunks {
		s.alloc.clear(c)
		s.freed = append(s.freed, c)
	}
	delete(s.inodes, n.Ino)
}

func (s *state) applyRename(r *record) error {
	d1, err := s.dir(r.Parent)
	if err != nil {
		return err
	}
	d2, err := s.dir(r.Parent2)
	if err != nil {
		return err
	}
	src, ok := d1.Entries[r.Name]
	dst, exists := d2.Entries[r.Name2]
	if !ok || !validName(r.Name2) || r.Flags&renameExchange != 0 && !exists {
		return errCorruptf("rename %d/%q to %d/%q: no such entry", r.Parent, r.Name, r.Parent2, r.Name2)
	}
	n := s.inodes[src]
	if r.Flags&renameExchange != 0 {
		m := s.inodes[dst]
		d1.Entries[r.Name], d2.Entries[r.Name2] = dst, src
		if n.isDir() != m.isDir() && d1 != d2 {
			if n.isDir() {
				d1.Nlink--
				d2.Nlink++
			} else {
				d1.Nlink++
				d2.Nlink--
			}
		}
		m.Ctime = r.Time
	} else {
		if exists && dst == src {
			return nil // two names of one inode: rename does nothing
		}
		if exists {
			s.unlink(d2, r.Name2, r.Time)
		}
		delete(d1.Entries, r.Name)
		d2.Entries[r.Name2] = src
		if n.isDir() {
			d1.Nlink--
			d2.Nlink++
		}
	}
	n.Ctime = r.Time
	d1.Mtime, d1.Ctime, d2.Mtime, d2.Ctime = r.Time, r.Time, r.Time, r.Time
	return nil
}

// setattr applies a setattr record to n.
func (s *state) setattr(n *inode, r *record) {
	if r.Mask&attrMode != 0 {
		n.Mode = n.Mode&syscall.S_IFMT | r.Mode&^syscall.S_IFMT
	}
	if r.Mask&attrUID != 0 {
		n.UID = r.UID
	}
	if r.Mask&attrGID != 0 {
		n.GID = r.GID
	}
	if r.Mask&attrSize != 0 && n.isReg() {
		if r.Size < n.Size {
			s.freeBeyond(n, r.Size)
		}
		n.Size = r.Size
	}
	if r.Mask&attrAtime != 0 {
		n.Atime = r.Atime
	}
	if r.Mask&attrMtime != 0 {
		n.Mtime = r.Mtime
	}
	if r.Mask&attrCtime != 0 {
		n.Ctime = r.Time
	}
}

// freeBeyond frees n's data chunks wholly beyond size bytes.
func (s *state) freeBeyond(n *inode, size uint64) {
	first := (size + chunkSize - 1) / chunkSize
	for fc, c := range n.Chunks {
		if fc >= first {
			delete(n.Chunks, fc)
			s.alloc.clear(c)
			s.freed = append(s.freed, c)
		}
	}
}

func (s *state) applyMap(r *record) error {
	n := s.inodes[r.Ino]
	if n == nil {
		// The file was removed while open and the data went with it. Its
		// chunks stay free: nothing else mapped them before the crash.
		return nil
	}
	if !n.isReg() {
		return errCorruptf("map to inode %d: not a regular file", r.Ino)
	}
	for _, m := range r.Maps {
		if _, ok := n.Chunks[m.File]; ok || m.Data >= s.alloc.n || s.alloc.get(m.Data) || m.File > maxFileChunk {
			return errCorruptf("map inode %d chunk %d to %d: mapped, in use or out of range", r.Ino, m.File, m.Data)
		}
		s.alloc.set(m.Data)
		n.Chunks[m.File] = m.Data
	}
	return nil
}

// maxFileSize is the largest file: 2^43 bytes (8 TiB), the most a volume
// can address (2^43 sectors) is far beyond any namespace's data area anyway.
const (
	maxFileSize  = 1 << 43
	maxFileChunk = maxFileSize / chunkSize
)

// validName reports whether name can be a directory entry.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > nameMax {
		return false
	}
	for i := range len(name) {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}

// release ends one open of ino, freeing the inode if it has no name left.
func (s *state) release(ino uint64) {
	s.open[ino]--
	if s.open[ino] > 0 {
		return
	}
	delete(s.open, ino)
	if n := s.inodes[ino]; n != nil && n.Nlink == 0 && ino != rootIno {
		s.drop(n)
	}
}

// takeFreed returns and forgets the chunks freed since the last call.
func (s *state) takeFreed() []uint32 {
	f := s.freed
	s.freed = nil
	return f
}

// check verifies the state's invariants: every entry names a live inode,
// link counts match the entries, every inode other than open nameless ones is
// reachable from the root, and no data chunk is mapped twice or left marked
// without an owner. It is the shim's fsck.
func (s *state) check() error {
	root := s.inodes[rootIno]
	if root == nil || !root.isDir() {
		return errCorruptf("check: no root directory")
	}
	links := map[uint64]uint32{rootIno: 2}
	owner := map[uint32]uint64{}
	for _, ino := range slices.Sorted(maps.Keys(s.inodes)) {
		n := s.inodes[ino]
		if ino >= s.nextIno || n.Ino != ino {
			return errCorruptf("check: inode %d numbered %d, next %d", ino, n.Ino, s.nextIno)
		}
		for name, child := range n.Entries {
			c := s.inodes[child]
			if c == nil || !validName(name) || child == rootIno {
				return errCorruptf("check: entry %d/%q names inode %d, which is missing", ino, name, child)
			}
			if c.isDir() {
				links[child] += 2 // its entry and its "."
				links[ino]++      // its ".."
			} else {
				links[child]++
			}
		}
		for fc, c := range n.Chunks {
			if o, dup := owner[c]; dup || c >= s.alloc.n || !s.alloc.get(c) || fc >= (n.Size+chunkSize-1)/chunkSize {
				return errCorruptf("check: data chunk %d of inode %d (file chunk %d): owned by %d too, unmarked or beyond size %d",
					c, ino, fc, o, n.Size)
			}
			owner[c] = ino
		}
	}
	for ino, n := range s.inodes {
		if orphan := n.Nlink == 0 && s.open[ino] > 0 && links[ino] == 0; links[ino] != n.Nlink && !orphan {
			return errCorruptf("check: inode %d has nlink %d, %d links found", ino, n.Nlink, links[ino])
		}
	}
	if err := s.checkReachable(); err != nil {
		return err
	}
	if used := s.alloc.n - s.alloc.free; int(used) != len(owner) {
		return errCorruptf("check: %d data chunks marked used, %d mapped", used, len(owner))
	}
	return nil
}

// bitmap tracks which data chunks are in use.
type bitmap struct {
	words  []uint64
	n      uint32 // chunks
	free   uint32
	cursor uint32 // next-fit: where the last search ended
}

func newBitmap(n uint32) *bitmap {
	return &bitmap{words: make([]uint64, (uint64(n)+63)/64), n: n, free: n}
}

func (b *bitmap) get(c uint32) bool { return b.words[c/64]&(1<<(c%64)) != 0 }

func (b *bitmap) set(c uint32) {
	if !b.get(c) {
		b.words[c/64] |= 1 << (c % 64)
		b.free--
	}
}

func (b *bitmap) clear(c uint32) {
	if b.get(c) {
		b.words[c/64] &^= 1 << (c % 64)
		b.free++
	}
}

// find returns a free chunk (not marking it), searching from the cursor.
func (b *bitmap) find() (uint32, bool) {
	if b.free == 0 {
		return 0, false
	}
	nw := uint32(len(b.words))
	start := b.cursor / 64
	for i := range nw + 1 {
		w := (start + i) % nw
		word := b.words[w]
		if w == nw-1 && b.n%64 != 0 {
			word |= ^uint64(0) << (b.n % 64) // chunks beyond n are never free
		}
		if word != ^uint64(0) {
			c := w*64 + uint32(bits.TrailingZeros64(^word))
			b.cursor = c + 1
			if b.cursor >= b.n {
				b.cursor = 0
			}
			return c, true
		}
	}
	return 0, false
}

// checkReachable verifies that every inode with a name is reachable from
// the root (a detached cycle of directories has consistent link counts).
func (s *state) checkReachable() error {
	seen := map[uint64]bool{rootIno: true}
	queue := []uint64{rootIno}
	for len(queue) > 0 {
		n := s.inodes[queue[0]]
		queue = queue[1:]
		for _, child := range n.Entries {
			if !seen[child] {
				seen[child] = true
				queue = append(queue, child)
			}
		}
	}
	for ino, n := range s.inodes {
		if !seen[ino] && n.Nlink > 0 {
			return errCorruptf("check: inode %d (nlink %d) is not reachable from the root", ino, n.Nlink)
		}
	}
	return nil
}
