package segment

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
)

// A stream carries a volume's entries, from a version to the head, between
// stores: a 512-byte stream header, then records exactly as in the log (the
// portable part verbatim, local fields zeroed). docs/FORMAT.md "Streams".

var streamMagic = [8]byte{'C', 'F', 'S', 'T', 'R', 'E', 'A', 'M'}

// Position names a version of a volume: the receiver's lsn and version id.
// The zero Position is "before the volume existed".
type Position struct {
	LSN     uint64
	Version ID
}

// StreamHeader starts every stream.
type StreamHeader struct {
	Base ID
	From Position // the stream carries the entries after From
}

// stream header layout, 512 bytes:
//
//	off size field
//	  0    8 magic "CFSTREAM"
//	  8    4 stream version (1)
//	 12   20 base
//	 32    8 from lsn
//	 40   20 from version
//	 60  448 zero
//	508    4 crc32c of [0, 508)

func (sh *StreamHeader) encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b, streamMagic[:])
	binary.LittleEndian.PutUint32(b[8:], 1)
	copy(b[12:32], sh.Base[:])
	binary.LittleEndian.PutUint64(b[32:], sh.From.LSN)
	copy(b[40:60], sh.From.Version[:])
	binary.LittleEndian.PutUint32(b[508:], crcOf(b[:508]))
	return b
}

