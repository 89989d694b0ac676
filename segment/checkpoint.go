package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"time"

	"cloudfs/segment/extent"
)

// A checkpoint is the index at one log position P: segment accounting,
// volumes (chain state, runs, extent maps) and snapshots. Its body is written
// into the log as checkpoint records, then a slot points at it; recovery loads
// it and rolls forward from P. See docs/FORMAT.md "Checkpoint body".

// ckptMagic starts the checkpoint bodies this code writes (version 2: each
// volume carries its fence and epoch lsn); ckptMagicV1 starts those of
// earlier builds, which are still read (their volumes have neither).
var (
	ckptMagic   = [8]byte{'C', 'F', 'C', 'K', 'B', 'O', 'D', '2'}
	ckptMagicV1 = [8]byte{'C', 'F', 'C', 'K', 'B', 'O', 'D', 'Y'}
)

// Checkpoint writes a checkpoint now. It is safe to call at any time; the
// background goroutine calls it every CheckpointInterval or CheckpointBytes.
func (s *Store) Checkpoint() error {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closing.Load() {
		return ErrClosed
	}
	return s.checkpoint()
}

func (s *Store) checkpoint() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	if err := s.failure(); err != nil {
		return err
	}
	start := time.Now()
	s.mu.Lock()
	s.dropReleasedLocked()
	s.mu.Unlock()
	s.mu.RLock()
	gen := s.ckptGen + 1
	replay := s.applied
	body := s.encodeCheckpointLocked(gen, replay)
	s.mu.RUnlock()

	o := &op{kind: opCheckpoint, sync: true, recs: checkpointRecords(body, gen)}
	if err := s.runInternal(o); err != nil {
		return fmt.Errorf("checkpoint %d: %w", gen, err)
	}
	sl := slot{Generation: gen, BodyAddr: o.recs[0].addr, BodyGSeq: o.recs[0].h.GSeq, BodyChunks: uint32(len(o.recs)),
		BodyBytes: uint64(len(body)), BodyCRC: crc32.Checksum(body, crcTable), ReplayAddr: s.addr(replay.seg, replay.off), ReplayGSeq: replay.gseq}
	if err := s.writeSlot(&sl); err != nil {
		return s.fail(fmt.Errorf("checkpoint %d: %w", gen, err))
	}
	segs := map[uint32]bool{}
	for _, r := range o.recs {
		segs[s.segOf(r.addr)] = true
	}
	s.mu.Lock()
	s.ckptDurableLocked(gen, segs, int64(len(body)))
	s.mu.Unlock()
	s.met.checkpoints.Inc()
	s.met.checkpointSec.Observe(time.Since(start).Seconds())
	s.log.Debug("checkpoint written", "generation", gen, "bytes", len(body), "took", time.Since(start))
	return nil
}

// runInternal runs an op of the store's own (checkpoint, cleaner) even while
// Close drains: it goes straight to the writer.
func (s *Store) runInternal(o *op) error {
	ch := make(chan error, 1)
	o.done = func(err error) { ch <- err }
	if s.writerGone {
		// Close's final checkpoint: the writer has exited, so this goroutine
		// is the only one writing.
		s.commit([]*op{o})
	} else {
		s.ops <- o
	}
	return <-ch
}

func (s *Store) writeSlot(sl *slot) error {
	off := int64(slotAOff)
	if sl.Generation%2 == 0 {
		off = slotBOff
	}
	if _, err := s.dev.WriteAt(sl.encode(s.sb.UUID), off); err != nil {
		return fmt.Errorf("write slot at %d: %w", off, err)
	}
	if err := s.dev.Sync(); err != nil {
		return fmt.Errorf("sync slot: %w", err)
	}
	return nil
}

