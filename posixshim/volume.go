package posixshim

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// volFS is the namespace of one volume: the metadata state in memory, its
// journal and checkpoints on the volume, and file data in data chunks.
//
// Every change is written to the volume before it changes the state in
// memory: data first (new data in newly allocated chunks, overwrites in
// place), then one journal write carrying the records that make it visible.
// Because the volume keeps a prefix of its acknowledged writes after a crash,
// a record is never durable before the data it points to, and a chunk freed
// by a record is reused only after that record was written.
//
// Methods are safe for concurrent use: reads share mu, changes hold it
// exclusively.
type volFS struct {
	id   string
	disk Disk
	sb   *superblock
	log  *slog.Logger
	now  func() int64

	mu  sync.RWMutex
	st  *state
	gen uint64 // generation of the current checkpoint and journal
	seq uint64 // next frame's sequence number
	// jtail is the journal's length; jpart holds the bytes of its last,
	// partial sector (the next journal write rewrites that sector).
	jtail int64
	jpart []byte
	// dirty holds the inodes whose mtime changed by an overwrite that wrote
	// no record; their times are journaled at flush, fsync or close.
	dirty map[uint64]bool
	// changed: this mount wrote to the journal (close then checkpoints).
	changed bool
	// broken is set when the state in memory no longer matches the volume
	// (a record that could not apply): every later change fails with it.
	broken error
}

// openVolFS mounts the namespace on d, formatting d first if it is blank.
// Errors wrap ErrForeign, ErrCorrupt, ErrUnsupported, ErrTooSmall or the
// Disk's errors.
func openVolFS(id string, d Disk, log *slog.Logger) (*volFS, error) {
	v := &volFS{id: id, disk: d, log: log, now: func() int64 { return time.Now().UnixNano() }, dirty: map[uint64]bool{}}
	block := make([]byte, 4096)
	if _, err := d.ReadAt(block, 0); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	if allZero(block) {
		blank, err := isBlank(d)
		if err != nil {
			return nil, err
		}
		if !blank {
			return nil, fmt.Errorf("first block is zero but the volume holds data: %w", ErrForeign)
		}
		if err := v.format(); err != nil {
			return nil, fmt.Errorf("format: %w", err)
		}
		log.Info("namespace formatted", "data_chunks", v.sb.DataChunks)
		return v, nil
	}
	sb, err := decodeSuperblock(block, d.Size())
	if err != nil {
		return nil, err
	}
	v.sb = sb
	if err := v.load(); err != nil {
		return nil, err
	}
	log.Info("namespace mounted", "gen", v.gen, "records", v.seq, "inodes", len(v.st.inodes))
	return v, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// blankProbe is how much of each end of a volume must read as zeros for a
// Disk without Blanker to count as blank: partition tables and file system
// superblocks live there.
const blankProbe = 1 << 20

func isBlank(d Disk) (bool, error) {
	if b, ok := d.(Blanker); ok {
		return b.Blank()
	}
	size := d.Size()
	buf := make([]byte, min(size, blankProbe))
	for _, off := range []int64{0, size - int64(len(buf))} {
		if _, err := d.ReadAt(buf, off); err != nil {
			return false, fmt.Errorf("probe for data at %d: %w", off, err)
		}
		if !allZero(buf) {
			return false, nil
		}
	}
	return true, nil
}

// format writes an empty namespace: the checkpoint first, the superblock
// last, so that a volume with a superblock always has a checkpoint.
func (v *volFS) format() error {
	sb, err := newSuperblock(v.disk.Size())
	if err != nil {
		return err
	}
	rand.Read(sb.UUID[:])
	sb.Created = v.now()
	v.sb, v.st = sb, newState(sb.DataChunks, sb.Created, 0 /* uid */, 0 /* gid */)
	if err := v.checkpoint(); err != nil {
		return err
	}
	block := make([]byte, sectorSize)
	copy(block, sb.encode())
	if _, err := v.disk.WriteAt(block, 0); err != nil {
		return fmt.Errorf("write superblock: %w", err)
	}
	return v.disk.Flush()
}

// load reads the newest valid checkpoint and replays its journal.
func (v *volFS) load() error {
	var errs []error
	for slot := range 2 {
		st, gen, err := v.readCheckpoint(slot)
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", slot, err))
			continue
		}
		if v.st == nil || gen > v.gen {
			v.st, v.gen = st, gen
		}
	}
	if v.st == nil {
		return fmt.Errorf("no valid checkpoint: %w", errors.Join(errs...))
	}
	return v.replay()
}

func (v *volFS) readCheckpoint(slot int) (*state, uint64, error) {
	off := int64(v.sb.Slot[slot])
	head := make([]byte, 4096)
	if _, err := v.disk.ReadAt(head, off); err != nil {
		return nil, 0, err
	}
	n := checkpointLen(head)
	if n == 0 {
		return nil, 0, fmt.Errorf("no checkpoint: %w", ErrCorrupt)
	}
	if n > v.sb.SlotSize {
		return nil, 0, fmt.Errorf("checkpoint of %d bytes in a slot of %d: %w", n, v.sb.SlotSize, ErrCorrupt)
	}
	buf := make([]byte, roundUp(n, sectorSize))
	if _, err := v.disk.ReadAt(buf, off); err != nil {
		return nil, 0, err
	}
	return decodeCheckpoint(buf, v.sb.DataChunks)
}