// DecodeStreamHeader parses the first 512 bytes of a stream.
func DecodeStreamHeader(b []byte) (*StreamHeader, error) {
	if len(b) < HeaderSize || [8]byte(b[:8]) != streamMagic {
		return nil, fmt.Errorf("stream header: bad magic: %w", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != 1 {
		return nil, fmt.Errorf("stream header: version %d: %w", v, ErrUnsupportedFormat)
	}
	if got, want := crcOf(b[:508]), binary.LittleEndian.Uint32(b[508:]); got != want {
		return nil, fmt.Errorf("stream header: crc %08x != %08x: %w", got, want, ErrCorrupt)
	}
	if !allZero(b[60:508]) {
		return nil, fmt.Errorf("stream header: reserved bytes set: %w", ErrCorrupt)
	}
	sh := &StreamHeader{Base: ID(b[12:32]), From: Position{LSN: binary.LittleEndian.Uint64(b[32:]), Version: ID(b[40:60])}}
	if (sh.From.LSN == 0) != sh.From.Version.IsZero() {
		return nil, fmt.Errorf("stream header: lsn %d with version %v: %w", sh.From.LSN, sh.From.Version, ErrCorrupt)
	}
	return sh, nil
}

// StreamStats says what a stream carried.
type StreamStats struct {
	Entries int
	Bytes   int64
	To      Position
}

// Stream writes to w the entries of volume base after from, up to the head it
// has when the call starts. If from names a version this store does not have
// at that lsn, it returns ErrLink (the histories diverged); if the entries
// after from were compacted into a gap that starts before from, it returns
// ErrVersionUnavailable (the receiver needs a full copy).
func (s *Store) Stream(w io.Writer, base ID, from Position) (StreamStats, error) {
	return s.stream(context.Background(), w, base, from, false)
}

// Follow is Stream that does not end at the head: once it has written the
// entries up to the head, it writes each new entry of the volume as it is
// committed, until ctx is done (it then returns ctx's error), the volume is
// deleted (ErrNotFound), the store closes (ErrClosed) or a write to w fails.
// Every round of entries ends with one Write to w, so a w that flushes on
// Write (an HTTP response) sends entries as they are committed.
func (s *Store) Follow(ctx context.Context, w io.Writer, base ID, from Position) (StreamStats, error) {
	return s.stream(ctx, w, base, from, true)
}

func (s *Store) stream(ctx context.Context, w io.Writer, base ID, from Position, follow bool) (StreamStats, error) {
	head, changed, err := s.headOf(base)
	if err != nil {
		return StreamStats{}, fmt.Errorf("stream %v: %w", base, err)
	}
	st := StreamStats{To: from}
	if from.LSN > head.LSN {
		return st, fmt.Errorf("stream %v: from lsn %d beyond head %d: %w", base, from.LSN, head.LSN, ErrLink)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	sh := StreamHeader{Base: base, From: from}
	if _, err := bw.Write(sh.encode()); err != nil {
		return st, err
	}
	verify := from.LSN > 0 // the first round checks that from is in this history
	var cur cursor
	for {
		if err := s.streamRange(bw, base, &st, head, verify, &cur); err != nil {
			return st, fmt.Errorf("stream %v: %w", base, err)
		}
		if err := bw.Flush(); err != nil || !follow {
			return st, err
		}
		verify = false
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-changed:
		}
		if head, changed, err = s.headOf(base); err != nil {
			return st, fmt.Errorf("stream %v: %w", base, err)
		}
	}
}

// headOf returns the volume's committed head and the channel closed at the
// next change of the store.
func (s *Store) headOf(base ID) (Position, <-chan struct{}, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closing.Load() {
		return Position{}, nil, ErrClosed
	}
	v := s.cat.volume(base)
	if v == nil {
		return Position{}, nil, ErrNotFound
	}
	return Position{LSN: v.lsn, Version: v.head}, s.changed, nil
}

// streamRange writes the entries after st.To up to head and advances st.
// With verify, it first checks that st.To is a version of this history.
func (s *Store) streamRange(bw *bufio.Writer, base ID, st *StreamStats, head Position, verify bool, cur *cursor) error {
	from := st.To
	next := from.LSN + 1
	for next <= head.LSN || (verify && next == from.LSN+1) {
		recs, err := s.entriesFrom(base, from, next, head.LSN, cur)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if err := writeWire(bw, r.h, r.body); err != nil {
				return err
			}
			st.Entries++
			st.Bytes += r.h.Size()
			st.To = Position{LSN: r.h.LSN, Version: r.h.ID}
			next = r.h.LSN + 1
			*cur = cursor{seg: s.segOf(r.addr), addr: r.addr, lsn: r.h.LSN, id: r.h.ID}
		}
	}
	return nil
}

// entriesFrom returns the volume's entries with lsn >= next (up to last) from
// the segment the run containing next points to, in lsn order, checking the
// version at from.LSN when that segment holds it.
func (s *Store) entriesFrom(base ID, from Position, next, last uint64, cur *cursor) ([]segRecord, error) {
	want := next
	if from.LSN > 0 && next == from.LSN+1 {
		want = from.LSN // verify the receiver's version first
	}
	s.mu.RLock()
	v := s.cat.volume(base)
	if v == nil {
		s.mu.RUnlock()
		return nil, ErrNotFound
	}
	i := v.runs.find(want)
	if i < 0 {
		s.mu.RUnlock()
		return nil, fmt.Errorf("lsn %d is in no segment: %w", want, ErrVersionUnavailable)
	}
	rn := v.runs[i]
	s.segs[rn.seg].pins.Add(1)
	s.mu.RUnlock()
	var recs []segRecord
	var err error
	if cur != nil && cur.lsn+1 == next && cur.seg == rn.seg {
		recs = s.readVolumeRecordsAfter(*cur, base)
		if len(recs) == 0 || recs[len(recs)-1].h.LSN < next {
			recs = nil // not found after the cursor: read the segment
		}
	}
	if recs == nil {
		recs, err = s.readVolumeRecords(rn.seg, base)
	}
	s.segs[rn.seg].pins.Add(-1)
	if err != nil {
		return nil, err
	}
	var out []segRecord
	for _, r := range recs {
		first := r.h.LSN
		if r.h.Kind == KindGap {
			first = r.h.FirstLSN
		}
		if r.h.LSN < want || first > last {
			continue
		}
		if want == from.LSN && r.h.LSN == from.LSN {
			if r.h.ID != from.Version {
				return nil, fmt.Errorf("lsn %d is version %v here, %v there: %w", from.LSN, r.h.ID, from.Version, ErrLink)
			}
			continue
		}
		if first < next {
			return nil, fmt.Errorf("lsns %d..%d were compacted into one gap: %w", first, r.h.LSN, ErrVersionUnavailable)
		}
		out = append(out, r)
	}
	if len(out) == 0 && want == from.LSN {
		// from's entry checked out (or is the head); continue after it
		if from.LSN == last {
			return nil, nil
		}
		return s.entriesFrom(base, Position{}, next, last, cur)
	}
	if len(out) == 0 || entryFirst(out[0].h) != next {
		return nil, fmt.Errorf("lsn %d not found in segment %d: %w", next, rn.seg, ErrVersionUnavailable)
	}
	// keep only the contiguous prefix from next
	for k := 1; k < len(out); k++ {
		if entryFirst(out[k].h) != out[k-1].h.LSN+1 {
			out = out[:k]
			break
		}
	}
	return out, nil
}

func entryFirst(h *Header) uint64 {
	if h.Kind == KindGap {
		return h.FirstLSN
	}
	return h.LSN
}

// cursor is where the last entry a followed stream sent is in the log, so
// that the next round reads on from there instead of from the start of its
// segment: a round then costs what it sends, not a segment's worth of reads.
type cursor struct {
	seg  uint32
	addr uint64 // sector address of the entry
	lsn  uint64
	id   ID
}

// readVolumeRecordsAfter returns the chained records of volume base after
// the cursor's entry in the cursor's segment (up to the applied end of the
// active segment), sorted by lsn; nil if the entry is no longer there (the
// segment was cleaned and reused) or the log does not read: the caller
// then reads the whole segment.
func (s *Store) readVolumeRecordsAfter(cur cursor, base ID) []segRecord {
	s.mu.RLock()
	active, applied := s.segs[cur.seg].state == segActive, s.applied
	s.mu.RUnlock()
	r := s.newLogReader(cur.addr, 0)
	if active {
		if applied.seg != cur.seg {
			return nil
		}
		r.end = s.addr(cur.seg, applied.off)
	}
	hb, err := r.bytes(cur.addr, HeaderSize)
	if err != nil {
		return nil
	}
	h, err := decodeHeader(hb, s.sb.UUID)
	if err != nil || h.Base != base || h.LSN != cur.lsn || h.ID != cur.id {
		return nil
	}
	r.gseq = h.GSeq
	if _, _, _, err := r.next(); err != nil { // the cursor's own entry
		return nil
	}
	var recs []segRecord
	for {
		h, body, addr, err := r.next()
		if err != nil {
			// the active segment ends where nothing verifies, at the applied end
			if !active || (!errors.Is(err, errEndOfLog) && !errors.Is(err, ErrCorrupt)) {
				return nil
			}
			break
		}
		if h.Kind == KindNext {
			break
		}
		if h.Kind.chained() && h.Base == base {
			recs = append(recs, segRecord{h: h, body: append([]byte(nil), body...), addr: addr})
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].h.LSN < recs[j].h.LSN })
	return recs
}