// ckptDurableLocked records that checkpoint gen, whose body is in segs, is
// durable: segments emptied before it are free now.
func (s *Store) ckptDurableLocked(gen uint64, segs map[uint32]bool, bodyBytes int64) {
	s.ckptGen, s.ckptSegs, s.ckptBytes = gen, segs, bodyBytes
	s.logSinceCkpt, s.lastCkptTime = 0, time.Now()
	for i := range s.segs {
		g := &s.segs[i]
		if g.state == segPending && g.emptiedAt < gen && !segs[uint32(i)] {
			g.state = segFree
			s.pendingFree--
			s.freeSegs++
		}
	}
}

// ckptSegmentsLocked is how many segments the next checkpoint may need: the
// larger of the last checkpoint's body and the body the state applied now
// would make, and half again for what is planned meanwhile. (The last body
// alone under-reserved after a burst of volumes and extents, and Close
// then failed its checkpoint with ErrNoSpace.)
func (s *Store) ckptSegmentsLocked() int {
	n := max(s.ckptBytes, s.ckptEst)
	return int((n+n/2)/s.sb.SegmentSize) + 1
}

// ckptBodySizeLocked is the size encodeCheckpointLocked would give the body
// now, computed without encoding it: O(volumes + snapshots + segments).
func (s *Store) ckptBodySizeLocked() int64 {
	const idSize, mapHeader, extentItem = 20, 8, 16
	n := int64(len(ckptMagic)) + 8 + 8 + 4 + int64(len(s.segs))*(1+8+8+8) + 4 + 4
	for _, sn := range s.cat.snapshots() {
		n += 3*idSize + 8 + 8 + mapHeader + extentItem*int64(sn.m.Len())
	}
	for _, v := range s.cat.volumes() {
		n += 4*idSize + 4*8 + 1 + 2*8 + 4 + 20*int64(len(v.runs)) + 4 + 8*int64(len(v.hdrs)) +
			mapHeader + extentItem*int64(v.m.Len())
	}
	return n
}

// checkpointRecords cuts a body into records of at most MaxEntrySectors.
func checkpointRecords(body []byte, gen uint64) []*rec {
	var recs []*rec
	for i := 0; len(body) > 0; i++ {
		n := min(len(body), MaxEntrySectors*SectorSize)
		chunk := body[:n]
		pad := (SectorSize - n%SectorSize) % SectorSize
		pieces := [][]byte{chunk}
		if pad > 0 {
			pieces = append(pieces, make([]byte, pad))
		}
		r := &rec{h: Header{Kind: KindCheckpoint, Aux: gen, LSN: uint64(i), NBody: uint32((n + pad) / SectorSize)}, body: pieces}
		r.bodyCRC = bodyCRC(pieces)
		r.h.sealSum(r.bodyCRC, make([]byte, HeaderSize))
		recs = append(recs, r)
		body = body[n:]
	}
	return recs
}

// enc is a little-endian append encoder.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) id(v ID)      { e.b = append(e.b, v[:]...) }

func (s *Store) encodeCheckpointLocked(gen uint64, replay writerPos) []byte {
	e := &enc{}
	e.b = append(e.b, ckptMagic[:]...)
	e.u64(gen)
	e.u64(replay.segSq)
	e.u32(uint32(len(s.segs)))
	for i := range s.segs {
		g := &s.segs[i]
		state, live := g.state, g.live
		if g.state != segFree && g.seq >= replay.segSq {
			// allocated by a batch planned after the replay position: as of
			// that position it is free, and roll-forward allocates it again
			state, live = segFree, 0
		}
		e.u8(uint8(state))
		e.u64(g.seq)
		e.u64(uint64(live))
		e.u64(g.emptiedAt)
	}
	snaps := snapshotsParentsFirst(s.cat.snapshots())
	e.u32(uint32(len(snaps)))
	for _, sn := range snaps {
		e.id(sn.version)
		e.id(sn.owner)
		e.id(versionOf(sn.parent))
		e.u64(sn.lsn)
		e.u64(sn.size)
		e.b = sn.m.AppendBinary(e.b)
	}
	vols := s.cat.volumes()
	e.u32(uint32(len(vols)))
	for _, v := range vols {
		s.encodeVolume(e, v)
	}
	return e.b
}

