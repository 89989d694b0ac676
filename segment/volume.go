package segment

import (
	"fmt"
	"time"
)

// Volume is a handle on one volume of a store. Handles are cheap; a handle of a
// deleted volume returns ErrNotFound. All methods are safe for concurrent use.
type Volume struct {
	s    *Store
	base ID
	vol  *volume // the volume's state; deleted once the volume is
}

// Head is one line of heads: a volume's base id and current version id.
type Head struct {
	Base, Version ID
}

// Info describes a volume.
type Info struct {
	Base    ID
	Version ID // current version id
	LSN     uint64
	Epoch   uint64
	Size    uint64 // bytes
	Owned   bool   // this store holds the access token (it can write): it created the volume or took it over (TakeOver), and no newer owner or fence was seen since
	Parent  ID     // version the volume reads through to (its branch point), zero for none
	// MappedBytes and ZeroBytes are what the volume's own extent map holds
	// (not counting what it reads through its parent).
	MappedBytes, ZeroBytes uint64
	Extents                int
	// FencedEpoch is the highest epoch this store has seen for the volume:
	// Epoch, or a higher one given to Fence. Apply refuses entries of lower
	// epochs (ErrStaleEpoch).
	FencedEpoch uint64
}

// Blank reports whether the volume was never written: no extents or zeroed
// ranges of its own, and no parent to read through.
func (in Info) Blank() bool { return in.MappedBytes == 0 && in.ZeroBytes == 0 && in.Parent.IsZero() }

// Create makes a new volume of size bytes (a multiple of 512) and holds its
// access token. The creation is durable when Create returns.
func (s *Store) Create(size uint64) (*Volume, error) {
	if size == 0 || size%SectorSize != 0 || size/SectorSize > maxVolumeSectors {
		return nil, fmt.Errorf("create: size %d: %w", size, ErrOutOfRange)
	}
	o := &op{kind: opCreate, size: size, sync: true, recs: []*rec{{h: Header{Base: RandomID()}}}}
	if err := s.run(o); err != nil {
		return nil, err
	}
	return &Volume{s: s, base: o.recs[0].h.Base, vol: o.vol}, nil
}

// Branch makes a new writable volume whose contents are version: the current
// version of any volume, or a version some branch was already taken of.
// It copies no data and no extents (O(1)); the source volume continues
// unchanged. Other versions return ErrVersionUnavailable.
func (s *Store) Branch(version ID) (*Volume, error) {
	o := &op{kind: opBranch, version: version, sync: true, recs: []*rec{{h: Header{Base: RandomID()}}}}
	if err := s.run(o); err != nil {
		return nil, err
	}
	return &Volume{s: s, base: o.recs[0].h.Base, vol: o.vol}, nil
}

// Volume returns the volume with base id base.
func (s *Store) Volume(base ID) (*Volume, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	vol := s.cat.volume(base)
	if vol == nil {
		return nil, fmt.Errorf("volume %v: %w", base, ErrNotFound)
	}
	return &Volume{s: s, base: base, vol: vol}, nil
}

// Delete removes a volume from this store; its space is reclaimed by the
// cleaner. Branches taken of it keep reading the data they need.
func (s *Store) Delete(base ID) error {
	return s.run(&op{kind: opDelete, base: base, sync: true, recs: []*rec{{}}})
}

// Heads returns base:version for every volume, ordered by base id.
func (s *Store) Heads() []Head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	vols := s.cat.volumes()
	out := make([]Head, len(vols))
	for i, v := range vols {
		out[i] = Head{Base: v.base, Version: v.head}
	}
	return out
}

// stateLocked returns the volume's state, nil if it was deleted. The handle
// caches it; a handle made without it looks it up. Caller holds s.mu.
func (v *Volume) stateLocked() *volume {
	vol := v.vol
	if vol == nil {
		vol = v.s.cat.volume(v.base)
	}
	if vol == nil || vol.deleted {
		return nil
	}
	return vol
}

// Base returns the volume's base id.
func (v *Volume) Base() ID { return v.base }

// Info returns the volume's current state.
func (v *Volume) Info() (Info, error) {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	vol := v.stateLocked()
	if vol == nil {
		return Info{}, fmt.Errorf("volume %v: %w", v.base, ErrNotFound)
	}
	data, zero := vol.m.Sectors()
	in := Info{Base: vol.base, Version: vol.head, LSN: vol.lsn, Epoch: vol.epoch, Size: vol.size, Owned: vol.owned,
		MappedBytes: data * SectorSize, ZeroBytes: zero * SectorSize, Extents: vol.m.Len(), FencedEpoch: seenEpoch(vol.epoch, vol.fence)}
	if vol.parent != nil {
		in.Parent = vol.parent.version
	}
	return in, nil
}

// WriteAsync queues a write of p at byte offset off (both multiples of 512) and
// returns at once. done is called exactly once, from the store's writer
// goroutine, when the write is in the log (durable too if fua), or with the
// error; writes are acknowledged in log order. p must not change until done
// is called; done must not block.
//
// A write larger than MaxEntrySectors becomes several records, each valid
// alone, all in one group commit. Errors: ErrOutOfRange, ErrNotFound,
// ErrReadOnly, ErrNoSpace, ErrDeviceFailed, ErrClosed.
func (v *Volume) WriteAsync(p []byte, off int64, fua bool, done func(error)) {
	v.WriteAsyncAt(p, off, fua, func(_ Position, err error) { done(err) })
}