// readVolumeRecords returns the chained records of volume base in segment
// seg, sorted by lsn.
func (s *Store) readVolumeRecords(seg uint32, base ID) ([]segRecord, error) {
	var recs []segRecord
	all, err := s.readSegmentTail(seg)
	if err != nil {
		return nil, err
	}
	for _, r := range all {
		if r.h.Kind.chained() && r.h.Base == base {
			recs = append(recs, r)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].h.LSN < recs[j].h.LSN })
	return recs, nil
}

// readSegmentTail reads the records of a segment: up to its next record if it
// is sealed, up to the last applied record if it is the active one. It never
// reads where a batch may be being written.
func (s *Store) readSegmentTail(seg uint32) ([]segRecord, error) {
	s.mu.RLock()
	active, applied := s.segs[seg].state == segActive, s.applied
	s.mu.RUnlock()
	if !active {
		return s.readSegment(seg)
	}
	if applied.seg != seg {
		return nil, nil // nothing of the active segment is applied yet
	}
	end := s.addr(seg, applied.off)
	recs, err := s.readSegmentTo(seg, end)
	// the active segment ends where nothing verifies: at the applied end, or
	// before it in a store opened read-only, whose recovery pad is not written
	if err != nil && !errors.Is(err, errEndOfLog) && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	return recs, nil
}

