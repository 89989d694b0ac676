package segment

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"cloudfs/segment/device"
)

type opKind uint8

const (
	opWrite      opKind = iota // data records built by the caller
	opFlush                    // no records: the batch syncs
	opCreate                   // a create record
	opBranch                   // a branch record of version
	opDelete                   // a delete record
	opApply                    // verified entries from another store
	opRelocate                 // records the cleaner copies
	opCheckpoint               // checkpoint chunks
	opRetry                    // from the background: space was reclaimed (or not); retry parked ops
	opView                     // a view record: this store takes the volume over in epoch
	opFence                    // no records: the volume's fence rises to epoch
)

// op is one unit of work for the writer. Its records go into the log together
// or not at all, and done is called once, in log order.
type op struct {
	kind     opKind
	base     ID     // the volume (write, create, branch, delete, view, fence)
	version  ID     // branch: the version branched from
	epoch    uint64 // view, fence: the new epoch
	size     uint64
	recs     []*rec
	sync     bool // FUA, flush, metadata: durable before done
	progress bool // opRetry: the background freed space
	noPark   bool // fail with ErrNoSpace rather than park (a delete's last try)
	done     func(error)

	// results
	vol *volume
	err error
}

// rec is a record on its way into the log.
type rec struct {
	h       Header
	body    [][]byte // the body, NBody sectors in all, in pieces
	bodyCRC uint32
	addr    uint64 // assigned by the writer
}

// batch is one group commit: the bytes of consecutive records, written with one
// device write per segment touched.
type batch struct {
	seq     uint64
	ops     []*op // planned ops, in log order
	acked   []*op // every op to acknowledge, planned or failed, in order
	end     writerPos
	wdone   chan error // the device writes' result, when there are any
	regions []region
	sealed  []uint32 // segments this batch seals; they turn sealed when it is applied
	sync    bool
	bytes   int64
}

type region struct {
	off int64 // device byte offset
	buf []byte
}

// pipelineDepth is how many batches may be in flight at once: written to the
// device concurrently (as a raw writer at that queue depth would), completed
// strictly in log order.
const pipelineDepth = 4

func (s *Store) writer() {
	defer s.wg.Done()
	completed := make(chan struct{})
	go s.completer(completed)
	defer func() {
		close(s.complete)
		<-completed
		s.failParked(ErrClosed, false)
	}()
	for {
		select {
		case o := <-s.ops:
			s.dispatch(s.prepare(s.collect(o)))
		case <-s.stop:
			for {
				select {
				case o := <-s.ops:
					s.dispatch(s.prepare(s.collect(o)))
				default:
					return
				}
			}
		}
	}
}

// dispatch starts a prepared batch's device writes and queues it for
// completion. At most pipelineDepth batches are in flight.
func (s *Store) dispatch(b *batch) {
	s.ioSem <- struct{}{}
	if len(b.regions) > 0 {
		b.wdone = make(chan error, 1)
		go func() { b.wdone <- s.writeRegions(b.regions) }()
	}
	s.complete <- b
}

// completer finishes batches in log order.
func (s *Store) completer(done chan<- struct{}) {
	defer close(done)
	for b := range s.complete {
		s.finishBatch(b)
		<-s.ioSem
	}
}

// collect gathers the ops that are already queued behind first, up to
// MaxBatchBytes: this is the group in group commit.
func (s *Store) collect(first *op) []*op {
	ops := []*op{first}
	n := first.bytes()
	for n < int64(s.opts.MaxBatchBytes) {
		select {
		case o := <-s.ops:
			ops = append(ops, o)
			n += o.bytes()
		default:
			return ops
		}
	}
	return ops
}

// internal reports whether o is the store's own (cleaner, checkpoint): such
// ops are never parked behind foreground ones.
func (o *op) internal() bool { return o.kind == opRelocate || o.kind == opCheckpoint }

func (o *op) bytes() int64 {
	var n int64
	for _, r := range o.recs {
		n += r.h.Size()
	}
	return n + HeaderSize
}