// replayWindow is how much of the journal replay reads at a time.
const replayWindow = 1 << 20

// replay applies the journal frames of the current generation, stopping at
// the first frame that is torn, stale or absent, and positions the journal's
// tail there.
func (v *volFS) replay() error {
	var buf []byte
	var read, pos int64 // bytes of the journal read, and consumed
	jlen := int64(v.sb.JournalLen)
	for {
		for int64(len(buf)) < frameHeader+maxRecordLen && read < jlen {
			chunk := make([]byte, min(replayWindow, jlen-read))
			if _, err := v.disk.ReadAt(chunk, int64(v.sb.JournalOff)+read); err != nil {
				return fmt.Errorf("read journal at %d: %w", read, err)
			}
			buf, read = append(buf, chunk...), read+int64(len(chunk))
		}
		payload, n, ok := nextFrame(buf, v.gen, v.seq)
		if !ok {
			break
		}
		r, err := decodeRecord(payload)
		if err == nil {
			err = v.st.apply(r)
		}
		if err != nil {
			return fmt.Errorf("journal gen %d record %d at %d: %w", v.gen, v.seq, pos, err)
		}
		v.seq++
		buf, pos = buf[n:], pos+int64(n)
	}
	v.st.takeFreed()
	if err := v.st.check(); err != nil {
		return fmt.Errorf("after replaying %d records: %w", v.seq, err)
	}
	v.jtail = pos
	v.jpart = nil
	if part := pos % sectorSize; part != 0 {
		sector := make([]byte, sectorSize)
		if _, err := v.disk.ReadAt(sector, int64(v.sb.JournalOff)+pos-part); err != nil {
			return fmt.Errorf("read journal tail: %w", err)
		}
		v.jpart = sector[:part]
	}
	return nil
}

// checkpoint writes the state as the next generation into the other slot
// and starts that generation's journal. Caller holds mu (or owns v).
func (v *volFS) checkpoint() error {
	gen := v.gen + 1
	b := encodeCheckpoint(v.st, gen)
	if uint64(len(b)) > v.sb.SlotSize {
		return fmt.Errorf("checkpoint of %d bytes exceeds its slot of %d: %w", len(b), v.sb.SlotSize, ErrNoSpace)
	}
	if _, err := v.disk.WriteAt(b, int64(v.sb.Slot[gen%2])); err != nil {
		return fmt.Errorf("write checkpoint %d: %w", gen, err)
	}
	v.gen, v.seq, v.jtail, v.jpart = gen, 0, 0, nil
	return nil
}

// do writes recs to the journal in one write and then applies them. If the
// write fails nothing changed. Caller holds mu exclusively.
func (v *volFS) do(recs ...*record) error {
	if v.broken != nil {
		return v.broken
	}
	frames := v.frames(recs)
	if v.jtail+int64(len(frames)) > int64(v.sb.JournalLen) {
		if err := v.checkpoint(); err != nil {
			return err
		}
		frames = v.frames(recs)
		if int64(len(frames)) > int64(v.sb.JournalLen) {
			return fmt.Errorf("records of %d bytes: %w", len(frames), ErrNoSpace)
		}
	}
	start := v.jtail - int64(len(v.jpart))
	buf := append(append([]byte(nil), v.jpart...), frames...)
	buf = append(buf, make([]byte, int(roundUp(uint64(len(buf)), sectorSize))-len(buf))...)
	if _, err := v.disk.WriteAt(buf, int64(v.sb.JournalOff)+start); err != nil {
		return err
	}
	v.seq += uint64(len(recs))
	v.changed = true
	v.jtail += int64(len(frames))
	v.jpart = bytes.Clone(buf[v.jtail-start-v.jtail%sectorSize : v.jtail-start])
	for _, r := range recs {
		if err := v.st.apply(r); err != nil {
			v.broken = fmt.Errorf("volume %s: journaled record does not apply: %w", v.id, err)
			v.log.Error("namespace broken: remount it", "err", v.broken)
			return v.broken
		}
	}
	v.reclaim(v.st.takeFreed())
	return nil
}

// frames encodes recs as the next frames of the journal.
func (v *volFS) frames(recs []*record) []byte {
	var b []byte
	for i, r := range recs {
		b = appendFrame(b, v.gen, v.seq+uint64(i), r.encode(nil))
	}
	return b
}

// reclaim gives the space of freed data chunks back to the store. It runs
// under mu, before the chunks can be allocated again.
func (v *volFS) reclaim(chunks []uint32) {
	z, ok := v.disk.(Zeroer)
	if !ok {
		return
	}
	for _, c := range chunks {
		if err := z.WriteZeroes(v.sb.chunkOff(c), chunkSize); err != nil {
			v.log.Warn("reclaim of a freed chunk failed", "chunk", c, "err", err)
			return
		}
	}
}

// close journals pending times, writes a checkpoint (so the next mount
// replays nothing) and flushes.
func (v *volFS) close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.commitTimes(nil); err != nil {
		return err
	}
	if v.broken == nil && v.changed {
		if err := v.checkpoint(); err != nil {
			return err
		}
	}
	return v.disk.Flush()
}
