package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"cloudfs/segment/extent"
)

// The cleaner reclaims segments: it picks the sealed segments with the least
// live data, copies what is still live to the log's end (each volume's
// records in lsn order; a record whose data is all dead shrinks to a gap
// header, and consecutive gaps merge, so that streams from older versions
// still find the chain), and leaves the victims empty. They become free once
// the next checkpoint is durable.

// background runs checkpoints and the cleaner until the store closes.
func (s *Store) background() {
	defer s.bgWG.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stopBg:
			return
		case <-s.kick:
			s.reclaim()
			continue
		case <-t.C:
		}
		s.mu.RLock()
		due := s.logSinceCkpt >= max(s.opts.CheckpointBytes, 4*s.ckptBytes) ||
			(s.logSinceCkpt > 0 && time.Since(s.lastCkptTime) >= s.opts.CheckpointInterval) ||
			(s.pendingFree > 0 && s.lowOnSpaceLocked())
		low := s.lowOnSpaceLocked()
		s.mu.RUnlock()
		if due {
			if err := s.checkpoint(); err != nil {
				s.log.Error("checkpoint", "err", err)
			}
		}
		if low {
			if _, err := s.clean(1); err != nil {
				s.log.Warn("cleaner", "err", err)
			}
		}
	}
}

// reclaim answers the writer's kick: checkpoint (freeing pending segments),
// clean if that is not enough, checkpoint again, and tell the writer whether
// anything was freed.
func (s *Store) reclaim() {
	s.mu.RLock()
	before := s.freeSegs
	s.mu.RUnlock()
	if err := s.checkpoint(); err != nil {
		s.log.Error("checkpoint", "err", err)
	}
	s.mu.RLock()
	low := s.freeSegs <= s.reserveSegments()
	s.mu.RUnlock()
	if low {
		if _, err := s.clean(4); err != nil {
			s.log.Warn("cleaner", "err", err)
		}
		if err := s.checkpoint(); err != nil {
			s.log.Error("checkpoint", "err", err)
		}
	}
	s.mu.RLock()
	after := s.freeSegs
	s.mu.RUnlock()
	s.ops <- &op{kind: opRetry, progress: after > before}
}

func (s *Store) lowOnSpaceLocked() bool {
	return s.freeSegs*100 < len(s.segs)*s.opts.CleanerFreePercent
}

// errNoGain: cleaning the segment would copy nearly all of it.
var errNoGain = errors.New("segment: cleaning would reclaim too little")

// CleanResult says what one cleaning pass did.
type CleanResult struct {
	Segments    int   // victims emptied
	CopiedBytes int64 // bytes rewritten at the log's end
}

// Clean cleans up to n segments now: the sealed ones with the least live
// data, skipping those that are nearly full. It returns what it did; the
// emptied segments are free after the next checkpoint.
func (s *Store) Clean(n int) (CleanResult, error) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closing.Load() {
		return CleanResult{}, ErrClosed
	}
	return s.clean(n)
}

func (s *Store) clean(n int) (CleanResult, error) {
	s.cleanMu.Lock()
	defer s.cleanMu.Unlock()
	var res CleanResult
	for _, seg := range s.victims(n) {
		copied, err := s.cleanSegment(seg)
		if errors.Is(err, errNoGain) {
			s.met.cleanerRuns.WithLabelValues("skipped").Inc()
			continue
		}
		if err != nil {
			s.met.cleanerRuns.WithLabelValues("error").Inc()
			return res, fmt.Errorf("clean segment %d: %w", seg, err)
		}
		s.met.cleanerRuns.WithLabelValues("ok").Inc()
		s.met.cleanerBytes.Add(float64(copied))
		res.Segments++
		res.CopiedBytes += copied
		s.throttle(copied)
	}
	return res, nil
}

// throttle sleeps so that the cleaner copies at most CleanerRate bytes/s.
func (s *Store) throttle(bytes int64) {
	if s.opts.CleanerRate <= 0 || bytes == 0 {
		return
	}
	select {
	case <-time.After(time.Duration(bytes * int64(time.Second) / s.opts.CleanerRate)):
	case <-s.stopBg:
	}
}

// victims returns up to n sealed segments, emptiest first, that are worth
// cleaning (less than 90% live) and hold no part of the newest checkpoint.
func (s *Store) victims(n int) []uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.victimsLocked(n)
}

func (s *Store) victimsLocked(n int) []uint32 {
	var cand []uint32
	limit := s.segSectors() * 9 / 10
	for i := range s.segs {
		g := &s.segs[i]
		if g.state == segSealed && g.live < limit && !s.ckptSegs[uint32(i)] {
			cand = append(cand, uint32(i))
		}
	}
	sort.Slice(cand, func(a, b int) bool { return s.segs[cand[a]].live < s.segs[cand[b]].live })
	return cand[:min(n, len(cand))]
}