// commit prepares, writes and finishes a batch in the calling goroutine: for
// Close's last checkpoint, once the writer and completer have stopped.
func (s *Store) commit(ops []*op) {
	b := s.prepare(ops)
	if len(b.regions) > 0 {
		b.wdone = make(chan error, 1)
		b.wdone <- s.writeRegions(b.regions)
	}
	s.finishBatch(b)
}

// prepare plans every op into the log: validates it against the writer's
// view, fills in its records' chain fields and places their bytes in the
// batch's buffers. An op that fails is acknowledged, in order, with its error.
func (s *Store) prepare(ops []*op) *batch {
	s.batchSeq++
	b := &batch{seq: s.batchSeq}
	ops = s.unpark(ops)
	for _, o := range ops {
		if o.kind != opRetry && len(s.parked) > 0 && !o.internal() {
			s.parked = append(s.parked, o) // keep submission order behind parked ops
			continue
		}
		if err := s.failure(); err != nil {
			o.err = err
		} else {
			o.err = s.plan(b, o)
		}
		if errors.Is(o.err, ErrNoSpace) && !o.internal() && !o.noPark && s.canReclaim() {
			s.park(o)
			continue
		}
		b.acked = append(b.acked, o)
		if o.err == nil {
			b.ops = append(b.ops, o)
			b.sync = b.sync || o.sync
		}
	}
	if len(b.ops) > 0 {
		s.finish(b)
	}
	b.end = s.w
	return b
}

// finishBatch waits for a batch's device writes, syncs if an op asked for
// durability (every earlier batch is complete by then, so the sync covers
// them too), applies its records to the index, and acknowledges its ops in
// order. A batch after a failed one fails too.
func (s *Store) finishBatch(b *batch) {
	if len(b.ops) > 0 {
		var err error
		if b.wdone != nil { // a batch of flushes alone writes nothing
			err = <-b.wdone
		}
		if err == nil {
			err = s.failure()
		}
		if err == nil && b.sync {
			if err = s.dev.Sync(); err != nil {
				err = fmt.Errorf("sync: %w", err)
			} else {
				s.met.syncs.Inc()
			}
		}
		if err != nil {
			err = s.fail(err)
			for _, o := range b.ops {
				o.err = err
			}
		} else {
			s.met.appendBytes.Add(float64(b.bytes))
			s.met.batches.Inc()
			s.applyBatch(b)
		}
		for _, o := range b.ops {
			if o.kind == opBranch {
				s.branchesInFlight.Add(-1)
			}
		}
	}
	s.recycle(b)
	s.appliedSeq.Store(b.seq)
	for _, o := range b.acked {
		if o.done != nil {
			o.done(o.err)
		}
	}
}

// Parking. A foreground op that finds no space while the background can
// reclaim some (segments waiting for a checkpoint, or segments to clean)
// waits, with every foreground op behind it, instead of failing: the
// background checkpoints and cleans, then sends opRetry. The ops fail with
// ErrNoSpace only when a round reclaims nothing.

