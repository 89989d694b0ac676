package segment

import (
	"fmt"

	"cloudfs/segment/extent"
)

// applyRecord makes the index reflect record h at sector address addr. It is
// the one path for records committed by the writer and records met by
// recovery's roll-forward, so both build the same state. Caller holds s.mu.
func (s *Store) applyRecord(h *Header, addr uint64) {
	if h.LFlags&lflagRelocated != 0 {
		s.applyRelocated(h, addr)
		return
	}
	switch h.Kind {
	case KindCreate:
		s.newVolumeLocked(h, addr, nil)
	case KindBranch:
		s.newVolumeLocked(h, addr, s.freezeLocked(h.Link))
	case KindData:
		v := s.cat.volume(h.Base)
		s.mapData(v.m, v.parent != nil, h, addr)
		s.advance(v, h, addr)
	case KindGap:
		s.advance(s.cat.volume(h.Base), h, addr)
	case KindView:
		v := s.cat.volume(h.Base)
		s.advance(v, h, addr)
		v.epochLSN = h.LSN
		// the store that wrote the view owns the volume in its epoch; any
		// other store, the old owner included, holds no token for it
		v.owned = h.LFlags&lflagOwned != 0 && v.epoch >= v.fence
	case KindDelete:
		s.deleteLocked(s.cat.volume(h.Base))
	}
}

// fenceLocked records that epoch was seen for volume base without an entry:
// entries of lower epochs are refused from now on, and if this store owns the
// volume in a lower epoch it stops owning it. Caller holds s.mu.
func (s *Store) fenceLocked(base ID, epoch uint64) {
	v := s.cat.volume(base)
	if v == nil {
		return // deleted since the fence was planned
	}
	v.fence = max(v.fence, epoch)
	if v.epoch < v.fence {
		v.owned = false
	}
}

// advance moves v's committed head to record h.
func (s *Store) advance(v *volume, h *Header, addr uint64) {
	v.head, v.entropy, v.lsn, v.epoch = h.ID, h.Entropy, h.LSN, h.Epoch
	s.countHeader(v, h, s.segOf(addr), 1)
	if v.met != nil {
		v.met.lsn.Set(float64(v.lsn))
	}
}

// countHeader adds (or with n = -1 removes) a chained record header of v in seg
// to the accounting and to v's runs.
func (s *Store) countHeader(v *volume, h *Header, seg uint32, n int32) {
	first := h.LSN
	if h.Kind == KindGap {
		first = h.FirstLSN
	}
	if n > 0 {
		v.runs.add(first, h.LSN, seg)
	}
	v.hdrs[seg] += n
	if v.hdrs[seg] == 0 {
		delete(v.hdrs, seg)
	}
	s.addLive(seg, int64(n))
}

func (s *Store) addLive(seg uint32, n int64) {
	g := &s.segs[seg]
	g.live += n
	if g.live < 0 {
		panic(fmt.Sprintf("segment %d: live %d < 0", seg, g.live))
	}
	s.maybeEmptyLocked(seg)
}

// maybeEmptyLocked moves a sealed segment without live data to pending: it
// becomes free once a checkpoint newer than now is durable (until then the
// newest checkpoint may still reference its contents).
func (s *Store) maybeEmptyLocked(seg uint32) {
	g := &s.segs[seg]
	if g.state == segSealed && g.live == 0 {
		g.state, g.emptiedAt = segPending, s.ckptGen
		s.pendingFree++
	}
}

// deadFn returns the callback extent maps call for overwritten pieces.
func (s *Store) deadFn() func(extent.Extent) {
	return func(e extent.Extent) {
		if e.Addr != extent.Zero {
			s.addLive(s.segOf(e.Addr), -int64(e.Len))
		}
	}
}

// current reports whether the volume's accounting places chained record h in
// segment seg: whether a record there with h's lsn is the copy that counts,
// not one a later copy or gap superseded (the cleaner copies records, and a
// crash while it cleans a segment leaves originals behind).
func (v *volume) current(h *Header, seg uint32) bool {
	i := v.runs.find(h.LSN)
	return i >= 0 && v.runs[i].seg == seg && v.hdrs[seg] > 0
}

// mapData enters a data record's extent into map m: present sectors map to
// their place in the body, the others read as zeros. With a parent below the
// map, zeros are kept as zero extents so they mask it; without one, the
// range is simply unmapped (it reads as zeros anyway).
func (s *Store) mapData(m *extent.Map, masks bool, h *Header, addr uint64) {
	dead := s.deadFn()
	if h.Flags&FlagZero != 0 {
		zeroRange(m, masks, h.LBA, uint64(h.NSect), dead)
		return
	}
	body := addr + 1
	forRuns(h, func(i, n int, present bool) {
		lba := h.LBA + uint64(i)
		if !present {
			zeroRange(m, masks, lba, uint64(n), dead)
			return
		}
		if h.Flags&FlagDropped != 0 {
			return // overwritten by later entries: nothing to map
		}
		m.Insert(extent.Extent{LBA: lba, Len: uint32(n), Addr: body}, dead)
		s.addLive(s.segOf(body), int64(n))
		body += uint64(n)
	})
}

// forRuns calls fn for each maximal run of sectors of h's extent with the same
// bitmap bit, in order.
func forRuns(h *Header, fn func(i, n int, present bool)) {
	n := int(h.NSect)
	for i := 0; i < n; {
		p := h.Present(i)
		j := i + 1
		for j < n && h.Present(j) == p {
			j++
		}
		fn(i, j-i, p)
		i = j
	}
}