// cleanSegment copies the live records of seg to the log's end and returns the
// bytes copied.
func (s *Store) cleanSegment(seg uint32) (int64, error) {
	recs, err := s.readSegment(seg)
	if err != nil {
		return 0, err
	}
	s.mu.RLock()
	out := s.survivors(recs)
	s.mu.RUnlock()
	var size int64
	for _, r := range out {
		size += r.h.Size()
	}
	if size > s.sb.SegmentSize*9/10 {
		return 0, errNoGain // copying would reclaim less than a tenth of it
	}
	var copied int64
	for len(out) > 0 { // ops of at most 8 MiB
		n, size := 0, int64(0)
		for n < len(out) && size < 8<<20 {
			size += out[n].h.Size()
			n++
		}
		if err := s.runInternal(&op{kind: opRelocate, recs: out[:n]}); err != nil {
			return copied, err
		}
		copied += size
		out = out[n:]
	}
	return copied, nil
}

// segRecord is a record read back from a segment.
type segRecord struct {
	h    *Header
	body []byte
	addr uint64
}

// readSegment returns the records of a sealed segment, up to its next record.
// On error it also returns the records before the one that failed.
func (s *Store) readSegment(seg uint32) ([]segRecord, error) {
	return s.readSegmentTo(seg, 0)
}

// readSegmentTo is readSegment reading nothing at or past sector address end
// (0: the segment's end); a record there ends the read with errEndOfLog.
func (s *Store) readSegmentTo(seg uint32, end uint64) ([]segRecord, error) {
	r := s.newLogReader(s.addr(seg, 0), 0)
	r.end = end
	first := true
	var out []segRecord
	for {
		if first {
			// the segment's first gseq is whatever its first record says
			hb, err := r.bytes(r.pos, HeaderSize)
			if err != nil {
				return nil, err
			}
			h, err := decodeHeader(hb, s.sb.UUID)
			if err != nil {
				return nil, fmt.Errorf("first record: %w", err)
			}
			r.gseq, first = h.GSeq, false
		}
		h, body, addr, err := r.next()
		if err != nil {
			return out, fmt.Errorf("segment %d: %w", seg, err)
		}
		if h.Kind == KindNext {
			return out, nil
		}
		out = append(out, segRecord{h: h, body: append([]byte(nil), body...), addr: addr})
	}
}

// survivors decides, for each record of a victim, what the log must keep:
// a copy of the record (some of its data is live, or its volume needs its
// header), a gap header (its data is all dead), or nothing. Caller holds s.mu.
func (s *Store) survivors(recs []segRecord) []*rec {
	var out []*rec
	for _, sr := range recs {
		h := sr.h
		if !h.Kind.chained() {
			continue // pad, delete, next, checkpoint: not needed once the victim is cleaned
		}
		vol := s.cat.volume(h.Base)
		if vol != nil && !vol.current(h, s.segOf(sr.addr)) {
			continue // superseded: a copy (or gap) from an earlier pass is the current one
		}
		owner, zeros := s.dataOwner(h, sr.addr)
		switch {
		case !owner.IsZero():
			out = append(out, s.relocated(sr, owner))
		case zeros && vol != nil && (h.Flags&FlagZero != 0 || h.NBody == 0):
			out = append(out, s.relocated(sr, ID{})) // header-only already
		case zeros && vol != nil:
			out = append(out, s.dropped(sr))
		case vol != nil && (h.Kind == KindCreate || h.Kind == KindBranch || h.Kind == KindView):
			// a view never becomes a gap: its link is a version id, not a
			// token, and it is where the volume's epoch changes
			out = append(out, s.relocated(sr, ID{}))
		case vol != nil:
			out = append(out, s.gapOf(sr))
		}
	}
	// Per volume in lsn order, so that gaps of consecutive entries merge.
	// Relocated records are independent of each other, so this order is free.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i].h, &out[j].h
		if a.Base != b.Base {
			return string(a.Base[:]) < string(b.Base[:])
		}
		return a.LSN < b.LSN
	})
	return mergeGaps(out)
}