func (s *Store) encodeVolume(e *enc, v *volume) {
	e.id(v.base)
	e.id(versionOf(v.parent))
	e.id(v.head)
	e.id(v.entropy)
	e.u64(v.size)
	e.u64(uint64(v.created))
	e.u64(v.lsn)
	e.u64(v.epoch)
	if v.owned {
		e.u8(1)
	} else {
		e.u8(0)
	}
	e.u64(v.fence)
	e.u64(v.epochLSN)
	e.u32(uint32(len(v.runs)))
	for _, r := range v.runs {
		e.u64(r.first)
		e.u64(r.last)
		e.u32(r.seg)
	}
	e.u32(uint32(len(v.hdrs)))
	for _, seg := range slices.Sorted(maps.Keys(v.hdrs)) { // same state, same bytes
		e.u32(seg)
		e.u32(uint32(v.hdrs[seg]))
	}
	e.b = v.m.AppendBinary(e.b)
}

func versionOf(sn *snapshot) ID {
	if sn == nil {
		return ID{}
	}
	return sn.version
}

// snapshotsParentsFirst orders snapshots so that each comes after its parent.
func snapshotsParentsFirst(all []*snapshot) []*snapshot {
	seen := map[*snapshot]bool{}
	var out []*snapshot
	var visit func(sn *snapshot)
	visit = func(sn *snapshot) {
		if sn == nil || seen[sn] {
			return
		}
		seen[sn] = true
		visit(sn.parent)
		out = append(out, sn)
	}
	for _, sn := range all {
		visit(sn)
	}
	return out
}

// dec is a little-endian decoder that records the first error (truncation).
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		if d.err == nil {
			d.err = fmt.Errorf("checkpoint body: truncated: %w", ErrCorrupt)
		}
		return make([]byte, n)
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}
func (d *dec) u8() uint8   { return d.take(1)[0] }
func (d *dec) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *dec) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
func (d *dec) id() ID      { return ID(d.take(IDSize)) }

// count reads an element count and checks the input can hold that many
// elements of at least min bytes each.
func (d *dec) count(min int) int {
	n := int(d.u32())
	if d.err == nil && n > len(d.b)/min {
		d.err = fmt.Errorf("checkpoint body: count %d exceeds the input: %w", n, ErrCorrupt)
		return 0
	}
	return n
}

func (d *dec) extentMap() *extent.Map {
	if d.err != nil {
		return extent.New()
	}
	m, rest, err := extent.Decode(d.b)
	if err != nil {
		d.err = fmt.Errorf("checkpoint body: %w: %w", err, ErrCorrupt)
		return extent.New()
	}
	d.b = rest
	return m
}

// ckptState is a decoded checkpoint body.
type ckptState struct {
	gen   uint64
	segSq uint64
	segs  []segInfo
	snaps []*snapshot
	vols  []*volume
}