// writeWire writes a record in the wire format: its portable bytes with the
// local fields zeroed, then its body.
func writeWire(w io.Writer, h *Header, body []byte) error {
	b := make([]byte, HeaderSize)
	copy(b, recordMagic[:])
	h.encodePortable(b)
	if _, err := w.Write(b); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// ApplyStats says what Apply did.
type ApplyStats struct {
	Entries, Skipped int
	Bytes            int64
}

// applyChunkBytes bounds the entries Apply verifies before appending them in
// one all-or-nothing group commit.
const applyChunkBytes = 64 << 20

// Apply reads a stream and appends its entries to this store, which then has
// the same version ids as the sender. Every entry is verified (sum, kind,
// lsn, epoch and chain link) before anything is appended; entries are
// appended in verified chunks of up to 64 MiB, each all or nothing, so an
// entry that does not verify leaves the volume at the last good chunk — a
// version of the sender's history. Errors wrap ErrCorrupt (bytes that do not
// verify, a truncated stream), ErrLink (an entry that does not extend the
// chain, a fork), ErrStaleEpoch together with ErrLink (an entry of an epoch
// older than this store has seen for the volume: an old owner's; see
// TakeOver and Fence), ErrUnsupportedFormat, ErrVersionUnavailable (a branch
// of a version this store lacks) or ErrNoSpace. Entries this store already
// has are skipped. A view entry applied makes this store not the volume's
// owner (if it was).
func (s *Store) Apply(r io.Reader) (ApplyStats, error) {
	return s.apply(r, nil)
}

// ApplyLive is Apply for a stream that stays open (GET .../stream with
// follow): it also appends what it has verified whenever the stream pauses
// (nothing more is buffered), so that every entry is appended soon after it
// arrives, and calls applied (if not nil) after each append with the
// volume's new position. It returns when the stream ends or fails.
func (s *Store) ApplyLive(r io.Reader, applied func(Position)) (ApplyStats, error) {
	if applied == nil {
		applied = func(Position) {}
	}
	return s.apply(r, applied)
}

func (s *Store) apply(r io.Reader, applied func(Position)) (ApplyStats, error) {
	var st ApplyStats
	br := bufio.NewReaderSize(r, 1<<20)
	hb := make([]byte, HeaderSize)
	if _, err := io.ReadFull(br, hb); err != nil {
		return st, fmt.Errorf("apply: stream header: %w: %w", err, ErrCorrupt)
	}
	sh, err := DecodeStreamHeader(hb)
	if err != nil {
		return st, fmt.Errorf("apply: %w", err)
	}
	sv := newShadow(s)
	for {
		recs, size, end, err := readChunk(br, sh.Base, sv, &st, applied != nil)
		if len(recs) > 0 && err == nil {
			if err := s.run(&op{kind: opApply, recs: recs, sync: true}); err != nil {
				return st, fmt.Errorf("apply: %w", err)
			}
			st.Entries += len(recs)
			st.Bytes += size
			if applied != nil {
				last := recs[len(recs)-1].h
				applied(Position{LSN: last.LSN, Version: last.ID})
			}
		}
		if err != nil {
			return st, fmt.Errorf("apply: entry %d: %w", st.Entries+st.Skipped+1, err)
		}
		if end {
			return st, nil
		}
	}
}

// readChunk reads and verifies entries up to applyChunkBytes, or, if live,
// up to where the stream pauses.
func readChunk(br *bufio.Reader, base ID, sv *shadow, st *ApplyStats, live bool) (recs []*rec, size int64, end bool, err error) {
	for size < applyChunkBytes && (!live || len(recs) == 0 || br.Buffered() > 0) {
		hb := make([]byte, HeaderSize)
		if _, err := io.ReadFull(br, hb); err != nil {
			if err == io.EOF {
				return recs, size, true, nil
			}
			return nil, 0, false, fmt.Errorf("header: %w: %w", err, ErrCorrupt)
		}
		h, err := DecodeWireHeader(hb)
		if err != nil {
			return nil, 0, false, err
		}
		body := make([]byte, int(h.NBody)*SectorSize)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, 0, false, fmt.Errorf("body of lsn %d: %w: %w", h.LSN, err, ErrCorrupt)
		}
		if err := h.checkBody(hb, body); err != nil {
			return nil, 0, false, err
		}
		if err := h.checkEntropy(body); err != nil {
			return nil, 0, false, err
		}
		if h.Base != base {
			return nil, 0, false, fmt.Errorf("entry of volume %v in a stream of %v: %w", h.Base, base, ErrCorrupt)
		}
		skip, err := sv.accept(h)
		if err != nil {
			return nil, 0, false, err
		}
		if skip {
			st.Skipped++
			continue
		}
		recs = append(recs, &rec{h: *h, body: [][]byte{body}, bodyCRC: crcOf(body)})
		size += h.Size()
	}
	return recs, size, false, nil
}