// dataOwner returns the map that still references part of a data record's
// body (zero if none does), and whether sectors the record zeroed may still
// read as its zeros.
func (s *Store) dataOwner(h *Header, addr uint64) (owner ID, zeros bool) {
	if h.Kind != KindData {
		return ID{}, false
	}
	type cand struct {
		id    ID
		m     *extent.Map
		masks bool // zeros are kept as zero extents (a parent lies below)
	}
	var maps []cand
	if v := s.cat.volume(h.Base); v != nil {
		maps = append(maps, cand{v.base, v.m, v.parent != nil})
	}
	for _, sn := range s.cat.ownedSnapshots(h.Base) {
		maps = append(maps, cand{sn.version, sn.m, sn.parent != nil})
	}
	for _, mm := range maps {
		data, z := referencesRecord(mm.m, mm.masks, h, addr)
		if data {
			return mm.id, true
		}
		zeros = zeros || z
	}
	return ID{}, zeros
}

// referencesRecord reports whether m maps a present sector of h to its place
// in the record at addr (data), and whether a sector h zeroed still reads as
// zeros in m (zeros). The zero test cannot tell h's zeros from a later
// write's, so it errs towards keeping them: a replica catching up must not
// miss zeros that are still current.
func referencesRecord(m *extent.Map, masks bool, h *Header, addr uint64) (data, zeros bool) {
	zeroKind := extent.Unmapped
	if masks {
		zeroKind = extent.Zeroed
	}
	has := func(lba, n uint64, want extent.Kind, at uint64) bool {
		found := false
		m.Lookup(lba, n, func(r extent.Run) bool {
			found = r.Kind == want && (want != extent.Mapped || r.Addr == at+(r.LBA-lba))
			return !found
		})
		return found
	}
	if h.Flags&FlagZero != 0 {
		return false, has(h.LBA, uint64(h.NSect), zeroKind, 0)
	}
	body := addr + 1
	forRuns(h, func(i, n int, present bool) {
		lba := h.LBA + uint64(i)
		switch {
		case present && h.Flags&FlagDropped == 0:
			data = data || has(lba, uint64(n), extent.Mapped, body)
			body += uint64(n)
		case !present:
			zeros = zeros || has(lba, uint64(n), zeroKind, 0)
		}
	})
	return data, zeros
}

// relocated is the copy of a record the cleaner writes: the same portable
// bytes, marked relocated from its old address, naming the map of its data.
func (s *Store) relocated(sr segRecord, owner ID) *rec {
	h := *sr.h
	h.LFlags |= lflagRelocated
	h.Owner, h.From = owner, sr.addr
	return &rec{h: h, body: [][]byte{sr.body}}
}

// dropped is the header-only copy of a data record whose stored sectors are
// all overwritten but whose zeros may be current: the entry without its body.
func (s *Store) dropped(sr segRecord) *rec {
	h := *sr.h
	h.Flags |= FlagDropped
	h.NBody = 0
	h.LFlags |= lflagRelocated
	h.From = sr.addr
	h.sealSum(0, make([]byte, HeaderSize))
	return &rec{h: h}
}

// gapOf is the gap header standing for a chained record whose effect later
// records have completely overwritten.
func (s *Store) gapOf(sr segRecord) *rec {
	h := sr.h
	g := Header{Kind: KindGap, LSN: h.LSN, FirstLSN: h.LSN, Epoch: h.Epoch, Base: h.Base, Link: h.Link, ID: h.ID, Entropy: h.Entropy,
		LFlags: lflagRelocated, From: sr.addr}
	if h.Kind == KindGap {
		g.FirstLSN = h.FirstLSN
	}
	g.sealSum(0, make([]byte, HeaderSize))
	setGapCount(&g, 1)
	return &rec{h: g}
}

// A relocated gap replaces one or more records of one volume in the victim;
// the local owner field holds how many (little endian u32), so that replaying
// it moves exactly that many headers out of the victim's accounting.
func gapCount(h *Header) int32 { return int32(binary.LittleEndian.Uint32(h.Owner[:4])) }

func setGapCount(h *Header, n int32) { binary.LittleEndian.PutUint32(h.Owner[:4], uint32(n)) }

// mergeGaps merges runs of gap records of the same volume with consecutive
// lsns into one gap. The first keeps its link, the last gives the id.
func mergeGaps(recs []*rec) []*rec {
	var out []*rec
	for _, r := range recs {
		if n := len(out); n > 0 && r.h.Kind == KindGap && out[n-1].h.Kind == KindGap &&
			out[n-1].h.Base == r.h.Base && out[n-1].h.LSN+1 == r.h.FirstLSN {
			p := &out[n-1].h
			p.LSN, p.ID, p.Entropy, p.Epoch = r.h.LSN, r.h.ID, r.h.Entropy, r.h.Epoch
			p.sealSum(0, make([]byte, HeaderSize))
			setGapCount(p, gapCount(p)+gapCount(&r.h))
			continue
		}
		out = append(out, r)
	}
	return out
}
