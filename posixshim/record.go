package posixshim

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Journal record kinds. A record describes one change of the metadata; the
// same apply function runs it live and at replay, so the two cannot drift.
const (
	recCreate  = 1 // new inode, linked into a directory
	recLink    = 2 // another name for an inode
	recUnlink  = 3 // remove a name (file or empty directory)
	recRename  = 4 // move a name, replacing or exchanging the target
	recSetattr = 5 // mode, owner, size, times
	recMap     = 6 // file chunks now live in data chunks (their data is written)
)

// Setattr mask bits.
const (
	attrMode = 1 << iota
	attrUID
	attrGID
	attrSize
	attrAtime
	attrMtime
	attrCtime
)

// Rename flags, as renameat2(2).
const (
	renameNoReplace = 1
	renameExchange  = 2
)

// chunkMap maps file chunk File (byte offset File*chunkSize) to data chunk Data.
type chunkMap struct {
	File uint64
	Data uint32
}

// record is one decoded journal record. Which fields mean something depends
// on Kind; Time is the time of the change (the ctime it sets).
type record struct {
	Kind              uint8
	Ino               uint64
	Parent, Parent2   uint64
	Mode, UID, GID    uint32
	Rdev, Flags, Mask uint32
	Size              uint64
	Atime, Mtime      int64
	Time              int64
	Name, Name2       string // Name2: rename's new name, or a symlink's target at create
	Maps              []chunkMap
}

// maxRecordLen bounds one record's payload: a name is at most 255 bytes and
// a symlink target 4096, and a map record carries at most maxMapsPerRecord
// pairs of at most 15 bytes.
const (
	maxMapsPerRecord = 4096
	maxRecordLen     = 64 << 10
)

// encode appends the record's payload to b.
func (r *record) encode(b []byte) []byte {
	u := binary.AppendUvarint
	i := binary.AppendVarint
	s := func(b []byte, v string) []byte { return append(u(b, uint64(len(v))), v...) }
	b = append(b, r.Kind)
	switch r.Kind {
	case recCreate:
		b = u(u(u(u(u(u(b, r.Ino), r.Parent), uint64(r.Mode)), uint64(r.UID)), uint64(r.GID)), uint64(r.Rdev))
		b = s(s(i(b, r.Time), r.Name), r.Name2)
	case recLink:
		b = s(i(u(u(b, r.Ino), r.Parent), r.Time), r.Name)
	case recUnlink:
		b = s(i(u(b, r.Parent), r.Time), r.Name)
	case recRename:
		b = s(s(i(u(u(u(b, r.Parent), r.Parent2), uint64(r.Flags)), r.Time), r.Name), r.Name2)
	case recSetattr:
		b = u(u(u(u(u(u(b, r.Ino), uint64(r.Mask)), uint64(r.Mode)), uint64(r.UID)), uint64(r.GID)), r.Size)
		b = i(i(i(b, r.Atime), r.Mtime), r.Time)
	case recMap:
		b = u(u(b, r.Ino), uint64(len(r.Maps)))
		for _, m := range r.Maps {
			b = u(u(b, m.File), uint64(m.Data))
		}
	}
	return b
}

// decoder reads varints from a payload, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: truncated or malformed: %w", what, ErrCorrupt)
	}
}

func (d *decoder) u(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32(what string) uint32 {
	v := d.u(what)
	if v > 1<<32-1 {
		d.fail(what)
	}
	return uint32(v)
}

func (d *decoder) i(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) s(what string, limit int) string {
	n := d.u(what)
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail(what)
		d.b = nil
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

// Limits of names, as Linux's NAME_MAX and PATH_MAX.
const (
	nameMax = 255
	pathMax = 4096
)

// decodeRecord decodes one record payload. Errors wrap ErrCorrupt.
func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("record: empty: %w", ErrCorrupt)
	}
	r := &record{Kind: b[0]}
	d := &decoder{b: b[1:]}
	switch r.Kind {
	case recCreate:
		r.Ino, r.Parent, r.Mode, r.UID = d.u("ino"), d.u("parent"), d.u32("mode"), d.u32("uid")
		r.GID, r.Rdev, r.Time = d.u32("gid"), d.u32("rdev"), d.i("time")
		r.Name, r.Name2 = d.s("name", nameMax), d.s("target", pathMax)
	case recLink:
		r.Ino, r.Parent, r.Time, r.Name = d.u("ino"), d.u("parent"), d.i("time"), d.s("name", nameMax)
	case recUnlink:
		r.Parent, r.Time, r.Name = d.u("parent"), d.i("time"), d.s("name", nameMax)
	case recRename:
		r.Parent, r.Parent2, r.Flags, r.Time = d.u("parent"), d.u("parent2"), d.u32("flags"), d.i("time")
		r.Name, r.Name2 = d.s("name", nameMax), d.s("name2", nameMax)
	case recSetattr:
		r.Ino, r.Mask, r.Mode, r.UID = d.u("ino"), d.u32("mask"), d.u32("mode"), d.u32("uid")
		r.GID, r.Size = d.u32("gid"), d.u("size")
		r.Atime, r.Mtime, r.Time = d.i("atime"), d.i("mtime"), d.i("time")
	case recMap:
		r.Ino = d.u("ino")
		n := d.u("count")
		if n > maxMapsPerRecord {
			d.fail("count")
			n = 0
		}
		r.Maps = make([]chunkMap, 0, n)
		for range n {
			r.Maps = append(r.Maps, chunkMap{File: d.u("file chunk"), Data: d.u32("data chunk")})
		}
	default:
		return nil, fmt.Errorf("record: kind %d: %w", r.Kind, ErrCorrupt)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, fmt.Errorf("record kind %d: %w", r.Kind, d.err)
	}
	return r, nil
}

// A frame carries one record in the journal:
//
//	+-------+--------+-----+-----+---------------+
//	| crc   | length | gen | seq | payload       |
//	| u32   | u32    | u64 | u64 | length bytes  |
//	+-------+--------+-----+-----+---------------+
//
// crc is the CRC-32C of everything after it. gen is the generation of the
// checkpoint the journal continues; seq counts the frames of a generation
// from 0. Replay stops at the first frame that is short, fails its crc, or
// has another gen or seq: that is the torn or stale tail.
const frameHeader = 24

// appendFrame appends the frame of payload p to b.
func appendFrame(b []byte, gen, seq uint64, p []byte) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = append(b, p...)
	binary.LittleEndian.PutUint32(b[start:], crc32.Checksum(b[start+4:], castagnoli))
	return b
}

// nextFrame decodes the frame at the start of b if it is valid for gen and
// seq, returning its payload and length; ok is false at the end of the
// journal.
func nextFrame(b []byte, gen, seq uint64) (payload []byte, n int, ok bool) {
	if len(b) < frameHeader {
		return nil, 0, false
	}
	le := binary.LittleEndian
	length := le.Uint32(b[4:])
	if length == 0 || length > maxRecordLen || uint64(len(b)-frameHeader) < uint64(length) ||
		le.Uint64(b[8:]) != gen || le.Uint64(b[16:]) != seq {
		return nil, 0, false
	}
	n = frameHeader + int(length)
	if crc32.Checksum(b[4:n], castagnoli) != le.Uint32(b) {
		return nil, 0, false
	}
	return b[frameHeader:n], n, true
}