// canReclaim reports whether waiting for the background may free space.
func (s *Store) canReclaim() bool {
	if s.opts.NoBackground || s.closing.Load() {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pendingFree > 0 || len(s.victimsLocked(1)) > 0
}

func (s *Store) park(o *op) {
	o.err = nil
	s.parked = append(s.parked, o)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// unpark puts the parked ops back at the head of ops when an opRetry arrives,
// or fails them if the background could reclaim nothing.
func (s *Store) unpark(ops []*op) []*op {
	for i, o := range ops {
		if o.kind != opRetry || len(s.parked) == 0 {
			continue
		}
		if !o.progress {
			// Deletes free space and may use the cleaner's room, which the
			// ops ahead of them could not: they get one more try, unparked.
			deletes := s.failParked(fmt.Errorf("nothing left to reclaim: %w", ErrNoSpace), true)
			return append(append(append([]*op{}, ops[:i]...), deletes...), ops[i+1:]...)
		}
		parked := s.parked
		s.parked = nil
		return append(append(append([]*op{}, ops[:i]...), parked...), ops[i:]...)
	}
	return ops
}

// failParked fails the parked ops with err, except, with keepDeletes,
// deletes, which it returns marked noPark.
func (s *Store) failParked(err error, keepDeletes bool) []*op {
	var deletes []*op
	for _, o := range s.parked {
		switch {
		case keepDeletes && o.kind == opDelete:
			o.noPark = true
			deletes = append(deletes, o)
		case o.done != nil:
			o.done(err)
		}
	}
	s.parked = nil
	return deletes
}

// writeChunk is the unit of a batch's device writes: a large batch goes to the
// device as several writes at once, as a raw writer at queue depth > 1 would.
const writeChunk = 1 << 20

// writeRegions writes the regions, up to four 1 MiB chunks at a time. After
// the first error it issues no further write, and it returns that error once
// every write in flight has ended (the buffers are then free to reuse).
func (s *Store) writeRegions(regions []region) error {
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 4)
		mu   sync.Mutex
		errs error
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return errs != nil }
	write := func(p []byte, at int64) {
		if _, err := s.dev.WriteAt(p, at); err != nil {
			mu.Lock()
			errs = cmp.Or(errs, fmt.Errorf("write %d bytes at %d: %w", len(p), at, err))
			mu.Unlock()
		}
	}
	for _, r := range regions {
		for off := 0; off < len(r.buf) && !failed(); off += writeChunk {
			p, at := r.buf[off:min(off+writeChunk, len(r.buf))], r.off+int64(off)
			if len(r.buf) <= writeChunk { // the common small batch: no goroutine
				write(p, at)
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				write(p, at)
			}()
		}
	}
	wg.Wait()
	return errs
}

func (s *Store) applyBatch(b *batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range b.ops {
		for _, r := range o.recs {
			s.applyRecord(&r.h, r.addr)
		}
		if o.kind == opCreate || o.kind == opBranch {
			o.vol = s.cat.volume(o.recs[0].h.Base)
		}
		if o.kind == opFence {
			s.fenceLocked(o.base, o.epoch)
		}
	}
	// Only now, with its records applied, is a segment sealed: the cleaner
	// picks only sealed segments, and a checkpoint sees the applied state.
	for _, seg := range b.sealed {
		s.segs[seg].state = segSealed
		s.maybeEmptyLocked(seg)
	}
	s.logSinceCkpt += b.bytes
	s.applied = b.end
	s.ckptEst = s.ckptBodySizeLocked()
	s.wakeLocked()
}

// wakeLocked wakes every follower waiting for a change. Caller holds s.mu.
func (s *Store) wakeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Store) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wakeLocked()
}

// place appends record r at the log's end, switching segments when it does not
// fit. The caller has checked that space exists.
func (s *Store) place(b *batch, r *rec) {
	size := r.h.Size() / SectorSize
	// keep one sector for the next record that seals the segment
	if s.w.off+size > s.segLimit() {
		s.seal(b)
	}
	r.addr = s.addr(s.w.seg, s.w.off)
	r.h.GSeq = s.w.gseq
	s.w.gseq++
	buf := s.grow(b, int(size)*SectorSize)
	r.h.encode(buf, s.sb.UUID)
	p := buf[HeaderSize:]
	for _, piece := range r.body {
		p = p[copy(p, piece):]
	}
	clear(p)
	s.w.off += size
	b.bytes += size * SectorSize
}

// grow returns the next n bytes of the batch's current region, opening a region
// at the log's end if there is none.
func (s *Store) grow(b *batch, n int) []byte {
	if len(b.regions) == 0 || b.regions[len(b.regions)-1].off+int64(len(b.regions[len(b.regions)-1].buf)) != s.addrBytes() {
		b.regions = append(b.regions, region{off: s.addrBytes(), buf: s.takeBuf()})
	}
	r := &b.regions[len(b.regions)-1]
	l := len(r.buf)
	if l+n > cap(r.buf) {
		nb := device.AlignedBuf(max(2*cap(r.buf), l+n, 256<<10))[:l]
		copy(nb, r.buf)
		r.buf = nb
	}
	r.buf = r.buf[:l+n]
	return r.buf[l:]
}

// segLimit is where records must end in a segment: its last block is kept for
// the next record that seals it (batches end on block boundaries).
func (s *Store) segLimit() int64 { return s.segSectors() - BlockSize/SectorSize }

