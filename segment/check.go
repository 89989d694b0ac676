package segment

import (
	"fmt"
	"sort"

	"cloudfs/segment/device"
	"cloudfs/segment/extent"
)

// Report is what Check found.
type Report struct {
	Segments, UsedSegments int
	Volumes, Snapshots     int
	Records                int   // records read and verified
	LiveBytes              int64 // bytes the index references
	Problems               []string
}

// OK reports whether Check found nothing wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check verifies a store offline, writing nothing: it recovers the index as
// Open does, then reads every record of every used segment (header crc, body
// sum) and checks, independently of the live code, that every extent of every
// map points into a verified record of the right volume at the right sector,
// that every volume's chain links from its first entry to its head across its
// view changes (and, for the volumes this store owns, that every version id
// of the owner's epoch derives from its entry), and that the per-segment
// accounting matches a recount. The store must not be open elsewhere. It returns an error wrapping ErrCorrupt if it
// found problems, with the report.
func Check(dev device.Device) (*Report, error) {
	s := &Store{dev: dev, readOnly: true, opts: Options{NoBackground: true}}
	s.opts.setDefaults()
	s.log = s.opts.Logger
	s.met = newMetrics(nil)
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	rep := &Report{Segments: len(s.segs), Volumes: len(s.cat.volumes()), Snapshots: len(s.cat.snapshots())}
	recs := s.checkSegments(rep)
	live := make([]int64, len(s.segs))
	s.checkMaps(rep, recs, live)
	s.checkChains(rep, recs, live)
	for i := range s.segs {
		g := &s.segs[i]
		if g.live != live[i] {
			rep.problem("segment %d: accounted live %d sectors, recount %d", i, g.live, live[i])
		}
		if (g.state == segFree || g.state == segPending) && live[i] != 0 {
			rep.problem("segment %d: state %d but %d live sectors", i, g.state, live[i])
		}
		rep.LiveBytes += live[i] * SectorSize
	}
	if !rep.OK() {
		return rep, fmt.Errorf("check: %d problems, first: %s: %w", len(rep.Problems), rep.Problems[0], ErrCorrupt)
	}
	return rep, nil
}

// checkSegments reads every record of every used segment, sorted by address.
func (s *Store) checkSegments(rep *Report) []segRecord {
	var all []segRecord
	for i := range s.segs {
		if s.segs[i].state == segFree || s.segs[i].state == segPending {
			continue
		}
		rep.UsedSegments++
		recs, err := s.readSegmentTail(uint32(i))
		if err != nil {
			rep.problem("segment %d (state %d): %v", i, s.segs[i].state, err)
		}
		all = append(all, recs...)
	}
	rep.Records = len(all)
	sort.Slice(all, func(i, j int) bool { return all[i].addr < all[j].addr })
	return all
}

// recordAt returns the record whose body holds sector address a.
func recordAt(recs []segRecord, a uint64) *segRecord {
	i := sort.Search(len(recs), func(i int) bool { return recs[i].addr > a }) - 1
	if i < 0 || a >= recs[i].addr+1+uint64(recs[i].h.NBody) || a == recs[i].addr {
		return nil
	}
	return &recs[i]
}

// checkMaps verifies every data extent of every map and adds it to live.
func (s *Store) checkMaps(rep *Report, recs []segRecord, live []int64) {
	check := func(name string, owner ID, m *extent.Map) {
		m.Ascend(func(e extent.Extent) bool {
			if e.Addr == extent.Zero {
				return true
			}
			if k, ok := checkExtentData(recs, owner, e); !ok {
				rep.problem("%s: sector %d maps to address %d, which is not that sector of a verified record of %v", name, e.LBA+k, e.Addr+k, owner)
				return false
			}
			live[s.segOf(e.Addr)] += int64(e.Len)
			return true
		})
	}
	for _, v := range s.cat.volumes() {
		check("volume "+v.base.String(), v.base, v.m)
	}
	for _, sn := range s.cat.snapshots() {
		check("snapshot "+sn.version.String(), sn.owner, sn.m)
		if sn.refs < 0 { // 0: released, dropped at the next checkpoint
			rep.problem("snapshot %v: %d references", sn.version, sn.refs)
		}
	}
}