// WriteAsyncAt is WriteAsync whose done also gets the write's place in the
// volume's history: the lsn and version id of its last entry. The replicator
// waits for the replicas to have that lsn before it acknowledges the write.
func (v *Volume) WriteAsyncAt(p []byte, off int64, fua bool, done func(Position, error)) {
	if err := checkRange(off, int64(len(p))); err != nil {
		done(Position{}, err)
		return
	}
	v.submitWrite(dataRecords(p, uint64(off/SectorSize)), fua, int64(len(p)), done)
}

// submitWrite queues the records of one write; done gets its last entry's
// position.
func (v *Volume) submitWrite(recs []*rec, fua bool, n int64, done func(Position, error)) {
	last := recs[len(recs)-1]
	v.s.submit(&op{kind: opWrite, base: v.base, sync: fua, recs: recs,
		done: v.observeWrite(n, func(err error) {
			if err != nil {
				done(Position{}, err)
				return
			}
			done(Position{LSN: last.h.LSN, Version: last.h.ID}, nil)
		})})
}

// observeWrite wraps done to count an acknowledged write of n bytes.
func (v *Volume) observeWrite(n int64, done func(error)) func(error) {
	start := time.Now()
	return func(err error) {
		if m := v.met(); m != nil && err == nil {
			sec := time.Since(start).Seconds()
			v.s.met.writeSeconds.Observe(sec)
			m.writeSec.Observe(sec)
			m.writes.Inc()
			m.writeBytes.Add(float64(n))
		}
		done(err)
	}
}

// met returns the volume's metrics (nil for a handle without its state).
func (v *Volume) met() *volMetrics {
	if v.vol == nil {
		return nil
	}
	return v.vol.met
}

// ZeroAsync queues a write-zeroes (or discard: the same for the store) of n
// bytes at off. The range then reads as zeros, also in a branch whose parent
// holds data there.
func (v *Volume) ZeroAsync(off, n int64, fua bool, done func(error)) {
	v.ZeroAsyncAt(off, n, fua, func(_ Position, err error) { done(err) })
}

// ZeroAsyncAt is ZeroAsync whose done also gets the position of its last
// entry, as WriteAsyncAt.
func (v *Volume) ZeroAsyncAt(off, n int64, fua bool, done func(Position, error)) {
	if err := checkRange(off, n); err != nil {
		done(Position{}, err)
		return
	}
	v.submitWrite(zeroRecords(uint64(off/SectorSize), uint64(n/SectorSize)), fua, n, done)
}

// FlushAsync makes every write acknowledged before it durable, then calls done.
func (v *Volume) FlushAsync(done func(error)) {
	v.s.submit(&op{kind: opFlush, sync: true, done: func(err error) {
		if m := v.met(); m != nil && err == nil {
			m.flushes.Inc()
		}
		done(err)
	}})
}

// WriteAt writes p at off and waits (no FUA). It implements io.WriterAt.
func (v *Volume) WriteAt(p []byte, off int64) (int, error) {
	if err := v.wait(func(d func(error)) { v.WriteAsync(p, off, false, d) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteZeroes zeroes n bytes at off and waits.
func (v *Volume) WriteZeroes(off, n int64) error {
	return v.wait(func(d func(error)) { v.ZeroAsync(off, n, false, d) })
}

// Flush makes every acknowledged write durable.
func (v *Volume) Flush() error { return v.wait(v.FlushAsync) }

func (v *Volume) wait(f func(func(error))) error {
	ch := make(chan error, 1)
	f(func(err error) { ch <- err })
	return <-ch
}

func checkRange(off, n int64) error {
	if off < 0 || n <= 0 || off%SectorSize != 0 || n%SectorSize != 0 {
		return fmt.Errorf("offset %d length %d: %w", off, n, ErrOutOfRange)
	}
	return nil
}

// submit hands o to the writer, or fails it if the store is closing.
func (s *Store) submit(o *op) {
	s.subMu.RLock()
	defer s.subMu.RUnlock()
	if s.closing.Load() {
		o.done(ErrClosed)
		return
	}
	s.ops <- o
}

// run submits o and waits for it.
func (s *Store) run(o *op) error {
	ch := make(chan error, 1)
	o.done = func(err error) { ch <- err }
	s.submit(o)
	return <-ch
}

// dataRecords splits a write into records of at most MaxEntrySectors sectors.
// Zero sectors are not stored: their bitmap bit stays clear.
func dataRecords(p []byte, lba uint64) []*rec {
	var recs []*rec
	for len(p) > 0 {
		n := min(len(p)/SectorSize, MaxEntrySectors)
		r := &rec{h: Header{Kind: KindData, LBA: lba, NSect: uint32(n)}}
		chunk := p[:n*SectorSize]
		for i := 0; i < n; {
			if allZero(chunk[i*SectorSize : (i+1)*SectorSize]) {
				i++
				continue
			}
			j := i
			for j < n && !allZero(chunk[j*SectorSize:(j+1)*SectorSize]) {
				r.h.setPresent(j)
				j++
			}
			r.body = append(r.body, chunk[i*SectorSize:j*SectorSize])
			r.h.NBody += uint32(j - i)
			i = j
		}
		r.bodyCRC = bodyCRC(r.body)
		recs = append(recs, r)
		p, lba = p[n*SectorSize:], lba+uint64(n)
	}
	return recs
}

func zeroRecords(lba, n uint64) []*rec {
	var recs []*rec
	for n > 0 {
		k := min(n, MaxZeroSectors)
		recs = append(recs, &rec{h: Header{Kind: KindData, Flags: FlagZero, LBA: lba, NSect: uint32(k)}})
		lba, n = lba+k, n-k
	}
	return recs
}