// takeBuf returns an empty aligned buffer for a batch region, reusing those of
// earlier batches: the writer allocates nothing per batch in steady state.
func (s *Store) takeBuf() []byte {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	if n := len(s.spare); n > 0 {
		b := s.spare[n-1]
		s.spare = s.spare[:n-1]
		return b[:0]
	}
	return device.AlignedBuf(1 << 20)[:0]
}

// recycle keeps a finished batch's buffers for the next ones: at most two,
// of at most MaxBatchBytes plus one record, so the fixed memory stays small;
// a rare larger region (a checkpoint) is left to the garbage collector.
func (s *Store) recycle(b *batch) {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	for _, r := range b.regions {
		if len(s.spare) < 2 && cap(r.buf) <= s.opts.MaxBatchBytes+(2<<20) {
			s.spare = append(s.spare, r.buf)
		}
	}
}

func (s *Store) addrBytes() int64 { return int64(s.addr(s.w.seg, s.w.off)) * SectorSize }

// seal ends the active segment with a next record and continues in a free
// segment. The caller has checked that one exists.
func (s *Store) seal(b *batch) {
	next := s.allocSegment()
	h := Header{Kind: KindNext, Aux: uint64(next), GSeq: s.w.gseq}
	s.w.gseq++
	h.sealSum(0, make([]byte, HeaderSize))
	buf := s.grow(b, BlockSize-int(s.w.off*SectorSize%BlockSize))
	clear(buf) // the rest of the block: no stale bytes of a reused buffer on disk
	h.encode(buf, s.sb.UUID)
	b.bytes += int64(len(buf))
	b.sealed = append(b.sealed, s.w.seg)
	s.w.seg, s.w.off = next, 0
}

// finish pads the batch to a block boundary with a pad record, so that the
// next batch starts in a fresh block and no written block is ever rewritten.
func (s *Store) finish(b *batch) {
	rem := s.w.off % (BlockSize / SectorSize)
	if rem == 0 {
		return
	}
	n := BlockSize/SectorSize - rem
	h := Header{Kind: KindPad, NBody: uint32(n - 1), GSeq: s.w.gseq}
	s.w.gseq++
	h.sealSum(0, make([]byte, HeaderSize))
	buf := s.grow(b, int(n)*SectorSize)
	h.encode(buf, s.sb.UUID)
	clear(buf[HeaderSize:])
	s.w.off += n
	b.bytes += n * SectorSize
}

// allocSegment takes a free segment that no read has pinned; the caller has
// checked that one exists.
func (s *Store) allocSegment() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.segs {
		g := &s.segs[i]
		if g.state == segFree && g.pins.Load() == 0 {
			g.state, g.seq, g.live = segActive, s.w.segSq, 0
			s.w.segSq++
			s.freeSegs--
			return uint32(i)
		}
	}
	panic("segment: allocSegment without a free segment") // callers check space first
}

// reserveSegments is how many free segments foreground writes leave for the
// cleaner and the checkpoint.
func (s *Store) reserveSegments() int { return 2 + s.ckptSegmentsLocked() }

// fits reports whether op o's records, n sectors in all (each at most maxRec
// sectors), can be placed. Free segments are kept in tiers: foreground ops
// leave room for the cleaner and a checkpoint, the cleaner leaves room for a
// checkpoint, and a checkpoint (which frees what cleaning emptied) may use
// everything.
func (s *Store) fits(o *op, n int64, maxRec int64) bool {
	s.mu.RLock()
	free := s.freeSegs
	switch o.kind {
	case opCheckpoint:
	case opRelocate, opDelete: // a delete frees space: it may use the cleaner's room
		free -= s.ckptSegmentsLocked()
	default:
		free -= s.reserveSegments()
	}
	s.mu.RUnlock()
	room := s.segLimit() - s.w.off // what the active segment still takes
	if n <= room {
		return true
	}
	// every further segment loses at most one record's worth to fragmentation
	per := s.segLimit() - maxRec
	need := (n - max(room-maxRec, 0) + per - 1) / per
	return int64(free) >= need
}