// decodeCheckpoint parses a checkpoint body for a store of nsegs segments.
// Every inconsistency is ErrCorrupt; it never panics on any input.
func decodeCheckpoint(b []byte, nsegs int) (*ckptState, error) {
	if len(b) < 8 || [8]byte(b[:8]) != ckptMagic && [8]byte(b[:8]) != ckptMagicV1 {
		return nil, fmt.Errorf("checkpoint body: bad magic: %w", ErrCorrupt)
	}
	v1 := [8]byte(b[:8]) == ckptMagicV1
	d := &dec{b: b[8:]}
	st := &ckptState{gen: d.u64(), segSq: d.u64()}
	if n := d.count(25); n != nsegs {
		return nil, fmt.Errorf("checkpoint body: %d segments, store has %d: %w", n, nsegs, ErrCorrupt)
	}
	st.segs = make([]segInfo, nsegs)
	for i := range st.segs {
		g := &st.segs[i]
		g.state, g.seq, g.live, g.emptiedAt = segState(d.u8()), d.u64(), int64(d.u64()), d.u64()
		if d.err == nil && (g.state > segPending || g.live < 0) {
			return nil, fmt.Errorf("checkpoint body: segment %d state %d live %d: %w", i, g.state, g.live, ErrCorrupt)
		}
	}
	snaps := map[ID]*snapshot{}
	n := d.count(2*IDSize + 8)
	for i := 0; i < n && d.err == nil; i++ {
		sn := &snapshot{version: d.id(), owner: d.id()}
		parent := d.id()
		sn.lsn, sn.size, sn.m = d.u64(), d.u64(), d.extentMap()
		if err := linkParent(snaps, parent, &sn.parent); err != nil || snaps[sn.version] != nil {
			return nil, fmt.Errorf("checkpoint body: snapshot %v: duplicate or unknown parent: %w", sn.version, ErrCorrupt)
		}
		snaps[sn.version] = sn
		st.snaps = append(st.snaps, sn)
	}
	n = d.count(4*IDSize + 8)
	seen := map[ID]bool{}
	for i := 0; i < n && d.err == nil; i++ {
		v, err := decodeVolume(d, snaps, nsegs, v1)
		if err != nil {
			return nil, err
		}
		if seen[v.base] {
			return nil, fmt.Errorf("checkpoint body: volume %v listed twice: %w", v.base, ErrCorrupt)
		}
		seen[v.base] = true
		st.vols = append(st.vols, v)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("checkpoint body: %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return st, d.err
}

func linkParent(snaps map[ID]*snapshot, version ID, dst **snapshot) error {
	if version.IsZero() {
		return nil
	}
	if *dst = snaps[version]; *dst == nil {
		return ErrCorrupt
	}
	(*dst).refs++
	return nil
}

// decodeVolume decodes a volume of a checkpoint body; v1: of version 1, which
// has no fence nor epoch lsn.
func decodeVolume(d *dec, snaps map[ID]*snapshot, nsegs int, v1 bool) (*volume, error) {
	v := &volume{base: d.id(), hdrs: map[uint32]int32{}}
	parent := d.id()
	v.head, v.entropy = d.id(), d.id()
	v.size, v.created, v.lsn, v.epoch = d.u64(), int64(d.u64()), d.u64(), d.u64()
	v.owned = d.u8() == 1
	if v1 {
		v.epochLSN = min(v.lsn, 1) // version 1 knew one epoch per volume
	} else {
		v.fence, v.epochLSN = d.u64(), d.u64()
	}
	// a fence above the epoch leaves the volume without an owner here
	v.owned = v.owned && v.epoch >= v.fence
	bad := func(what string) error {
		return fmt.Errorf("checkpoint body: volume %v: %s: %w", v.base, what, ErrCorrupt)
	}
	if err := linkParent(snaps, parent, &v.parent); err != nil {
		return nil, bad("unknown parent")
	}
	if v.epochLSN > v.lsn {
		return nil, bad(fmt.Sprintf("epoch from lsn %d after lsn %d", v.epochLSN, v.lsn))
	}
	nr := d.count(20)
	for j := 0; j < nr && d.err == nil; j++ {
		r := run{first: d.u64(), last: d.u64(), seg: d.u32()}
		if r.first > r.last || int(r.seg) >= nsegs || (len(v.runs) > 0 && v.runs[len(v.runs)-1].last >= r.first) {
			return nil, bad("bad lsn runs")
		}
		v.runs = append(v.runs, r)
	}
	nh := d.count(8)
	for j := 0; j < nh && d.err == nil; j++ {
		seg, c := d.u32(), int32(d.u32())
		if int(seg) >= nsegs || c <= 0 {
			return nil, bad("bad header counts")
		}
		v.hdrs[seg] = c
	}
	v.m = d.extentMap()
	return v, d.err
}
