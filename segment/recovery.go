package segment

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"cloudfs/segment/device"
)

// recover loads the newest valid checkpoint and rolls the log forward from it,
// verifying every record's header crc, body sum and chain link, and stops at
// the first record that does not verify: the end of the log.
func (s *Store) recover() error {
	sbBuf := device.AlignedBuf(3 * BlockSize)
	if _, err := s.dev.ReadAt(sbBuf, 0); err != nil {
		return fmt.Errorf("open: read superblock: %w", err)
	}
	sb, err := DecodeSuperblock(sbBuf)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if sb.DeviceSize > s.dev.Size() {
		return fmt.Errorf("open: store of %d bytes on a device of %d: %w", sb.DeviceSize, s.dev.Size(), ErrCorrupt)
	}
	s.sb = sb
	s.cat = newCatalog()
	s.segs = make([]segInfo, sb.Segments)
	sl, err := s.newestSlot(sbBuf)
	if err != nil {
		return err
	}
	if sl.Generation == 0 {
		s.applied = writerPos{seg: 0, off: 0, gseq: 1, segSq: 1}
		s.ckptSegs = map[uint32]bool{}
	} else if err := s.loadCheckpoint(sl); err != nil {
		return err
	}
	s.w = s.applied
	s.segs[s.w.seg].state = segActive
	if sl.Generation == 0 {
		s.segs[0].seq = 0
	}
	s.countFree()
	start := time.Now()
	n, err := s.rollForward()
	if err != nil {
		return err
	}
	s.recovery.Records, s.recovery.Took = n, time.Since(start)
	s.log.Info("log rolled forward", "records", n, "took", time.Since(start))
	s.w = s.applied
	s.restoreTokens()
	return nil
}

// newestSlot returns the valid slot of the highest generation. A slot that
// does not verify is one whose write was torn: the other one is used.
func (s *Store) newestSlot(buf []byte) (*slot, error) {
	a, errA := s.decodeSlot(buf[slotAOff : slotAOff+BlockSize])
	b, errB := s.decodeSlot(buf[slotBOff : slotBOff+BlockSize])
	switch {
	case errA != nil && errB != nil:
		return nil, fmt.Errorf("open: both checkpoint slots: %w; %w", errA, errB)
	case errA != nil:
		s.log.Warn("checkpoint slot A does not verify; using B", "err", errA)
		return b, nil
	case errB != nil:
		s.log.Warn("checkpoint slot B does not verify; using A", "err", errB)
		return a, nil
	case b.Generation > a.Generation:
		return b, nil
	}
	return a, nil
}

// decodeSlot decodes a slot and checks its addresses lie in the segment area.
func (s *Store) decodeSlot(b []byte) (*slot, error) {
	sl, err := decodeSlot(b, s.sb.UUID)
	if err != nil || sl.Generation == 0 {
		return sl, err
	}
	if !s.validAddr(sl.BodyAddr) || !s.validAddr(sl.ReplayAddr) || sl.BodyBytes > uint64(sl.BodyChunks)*MaxEntrySectors*SectorSize {
		return nil, fmt.Errorf("checkpoint slot: body at %d, replay at %d: outside the segment area: %w", sl.BodyAddr, sl.ReplayAddr, ErrCorrupt)
	}
	return sl, nil
}

// validAddr reports whether sector address a lies in the segment area.
func (s *Store) validAddr(a uint64) bool {
	return a >= segmentAreaOff/SectorSize && a < s.addr(uint32(len(s.segs)), 0)
}

func (s *Store) loadCheckpoint(sl *slot) error {
	body, segs, err := s.readCheckpointBody(sl)
	if err != nil {
		return fmt.Errorf("open: checkpoint %d: %w", sl.Generation, err)
	}
	st, err := decodeCheckpoint(body, len(s.segs))
	if err != nil {
		return fmt.Errorf("open: checkpoint %d: %w", sl.Generation, err)
	}
	for i := range st.segs {
		g, from := &s.segs[i], &st.segs[i]
		g.state, g.seq, g.live, g.emptiedAt = from.state, from.seq, from.live, from.emptiedAt
		if g.state == segActive {
			g.state = segSealed // the active segment at P is found again by roll-forward
		}
	}
	for _, sn := range st.snaps {
		s.cat.putSnapshot(sn)
	}
	for _, v := range st.vols {
		s.cat.putVolume(v)
	}
	s.applied = writerPos{seg: s.segOf(sl.ReplayAddr), off: int64(sl.ReplayAddr) - int64(s.addr(s.segOf(sl.ReplayAddr), 0)), gseq: sl.ReplayGSeq, segSq: st.segSq}
	s.ckptGen, s.ckptSegs, s.ckptBytes = sl.Generation, segs, int64(sl.BodyBytes)
	s.recovery.Checkpoint = sl.Generation
	for i := range s.segs {
		if g := &s.segs[i]; g.state == segPending {
			if g.emptiedAt < sl.Generation && !segs[uint32(i)] {
				g.state = segFree
			} else {
				s.pendingFree++
			}
		}
	}
	return nil
}