func zeroRange(m *extent.Map, masks bool, lba, n uint64, dead func(extent.Extent)) {
	if !masks {
		m.Remove(lba, n, dead)
		return
	}
	for n > 0 {
		k := min(n, extent.MaxLen)
		m.Insert(extent.Extent{LBA: lba, Len: uint32(k), Addr: extent.Zero}, dead)
		lba, n = lba+k, n-k
	}
}

// applyRelocated accounts for a record the cleaner copied from h.From to addr:
// the header moves, and every sector still pointing at the old copy now
// points at the new one. The sectors may be in the volume's map or in any
// snapshot taken of it since the cleaner read the record (a branch moves the
// map), so every such map is remapped; Remap moves only sectors that still
// point at the old copy, and a sector is in one map only.
func (s *Store) applyRelocated(h *Header, addr uint64) {
	seg, old := s.segOf(addr), s.segOf(h.From)
	if v := s.cat.volume(h.Base); v != nil && h.Kind.chained() && v.current(h, old) {
		n := int32(1)
		if h.Kind == KindGap {
			n = min(gapCount(h), v.hdrs[old])
		}
		v.hdrs[old] -= n
		if v.hdrs[old] == 0 {
			delete(v.hdrs, old)
		}
		s.addLive(old, -int64(n))
		s.countHeader(v, h, seg, 1)
	}
	if h.Kind != KindData || h.Flags&(FlagZero|FlagDropped) != 0 {
		return
	}
	maps := s.dataMaps(h.Base)
	from, to := h.From+1, addr+1
	forRuns(h, func(i, n int, present bool) {
		if !present {
			return
		}
		for _, m := range maps {
			moved := m.Remap(h.LBA+uint64(i), uint32(n), from, to)
			s.addLive(old, -int64(moved))
			s.addLive(seg, int64(moved))
		}
		from, to = from+uint64(n), to+uint64(n)
	})
}

// dataMaps returns every extent map that can hold data volume base wrote: its
// own, and those of the snapshots taken of it.
func (s *Store) dataMaps(base ID) []*extent.Map {
	var maps []*extent.Map
	if v := s.cat.volume(base); v != nil {
		maps = append(maps, v.m)
	}
	for _, sn := range s.cat.ownedSnapshots(base) {
		maps = append(maps, sn.m)
	}
	return maps
}

// newVolumeLocked adds the volume a create or branch record makes.
func (s *Store) newVolumeLocked(h *Header, addr uint64, parent *snapshot) {
	v := &volume{base: h.Base, size: h.Aux, m: extent.New(), parent: parent, hdrs: map[uint32]int32{},
		owned: h.LFlags&lflagOwned != 0, created: int64(addr), epochLSN: 1}
	if parent != nil {
		parent.refs++
	}
	v.met = s.met.forVolume(v.base, v.size)
	s.cat.putVolume(v)
	s.advance(v, h, addr)
}

// freezeLocked returns the snapshot of version: an existing one, or the map of
// the volume whose head is version, frozen now. The volume continues with an
// empty map over the snapshot. O(1): no data and no extents are copied.
func (s *Store) freezeLocked(version ID) *snapshot {
	if sn := s.cat.snapshot(version); sn != nil {
		return sn
	}
	for _, v := range s.cat.volumes() {
		if v.head != version {
			continue
		}
		sn := &snapshot{version: version, owner: v.base, lsn: v.lsn, m: v.m, parent: v.parent, size: v.size, refs: 1}
		v.m, v.parent = extent.New(), sn
		s.cat.putSnapshot(sn)
		s.cat.putVolume(v)
		return sn
	}
	// the writer and recovery check the source before applying a branch
	panic(fmt.Sprintf("segment: branch of unknown version %v", version))
}

// deleteLocked drops a volume: its map's data and its headers become dead, and
// its parent snapshot loses a reference.
func (s *Store) deleteLocked(v *volume) {
	v.deleted = true
	dead := s.deadFn()
	v.m.Ascend(func(e extent.Extent) bool { dead(e); return true })
	for seg, n := range v.hdrs {
		s.addLive(seg, -int64(n))
	}
	s.cat.deleteVolume(v.base)
	s.met.dropVolume(v.base)
	s.release(v.parent)
}

// release drops one reference to sn. A snapshot left without references
// stays, and can still be branched, until the next checkpoint drops it
// (dropReleasedLocked): the log records no drop, so dropping it at a point
// every replay agrees on (a checkpoint) keeps a branch of it planned in the
// same group commit as the delete that released it valid in the log.
func (s *Store) release(sn *snapshot) {
	if sn != nil {
		sn.refs--
	}
}

// dropReleasedLocked drops the snapshots without references, and then the
// parents that this leaves without references: their data becomes dead.
func (s *Store) dropReleasedLocked() {
	if s.branchesInFlight.Load() > 0 {
		return // a planned branch may read through one of them: next time
	}
	for again := true; again; {
		again = false
		for _, sn := range s.cat.snapshots() {
			if sn.refs > 0 {
				continue
			}
			dead := s.deadFn()
			sn.m.Ascend(func(e extent.Extent) bool { dead(e); return true })
			s.cat.deleteSnapshot(sn)
			if sn.parent != nil {
				sn.parent.refs--
				again = true
			}
		}
	}
}
