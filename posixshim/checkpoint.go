package posixshim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
)

// A checkpoint is the whole metadata state, written to one of two slots; the
// valid slot with the higher generation is the current one. Its journal
// (records of the same generation) continues it.
//
//	+-------------+-----+-------------+-------+-----+--------------------+
//	| "CFSCKPT1"  | gen | body length | crc   | 0   | body               |
//	| 8 bytes     | u64 | u64         | u32   | u32 | body length bytes  |
//	+-------------+-----+-------------+-------+-----+--------------------+
//
// crc is the CRC-32C of gen, body length and body. The body holds varints:
// the next inode number, the inode count, then each live inode (those with a
// name) in inode order: ino, mode, uid, gid, nlink, rdev, size, atime, mtime,
// ctime, target (length, bytes), chunk count and (file chunk, data chunk)
// pairs in file order, entry count and (name length, name, ino) in name
// order.
const ckptHeader = 32

var ckptMagic = [8]byte{'C', 'F', 'S', 'C', 'K', 'P', 'T', '1'}

// encodeCheckpoint returns the checkpoint of s as generation gen, padded to
// whole sectors.
func encodeCheckpoint(s *state, gen uint64) []byte {
	u := binary.AppendUvarint
	i := binary.AppendVarint
	b := make([]byte, ckptHeader, ckptHeader+64*len(s.inodes))
	b = u(b, s.nextIno)
	live := make([]*inode, 0, len(s.inodes))
	for _, ino := range slices.Sorted(maps.Keys(s.inodes)) {
		if n := s.inodes[ino]; n.Nlink > 0 {
			live = append(live, n)
		}
	}
	b = u(b, uint64(len(live)))
	for _, n := range live {
		b = u(u(u(u(u(u(u(b, n.Ino), uint64(n.Mode)), uint64(n.UID)), uint64(n.GID)), uint64(n.Nlink)), uint64(n.Rdev)), n.Size)
		b = i(i(i(b, n.Atime), n.Mtime), n.Ctime)
		b = append(u(b, uint64(len(n.Target))), n.Target...)
		b = u(b, uint64(len(n.Chunks)))
		for _, fc := range slices.Sorted(maps.Keys(n.Chunks)) {
			b = u(u(b, fc), uint64(n.Chunks[fc]))
		}
		b = u(b, uint64(len(n.Entries)))
		for _, name := range slices.Sorted(maps.Keys(n.Entries)) {
			b = u(append(u(b, uint64(len(name))), name...), n.Entries[name])
		}
	}
	copy(b, ckptMagic[:])
	binary.LittleEndian.PutUint64(b[8:], gen)
	binary.LittleEndian.PutUint64(b[16:], uint64(len(b)-ckptHeader))
	crc := crc32.Update(crc32.Checksum(b[8:24], castagnoli), castagnoli, b[ckptHeader:])
	binary.LittleEndian.PutUint32(b[24:], crc)
	return append(b, make([]byte, int(roundUp(uint64(len(b)), sectorSize))-len(b))...)
}

// checkpointLen returns the total length (header and body) of the
// checkpoint whose header opens b, or 0 if b opens no checkpoint.
func checkpointLen(b []byte) uint64 {
	if len(b) < ckptHeader || !bytes.Equal(b[:8], ckptMagic[:]) {
		return 0
	}
	return ckptHeader + binary.LittleEndian.Uint64(b[16:])
}

// decodeCheckpoint decodes the checkpoint opening b into a state with the
// given number of data chunks, and returns it with its generation. The
// state passes check. Errors wrap ErrCorrupt.
func decodeCheckpoint(b []byte, chunks uint32) (*state, uint64, error) {
	n := checkpointLen(b)
	if n == 0 || n > uint64(len(b)) || n < ckptHeader {
		return nil, 0, fmt.Errorf("checkpoint: no header or length beyond the slot: %w", ErrCorrupt)
	}
	gen := binary.LittleEndian.Uint64(b[8:])
	crc := crc32.Update(crc32.Checksum(b[8:24], castagnoli), castagnoli, b[ckptHeader:n])
	if want := binary.LittleEndian.Uint32(b[24:]); crc != want {
		return nil, 0, fmt.Errorf("checkpoint gen %d: crc %08x != %08x: %w", gen, crc, want, ErrCorrupt)
	}
	s, err := decodeBody(&decoder{b: b[ckptHeader:n]}, chunks)
	if err != nil {
		return nil, 0, fmt.Errorf("checkpoint gen %d: %w", gen, err)
	}
	return s, gen, nil
}

func decodeBody(d *decoder, chunks uint32) (*state, error) {
	s := emptyState(chunks)
	s.nextIno = d.u("next ino")
	count := d.u("inode count")
	for range count {
		if d.err != nil {
			break
		}
		n, err := decodeInode(d, s)
		if err != nil {
			return nil, err
		}
		if s.inodes[n.Ino] != nil {
			return nil, fmt.Errorf("inode %d twice: %w", n.Ino, ErrCorrupt)
		}
		s.inodes[n.Ino] = n
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

func decodeInode(d *decoder, s *state) (*inode, error) {
	n := &inode{Ino: d.u("ino"), Mode: d.u32("mode"), UID: d.u32("uid"), GID: d.u32("gid"), Nlink: d.u32("nlink"),
		Rdev: d.u32("rdev"), Size: d.u("size"), Atime: d.i("atime"), Mtime: d.i("mtime"), Ctime: d.i("ctime"),
		Target: d.s("target", pathMax)}
	if nc := d.u("chunk count"); nc > 0 || n.isReg() {
		if !n.isReg() || nc > uint64(s.alloc.n) {
			d.fail("chunk count")
			return nil, d.err
		}
		n.Chunks = make(map[uint64]uint32, nc)
		for range nc {
			fc, c := d.u("file chunk"), d.u32("data chunk")
			if d.err != nil || c >= s.alloc.n || s.alloc.get(c) {
				return nil, fmt.Errorf("inode %d: data chunk %d twice or out of range: %w", n.Ino, c, ErrCorrupt)
			}
			n.Chunks[fc] = c
			s.alloc.set(c)
		}
	}
	if ne := d.u("entry count"); ne > 0 || n.isDir() {
		if !n.isDir() || ne > uint64(len(d.b)) {
			d.fail("entry count")
			return nil, d.err
		}
		n.Entries = make(map[string]uint64, ne)
		for range ne {
			name := d.s("name", nameMax)
			n.Entries[name] = d.u("entry ino")
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return n, nil
}