// readCheckpointBody reads the checkpoint records a slot points at.
func (s *Store) readCheckpointBody(sl *slot) ([]byte, map[uint32]bool, error) {
	r := s.newLogReader(sl.BodyAddr, sl.BodyGSeq)
	var body []byte
	segs := map[uint32]bool{}
	for i := uint32(0); i < sl.BodyChunks; {
		h, b, addr, err := r.next()
		if err != nil {
			return nil, nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		if h.Kind == KindNext {
			r.jump(uint32(h.Aux))
			continue
		}
		if h.Kind != KindCheckpoint || h.Aux != sl.Generation || h.LSN != uint64(i) {
			return nil, nil, fmt.Errorf("chunk %d: found %v record gen %d chunk %d: %w", i, h.Kind, h.Aux, h.LSN, ErrCorrupt)
		}
		segs[s.segOf(addr)] = true
		body = append(body, b...)
		i++
	}
	if uint64(len(body)) < sl.BodyBytes {
		return nil, nil, fmt.Errorf("body of %d bytes, slot says %d: %w", len(body), sl.BodyBytes, ErrCorrupt)
	}
	body = body[:sl.BodyBytes]
	if got := crcOf(body); got != sl.BodyCRC {
		return nil, nil, fmt.Errorf("body crc %08x != %08x: %w", got, sl.BodyCRC, ErrCorrupt)
	}
	return body, segs, nil
}

// rollForward applies every record after the checkpoint up to the end of the
// log, and returns how many.
func (s *Store) rollForward() (int, error) {
	r := s.newLogReader(s.addr(s.applied.seg, s.applied.off), s.applied.gseq)
	n := 0
	for {
		h, body, addr, err := r.next()
		if err != nil && !endOfLog(err) {
			return n, fmt.Errorf("open: roll forward at sector %d: %w", r.pos, err) // a device error is not the end of the log
		}
		if err != nil {
			s.log.Info("end of log", "segment", s.segOf(r.pos), "offset", r.pos, "reason", err)
			if err := s.probeBeyondEnd(r.pos, r.gseq); err != nil {
				return n, err
			}
			return n, s.endLog(r)
		}
		if h.Kind == KindNext {
			if err := s.rollToSegment(uint32(h.Aux)); err != nil {
				s.log.Warn("end of log at a next record to an unusable segment", "err", err)
				return n, s.endLog(r)
			}
			r.jump(uint32(h.Aux))
			n++
			continue
		}
		if err := cmp.Or(h.checkEntropy(body), s.replayable(h)); err != nil {
			s.log.Warn("end of log at a record that does not apply", "gseq", h.GSeq, "err", err)
			r.pos, r.gseq = addr, h.GSeq
			return n, s.endLog(r)
		}
		s.mu.Lock()
		s.applyRecord(h, addr)
		s.applied = writerPos{seg: s.segOf(r.pos), off: int64(r.pos - s.addr(s.segOf(r.pos), 0)), gseq: r.gseq, segSq: s.applied.segSq}
		s.mu.Unlock()
		n++
	}
}

// endOfLog reports whether a log reader's error marks the end of the log (a
// record that does not verify) rather than a failure to read the device.
func endOfLog(err error) bool {
	// ErrUnsupportedFormat is not: a record of a newer format is refused, not
	// treated as the end of the log (and silently written over).
	return (errors.Is(err, ErrCorrupt) || errors.Is(err, errEndOfLog)) && !errors.Is(err, ErrUnsupportedFormat)
}

// probeBeyondEnd looks past the end of the log, to the end of its segment,
// for records of this log (their gseq is beyond the end's). A crash can leave
// such records behind a torn one in a batch that was never synced, and so
// can media corruption of a record that was; the log cannot tell the two
// apart, so recovery stops at the first record that does not verify either
// way, but says loudly that it left verified records behind, and counts them
// in RecoveryInfo. Stale records of the segment's earlier use have lower
// gseqs and do not count.
func (s *Store) probeBeyondEnd(pos, gseq uint64) error {
	seg := s.segOf(pos)
	start := pos &^ (BlockSize/SectorSize - 1)
	end := s.addr(seg, s.segSectors())
	buf := device.AlignedBuf(int(end-start) * SectorSize)
	if _, err := s.dev.ReadAt(buf, int64(start)*SectorSize); err != nil {
		return fmt.Errorf("open: read past the end of the log: %w", err)
	}
	var n int
	var first, last uint64
	for a := pos + 1; a < end; a++ {
		b := buf[(a-start)*SectorSize:]
		if [4]byte(b[:4]) != recordMagic {
			continue
		}
		if h, err := decodeHeader(b, s.sb.UUID); err == nil && h.GSeq > gseq {
			if n == 0 {
				first = h.GSeq
			}
			n, last = n+1, h.GSeq
		}
	}
	s.recovery.Unreachable = n
	if n > 0 {
		s.log.Error("log ends at a record that does not verify, with verified records behind it: "+
			"a torn batch that was never synced, or media corruption; those records are dropped",
			"segment", seg, "offset", pos, "gseq", gseq, "records_behind", n, "first_gseq", first, "last_gseq", last)
	}
	return nil
}

// rollToSegment moves roll-forward into segment seg, which must be free, or
// pending: emptied by records replayed since the checkpoint, it was freed in
// the live run once that checkpoint became durable, and then reused. (The
// gseq of its first record shows whether it really continues the log.)
func (s *Store) rollToSegment(seg uint32) error {
	if int(seg) >= len(s.segs) || seg == s.applied.seg || s.segs[seg].state != segFree && s.segs[seg].state != segPending {
		return fmt.Errorf("next segment %d: %w", seg, ErrCorrupt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.segs[seg].state == segPending {
		s.pendingFree--
		s.freeSegs++
	}
	cur := &s.segs[s.applied.seg]
	cur.state = segSealed
	s.maybeEmptyLocked(s.applied.seg)
	g := &s.segs[seg]
	g.state, g.seq, g.live = segActive, s.applied.segSq, 0
	s.freeSegs--
	s.applied = writerPos{seg: seg, off: 0, gseq: s.applied.gseq + 1, segSq: s.applied.segSq + 1}
	return nil
}

// replayable checks that a verified record makes sense against the state so
// far: its volume exists and it extends the chain.
func (s *Store) replayable(h *Header) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if h.LFlags&lflagRelocated != 0 {
		if !s.validAddr(h.From) || h.From >= s.addr(uint32(len(s.segs)), 0)-1 {
			return fmt.Errorf("relocated record from sector %d: %w", h.From, ErrCorrupt)
		}
		return nil
	}
	if !h.Kind.chained() && h.Kind != KindDelete {
		return nil
	}
	v := s.cat.volume(h.Base)
	switch h.Kind {
	case KindCreate, KindBranch:
		if v != nil {
			return fmt.Errorf("volume %v exists: %w", h.Base, ErrExists)
		}
		if h.Kind == KindBranch && s.cat.snapshot(h.Link) == nil && s.headVolume(h.Link) == nil {
			return fmt.Errorf("branch of %v: %w", h.Link, ErrVersionUnavailable)
		}
		return nil
	}
	if v == nil {
		return fmt.Errorf("volume %v: %w", h.Base, ErrNotFound)
	}
	if h.Kind == KindDelete {
		return nil
	}
	if err := checkExtent(v.size, h); err != nil {
		return err
	}
	return checkLink(v.lsn, v.head, v.epoch, h)
}

// checkExtent verifies that a data record's extent lies within a volume of
// size bytes.
func checkExtent(size uint64, h *Header) error {
	if h.Kind == KindData && h.LBA+uint64(h.NSect) > size/SectorSize {
		return fmt.Errorf("volume %v: extent %d+%d beyond its %d sectors: %w", h.Base, h.LBA, h.NSect, size/SectorSize, ErrCorrupt)
	}
	return nil
}

// checkLink verifies that entry h extends a chain whose head is (lsn, head)
// of epoch epoch. A view entry links to the head's public id and raises the
// epoch; every other entry reveals the head's token and keeps the epoch. An
// entry of a lower epoch wraps ErrStaleEpoch as well as ErrLink.
func checkLink(lsn uint64, head ID, epoch uint64, h *Header) error {
	first := h.LSN
	if h.Kind == KindGap {
		first = h.FirstLSN
	}
	if first != lsn+1 {
		return fmt.Errorf("volume %v: entry lsn %d after lsn %d: %w", h.Base, first, lsn, ErrLink)
	}
	switch {
	case h.Epoch < epoch || h.Kind == KindView && h.Epoch == epoch:
		return fmt.Errorf("volume %v: %v entry lsn %d of epoch %d after epoch %d: %w: %w", h.Base, h.Kind, h.LSN, h.Epoch, epoch, ErrStaleEpoch, ErrLink)
	case h.Kind != KindView && h.Epoch != epoch:
		return fmt.Errorf("volume %v: %v entry lsn %d of epoch %d after epoch %d without a view entry: %w", h.Base, h.Kind, h.LSN, h.Epoch, epoch, ErrLink)
	case h.Kind == KindView && h.Link != head:
		return fmt.Errorf("volume %v: view entry lsn %d does not link to head %v: %w", h.Base, h.LSN, head, ErrLink)
	case h.Kind != KindView && !linkMatches(h.Link, head):
		return fmt.Errorf("volume %v: entry lsn %d does not link to head %v: %w", h.Base, h.LSN, head, ErrLink)
	}
	return nil
}

func (s *Store) headVolume(version ID) *volume {
	for _, v := range s.cat.volumes() {
		if v.head == version {
			return v
		}
	}
	return nil
}

// endLog makes the end of the log safe to append at: it writes, and syncs
// before anything else is written, a pad record from the end to the next
// block boundary (a whole block when the end is on one) whose Aux moves the
// gseq on by gseqJump. Batches start on block boundaries, so a torn batch's
// remains after the end are stepped over; and they keep gseqs that new
// records never take, so none can be mistaken for the log's continuation
// after another crash. The rewrite of a partly valid block leaves its valid
// sectors unchanged (sector writes are assumed atomic).
func (s *Store) endLog(r *logReader) error {
	if s.readOnly {
		return nil
	}
	if s.applied.off+BlockSize/SectorSize > s.segLimit() {
		return nil // no room before the segment's last block: the next batch seals it
	}
	rem := s.applied.off % (BlockSize / SectorSize)
	blockAddr := s.addr(s.applied.seg, s.applied.off-rem)
	buf := device.AlignedBuf(BlockSize)
	if _, err := s.dev.ReadAt(buf, int64(blockAddr)*SectorSize); err != nil {
		return fmt.Errorf("open: read log tail: %w", err)
	}
	n := BlockSize/SectorSize - rem
	// The pad also moves the gseq on by 2^32: records of the torn batch may
	// lie beyond the end with the very gseqs new records would take, and one
	// found where the log is expected after a second crash would replay a
	// write that was never acknowledged.
	h := Header{Kind: KindPad, NBody: uint32(n - 1), GSeq: s.applied.gseq, Aux: s.applied.gseq + gseqJump}
	h.sealSum(0, make([]byte, HeaderSize))
	tail := buf[rem*SectorSize:]
	h.encode(tail, s.sb.UUID)
	clear(tail[HeaderSize:])
	if _, err := s.dev.WriteAt(buf, int64(blockAddr)*SectorSize); err != nil {
		return fmt.Errorf("open: pad log tail: %w", err)
	}
	if err := s.dev.Sync(); err != nil {
		return fmt.Errorf("open: sync log tail: %w", err)
	}
	s.applied.off += n
	s.applied.gseq = h.Aux
	return nil
}

// gseqJump is how far a recovery pad moves the gseq: more records than any
// torn batch can hold (2^32 sectors, 2 TiB).
const gseqJump = 1 << 32

// restoreTokens builds the writer's view of every volume, recomputing for the
// volumes this store owns the token that extends the chain: S(head) =
// H(s || E(head)), s the view secret of the head's epoch.
func (s *Store) restoreTokens() {
	s.wchain = map[ID]*wvol{}
	for _, v := range s.cat.volumes() {
		w := &wvol{head: v.head, lsn: v.lsn, epoch: v.epoch, epochLSN: v.epochLSN, fence: v.fence, size: v.size, owned: v.owned}
		if v.owned {
			w.token, _ = chainStep(viewSecret(&s.sb.Secret, v.base, v.epoch), v.entropy)
		}
		s.wchain[v.base] = w
	}
}

func (s *Store) countFree() {
	s.freeSegs = 0
	for i := range s.segs {
		if s.segs[i].state == segFree {
			s.freeSegs++
		}
	}
}

// errEndOfLog is why a logReader stops where no further record verifies.
var errEndOfLog = errors.New("end of log")