// plan validates op o against the writer's view of the chain, fills in the
// chain fields of its records, and places them in the batch. On error nothing
// of o is placed and no state changes.
func (s *Store) plan(b *batch, o *op) error {
	switch o.kind {
	case opFlush, opRetry:
		return nil
	case opWrite:
		return s.planWrite(b, o)
	case opCreate, opBranch:
		return s.planNew(b, o)
	case opDelete:
		return s.planDelete(b, o)
	case opApply:
		return s.planApply(b, o)
	case opView:
		return s.planView(b, o)
	case opFence:
		return s.planFence(o)
	case opRelocate, opCheckpoint:
		return s.placeAll(b, o)
	}
	return fmt.Errorf("segment: unknown op %d", o.kind)
}

// placeAll places o's records if they fit.
func (s *Store) placeAll(b *batch, o *op) error {
	var n, m int64
	for _, r := range o.recs {
		n += r.h.Size() / SectorSize
		m = max(m, r.h.Size()/SectorSize)
	}
	if !s.fits(o, n, m) {
		return fmt.Errorf("%d bytes: %w", n*SectorSize, ErrNoSpace)
	}
	for _, r := range o.recs {
		s.place(b, r)
	}
	return nil
}

func (s *Store) planWrite(b *batch, o *op) error {
	w := s.wchain[o.base]
	if w == nil {
		return fmt.Errorf("volume %v: %w", o.base, ErrNotFound)
	}
	if !w.owned {
		return fmt.Errorf("volume %v: %w", o.base, ErrReadOnly)
	}
	last := o.recs[len(o.recs)-1].h
	if last.LBA+uint64(last.NSect) > w.size/SectorSize {
		return fmt.Errorf("volume %v: write to sector %d of %d: %w", o.base, last.LBA+uint64(last.NSect), w.size/SectorSize, ErrOutOfRange)
	}
	var n, m int64
	for _, r := range o.recs {
		n += r.h.Size() / SectorSize
		m = max(m, r.h.Size()/SectorSize)
	}
	if !s.fits(o, n, m) {
		return fmt.Errorf("volume %v: %d bytes: %w", o.base, n*SectorSize, ErrNoSpace)
	}
	scratch := make([]byte, HeaderSize)
	secret := viewSecret(&s.sb.Secret, o.base, w.epoch)
	for _, r := range o.recs {
		r.h.Base, r.h.Epoch = o.base, w.epoch
		r.h.LSN, r.h.Link = w.lsn+1, w.token
		w.token, w.head = s.seal1(&r.h, r.bodyCRC, secret, scratch)
		w.lsn++
		s.place(b, r)
	}
	return nil
}

// seal1 computes a record's entropy, token and id, and its sum.
func (s *Store) seal1(h *Header, bodyCRC uint32, secret ID, scratch []byte) (token, id ID) {
	h.Entropy = h.entropyOf(bodyCRC, scratch)
	token, h.ID = chainStep(secret, h.Entropy)
	h.sealSum(bodyCRC, scratch)
	return token, h.ID
}

// planNew plans a create or branch record: a new volume whose token this
// store holds.
func (s *Store) planNew(b *batch, o *op) error {
	r := o.recs[0]
	h := &r.h
	h.LSN, h.Epoch, h.LFlags = 1, 1, lflagOwned
	if o.kind == opBranch {
		// Counted before the source is looked up: a checkpoint does not drop
		// released snapshots while a branch may be reading through one.
		s.branchesInFlight.Add(1)
		src, pending, err := s.branchSource(o.version)
		if err == nil && !s.fits(o, 1, 1) {
			err = fmt.Errorf("new volume: %w", ErrNoSpace)
		}
		if err != nil {
			s.branchesInFlight.Add(-1)
			return err
		}
		if !pending {
			s.wsnaps[o.version] = wsnap{src: src, seq: b.seq}
		}
		h.Kind, h.Link, h.Source, h.Aux = KindBranch, o.version, src.base, src.size
	} else {
		if !s.fits(o, 1, 1) {
			return fmt.Errorf("new volume: %w", ErrNoSpace)
		}
		h.Kind, h.Aux = KindCreate, o.size
	}
	secret := viewSecret(&s.sb.Secret, h.Base, h.Epoch)
	token, id := s.seal1(h, 0, secret, make([]byte, HeaderSize))
	s.wchain[h.Base] = &wvol{head: id, token: token, lsn: 1, epoch: h.Epoch, epochLSN: 1, size: h.Aux, owned: true}
	s.place(b, r)
	return nil
}