// checkExtentData reports whether every sector of data extent e is that
// sector of a data record of volume base at its address; if not, it returns
// the offset of the first that is not. One pass: a sector's place in a
// record's body is the count of stored sectors before it.
func checkExtentData(recs []segRecord, base ID, e extent.Extent) (uint64, bool) {
	var r *segRecord
	var rank uint64 // stored sectors of r before the current one
	for k := uint64(0); k < uint64(e.Len); k++ {
		lba, a := e.LBA+k, e.Addr+k
		if r == nil || a >= r.addr+1+uint64(r.h.NBody) {
			if r = recordAt(recs, a); r == nil || r.h.Kind != KindData || r.h.Base != base || r.h.Flags&(FlagZero|FlagDropped) != 0 ||
				lba < r.h.LBA || lba >= r.h.LBA+uint64(r.h.NSect) {
				return k, false
			}
			rank = 0
			for i := 0; i < int(lba-r.h.LBA); i++ {
				if r.h.Present(i) {
					rank++
				}
			}
		}
		i := lba - r.h.LBA
		if i >= uint64(r.h.NSect) || !r.h.Present(int(i)) || a != r.addr+1+rank {
			return k, false
		}
		rank++
	}
	return 0, true
}

// checkChains verifies each volume's chain of entries, runs and header counts,
// and adds its headers to live.
func (s *Store) checkChains(rep *Report, recs []segRecord, live []int64) {
	byVol := map[ID][]segRecord{}
	for _, r := range recs {
		if r.h.Kind.chained() {
			byVol[r.h.Base] = append(byVol[r.h.Base], r)
		}
	}
	for _, v := range s.cat.volumes() {
		entries := effective(byVol[v.base])
		hdrs := map[uint32]int32{}
		for _, r := range entries {
			hdrs[s.segOf(r.addr)]++
			live[s.segOf(r.addr)]++
		}
		for seg, n := range hdrs {
			if v.hdrs[seg] != n {
				rep.problem("volume %v: segment %d holds %d of its headers, accounted %d", v.base, seg, n, v.hdrs[seg])
			}
		}
		if len(v.hdrs) != len(hdrs) {
			rep.problem("volume %v: headers accounted in %d segments, found in %d", v.base, len(v.hdrs), len(hdrs))
		}
		s.checkChain(rep, v, entries)
	}
}

// effective returns a volume's entries in lsn order with superseded copies
// dropped. The cleaner copies records (and merges dead ones into gaps); a
// crash in the middle of cleaning a segment leaves originals behind that a
// later copy or gap covers. The copy is always the newer record (higher
// gseq), so for each lsn the newest record that covers it wins.
func effective(recs []segRecord) []segRecord {
	sort.Slice(recs, func(i, j int) bool { return recs[i].h.GSeq > recs[j].h.GSeq })
	var covered runs
	var out []segRecord
	for _, r := range recs {
		first, last := entryFirst(r.h), r.h.LSN
		if covered.overlaps(first, last) {
			continue
		}
		covered.add(first, last, 0)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].h.LSN < out[j].h.LSN })
	return out
}

func (s *Store) checkChain(rep *Report, v *volume, entries []segRecord) {
	if len(entries) == 0 {
		rep.problem("volume %v: no entries in the log", v.base)
		return
	}
	if k := entries[0].h.Kind; k != KindCreate && k != KindBranch {
		rep.problem("volume %v: first entry is %v, not create or branch", v.base, k)
	}
	for i, r := range entries {
		h := r.h
		if err := h.checkEntropy(r.body); err != nil {
			rep.problem("%v", err)
		}
		if rn := v.runs.find(h.LSN); rn < 0 || v.runs[rn].seg != s.segOf(r.addr) {
			rep.problem("volume %v: runs do not place lsn %d in segment %d", v.base, h.LSN, s.segOf(r.addr))
		}
		// the entries of the owner's epoch are its own (its create or view
		// entry and the entries after it); earlier ones may be another's
		if v.owned && h.Kind != KindGap && h.Epoch == v.epoch {
			if _, id := chainStep(viewSecret(&s.sb.Secret, v.base, h.Epoch), h.Entropy); id != h.ID {
				rep.problem("volume %v: lsn %d: id %v does not derive from its entropy", v.base, h.LSN, h.ID)
			}
		}
		if i == 0 {
			continue
		}
		prev := entries[i-1].h
		if err := checkLink(prev.LSN, prev.ID, prev.Epoch, h); err != nil {
			rep.problem("%v", err)
		}
	}
	last := entries[len(entries)-1].h
	if last.ID != v.head || last.LSN != v.lsn {
		rep.problem("volume %v: last entry lsn %d id %v, head says lsn %d id %v", v.base, last.LSN, last.ID, v.lsn, v.head)
	}
	epochLSN := entries[0].h.LSN
	for _, r := range entries {
		if r.h.Kind == KindView {
			epochLSN = r.h.LSN
		}
	}
	if epochLSN != v.epochLSN || last.Epoch != v.epoch {
		rep.problem("volume %v: epoch %d from lsn %d in the log, index says epoch %d from lsn %d", v.base, last.Epoch, epochLSN, v.epoch, v.epochLSN)
	}
}