// shadow is the chain state Apply verifies against before the writer does it
// again: the store's, plus what earlier entries of the stream changed.
type shadow struct {
	s      *Store
	vols   map[ID]*chainState
	writer bool // look volumes up in the writer's view, not the catalog
}

type chainState struct {
	lsn      uint64
	head     ID
	epoch    uint64
	epochLSN uint64 // lsn of the first entry of epoch
	fence    uint64
	size     uint64
}

func newShadow(s *Store) *shadow { return &shadow{s: s, vols: map[ID]*chainState{}} }

func (sv *shadow) state(base ID) *chainState {
	if c := sv.vols[base]; c != nil {
		return c
	}
	if sv.writer {
		w := sv.s.wchain[base]
		if w == nil {
			return nil
		}
		c := &chainState{lsn: w.lsn, head: w.head, epoch: w.epoch, epochLSN: w.epochLSN, fence: w.fence, size: w.size}
		sv.vols[base] = c
		return c
	}
	sv.s.mu.RLock()
	defer sv.s.mu.RUnlock()
	v := sv.s.cat.volume(base)
	if v == nil {
		return nil
	}
	c := &chainState{lsn: v.lsn, head: v.head, epoch: v.epoch, epochLSN: v.epochLSN, fence: v.fence, size: v.size}
	sv.vols[base] = c
	return c
}

// accept verifies h against the chain; skip is set for entries already here.
func (sv *shadow) accept(h *Header) (skip bool, err error) {
	c := sv.state(h.Base)
	switch {
	case h.Kind == KindCreate || h.Kind == KindBranch:
		if c != nil {
			return true, nil
		}
		if h.Kind == KindBranch {
			if err := sv.branchable(h.Link); err != nil {
				return false, err
			}
		}
		sv.vols[h.Base] = &chainState{lsn: 1, head: h.ID, epoch: h.Epoch, epochLSN: 1, size: h.Aux}
		return false, nil
	case c == nil:
		return false, fmt.Errorf("entry lsn %d of unknown volume %v: %w", h.LSN, h.Base, ErrLink)
	case h.LSN == c.lsn && h.ID == c.head:
		return true, nil
	case h.LSN <= c.lsn && h.Epoch > c.epoch:
		// entries up to the head have epochs up to the head's: this one is
		// of another history
		return false, fmt.Errorf("volume %v lsn %d: epoch %d in the stream, head lsn %d of epoch %d here (fork): %w", h.Base, h.LSN, h.Epoch, c.lsn, c.epoch, ErrLink)
	case h.LSN < c.epochLSN:
		return true, nil // an entry of an earlier epoch, taken as in this history
	case h.Epoch < seenEpoch(c.epoch, c.fence) && (h.LSN > c.lsn || h.Epoch < c.epoch):
		// a new entry of an epoch below the one seen, or an entry where this
		// history has the head's epoch already: an old owner's
		return false, fmt.Errorf("volume %v lsn %d: epoch %d, this store has seen epoch %d: %w: %w", h.Base, h.LSN, h.Epoch, seenEpoch(c.epoch, c.fence), ErrStaleEpoch, ErrLink)
	case h.LSN < c.lsn:
		return true, nil
	case h.LSN == c.lsn:
		return false, fmt.Errorf("volume %v lsn %d: version %v here, %v in the stream (fork): %w", h.Base, h.LSN, c.head, h.ID, ErrLink)
	}
	if err := checkExtent(c.size, h); err != nil {
		return false, err
	}
	if err := checkLink(c.lsn, c.head, c.epoch, h); err != nil {
		return false, err
	}
	c.lsn, c.head, c.epoch = h.LSN, h.ID, h.Epoch
	if h.Kind == KindView {
		c.epochLSN = h.LSN
	}
	return false, nil
}