// branchSource finds what a branch of version would read through: a volume
// whose head (as the writer sees it) is version, a retained snapshot, or a
// snapshot a branch planned earlier will freeze. pending reports that the
// snapshot exists or will exist already.
type branchSrc struct {
	base ID
	size uint64
}

func (s *Store) branchSource(version ID) (src branchSrc, pending bool, err error) {
	for base, w := range s.wchain {
		if w.head == version {
			return branchSrc{base, w.size}, false, nil
		}
	}
	s.mu.RLock()
	sn := s.cat.snapshot(version)
	s.mu.RUnlock()
	if sn != nil {
		return branchSrc{sn.owner, sn.size}, true, nil
	}
	applied := s.appliedSeq.Load()
	for v, p := range s.wsnaps {
		if p.seq <= applied {
			delete(s.wsnaps, v) // applied: the catalog knows it (or dropped it)
		}
	}
	if p, ok := s.wsnaps[version]; ok {
		return p.src, true, nil
	}
	return branchSrc{}, false, fmt.Errorf("branch of %v: not the head of a volume nor a retained snapshot: %w", version, ErrVersionUnavailable)
}

// planView plans a view record: this store takes volume o.base over in
// epoch o.epoch, linking to the head by its public id, and holds the token
// from then on.
func (s *Store) planView(b *batch, o *op) error {
	w := s.wchain[o.base]
	if w == nil {
		return fmt.Errorf("volume %v: %w", o.base, ErrNotFound)
	}
	if o.epoch <= w.epoch || o.epoch < w.fence {
		return fmt.Errorf("volume %v: take over in epoch %d: epoch %d, fenced at %d: %w", o.base, o.epoch, w.epoch, w.fence, ErrStaleEpoch)
	}
	if !s.fits(o, 1, 1) {
		return fmt.Errorf("volume %v: view entry: %w", o.base, ErrNoSpace)
	}
	r := o.recs[0]
	h := &r.h
	h.Kind, h.Base, h.LSN, h.Epoch, h.Link, h.LFlags = KindView, o.base, w.lsn+1, o.epoch, w.head, lflagOwned
	token, id := s.seal1(h, 0, viewSecret(&s.sb.Secret, o.base, o.epoch), make([]byte, HeaderSize))
	w.head, w.token, w.lsn, w.epoch, w.epochLSN, w.owned = id, token, h.LSN, h.Epoch, h.LSN, true
	s.place(b, r)
	return nil
}

// planFence raises the writer's fence of volume o.base: ops planned after it
// are checked against it, and an owner of a lower epoch stops writing.
func (s *Store) planFence(o *op) error {
	w := s.wchain[o.base]
	if w == nil {
		return fmt.Errorf("volume %v: %w", o.base, ErrNotFound)
	}
	w.fence = max(w.fence, o.epoch)
	if w.epoch < w.fence {
		w.owned, w.token = false, ID{}
	}
	return nil
}

func (s *Store) planDelete(b *batch, o *op) error {
	if s.wchain[o.base] == nil {
		return fmt.Errorf("volume %v: %w", o.base, ErrNotFound)
	}
	if !s.fits(o, 1, 1) {
		return fmt.Errorf("delete: %w", ErrNoSpace)
	}
	r := o.recs[0]
	r.h.Kind, r.h.Base = KindDelete, o.base
	r.h.sealSum(0, make([]byte, HeaderSize))
	delete(s.wchain, o.base)
	s.place(b, r)
	return nil
}

// bodyCRC returns the crc32c of a body given in pieces.
func bodyCRC(pieces [][]byte) uint32 {
	var c uint32
	for _, p := range pieces {
		c = crc32.Update(c, crcTable, p)
	}
	return c
}