// branchable checks that a branch of version can be applied here: in the
// writer's view for the writer, in the catalog for Apply's first pass.
func (sv *shadow) branchable(version ID) error {
	if sv.writer {
		_, _, err := sv.s.branchSource(version)
		return err
	}
	sv.s.mu.RLock()
	defer sv.s.mu.RUnlock()
	if sv.s.cat.snapshot(version) == nil && sv.s.headVolume(version) == nil {
		return fmt.Errorf("branch of %v: not the head of a volume nor a retained snapshot here: %w", version, ErrVersionUnavailable)
	}
	return nil
}

// planApply re-verifies an apply op against the writer's view and places it.
func (s *Store) planApply(b *batch, o *op) error {
	sv := newShadow(s)
	sv.writer = true
	for _, r := range o.recs {
		r.h.LFlags, r.h.Owner, r.h.From = 0, ID{}, 0
	}
	// Entries a concurrent Apply appended since this one verified them are
	// skipped here, as Apply skips those it finds already present.
	var keep []*rec
	for _, r := range o.recs {
		skip, err := sv.accept(&r.h)
		if err != nil {
			return err
		}
		if !skip {
			keep = append(keep, r)
		}
	}
	o.recs = keep
	if err := s.placeAll(b, o); err != nil {
		return err
	}
	for _, r := range o.recs { // later ops see these entries
		h := &r.h
		if h.Kind == KindCreate || h.Kind == KindBranch {
			s.wchain[h.Base] = &wvol{head: h.ID, lsn: 1, epoch: h.Epoch, epochLSN: 1, size: h.Aux}
			continue
		}
		w := s.wchain[h.Base]
		w.head, w.lsn, w.epoch = h.ID, h.LSN, h.Epoch
		if h.Kind == KindView { // another store owns the volume now
			w.epochLSN, w.owned, w.token = h.LSN, false, ID{}
		}
	}
	return nil
}

// Locate returns the position of version in volume base's history: its head,
// a retained snapshot, or an entry still in the log (read from the volume's
// segments, newest first). It returns ErrVersionUnavailable when the version
// is not in this store's history of the volume (another history, or
// compacted into a gap), ErrNotFound for an unknown volume.
func (s *Store) Locate(base ID, version ID) (Position, error) {
	s.mu.RLock()
	v := s.cat.volume(base)
	if v == nil {
		s.mu.RUnlock()
		return Position{}, fmt.Errorf("locate %v in %v: %w", version, base, ErrNotFound)
	}
	if v.head == version {
		defer s.mu.RUnlock()
		return Position{LSN: v.lsn, Version: version}, nil
	}
	if sn := s.cat.snapshot(version); sn != nil && sn.owner == base {
		defer s.mu.RUnlock()
		return Position{LSN: sn.lsn, Version: version}, nil
	}
	rs := slices.Clone(v.runs)
	s.mu.RUnlock()
	for i := len(rs) - 1; i >= 0; i-- {
		if i < len(rs)-1 && rs[i].seg == rs[i+1].seg {
			continue // read already
		}
		recs, err := s.readVolumeRecords(rs[i].seg, base)
		if err != nil {
			return Position{}, fmt.Errorf("locate %v in %v: %w", version, base, err)
		}
		for _, r := range recs {
			if r.h.ID == version && r.h.Kind != KindGap {
				return Position{LSN: r.h.LSN, Version: version}, nil
			}
		}
	}
	return Position{}, fmt.Errorf("locate %v in %v: %w", version, base, ErrVersionUnavailable)
}
