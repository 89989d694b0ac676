package segment_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/cryptotest"

	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"
)

// seedFlag replays one seed of the seeded random tests (crash and model):
//
//	go test ./segment -run 'TestCrash/seed=17$' -seed 17 -v
var seedFlag = flag.Uint64("seed", 0, "run only this seed of TestCrash*, TestModel (0: all)")

// checkEachFlag bisects a failing crash seed: after every op, Check an image
// of the device with every write kept (what recovery would see if nothing
// were lost), so the first op that breaks the store stands out.
var checkEachFlag = flag.Bool("crash.checkeach", false, "TestCrash: Check a full image of the device after every op")

// seeds returns the seeds a seeded test runs: 1..n (nShort with -short, a
// fifth of n with -race, which runs them several times slower), or the one
// given with -seed.
func seeds(n, nShort int) []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	switch {
	case testing.Short():
		n = nShort
	case raceEnabled():
		n = max(n/5, nShort)
	}
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, kv := range bi.Settings {
		if kv.Key == "-race" {
			return kv.Value == "true"
		}
	}
	return false
}

// randData returns n bytes (a multiple of 512) of random sectors, about
// zeroPct percent of them all zeros (stored as bitmap bits, not body).
func randData(rng *rand.Rand, n int, zeroPct int) []byte {
	p := make([]byte, n)
	for s := 0; s < n; s += segment.SectorSize {
		if rng.IntN(100) < zeroPct {
			continue
		}
		for i := s; i < s+segment.SectorSize; i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				p[i+j] = byte(v >> (8 * j))
			}
		}
	}
	return p
}

// readAll returns the whole contents of v.
func readAll(t testing.TB, v *segment.Volume) []byte {
	t.Helper()
	in, err := v.Info()
	if err != nil {
		t.Fatalf("Info(%v): %v", v.Base(), err)
	}
	p := make([]byte, in.Size)
	if _, err := v.ReadAt(p, 0); err != nil {
		t.Fatalf("ReadAt(%v, whole volume): %v", v.Base(), err)
	}
	return p
}

// firstDiff describes where got and want first differ, for failure messages.
func firstDiff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			end := i
			for end < len(got) && got[end] != want[end] {
				end++
			}
			return fmt.Sprintf("first difference at byte %d (sector %d), %d bytes differ from there: got %x want %x",
				i, i/segment.SectorSize, end-i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
		}
	}
	return "equal"
}

// mustOpenVolume returns the handle of volume base in st.
func mustOpenVolume(t testing.TB, st *segment.Store, base segment.ID) *segment.Volume {
	t.Helper()
	v, err := st.Volume(base)
	if err != nil {
		t.Fatalf("Volume(%v): %v", base, err)
	}
	return v
}

// ---- the crash oracle -------------------------------------------------------

// crashOp is one acknowledged record-sized piece of a write in the crash
// model: a write larger than MaxEntrySectors becomes several records, each
// valid alone, so a crash may keep a prefix of them; each is its own op.
type crashOp struct {
	off  int64
	data []byte // nil: zeros
	n    int64
	seq  uint64 // global acknowledgement order
}

// crashVol is the model of one volume since the start of the current epoch
// (its creation, its branch, or the last recovery).
type crashVol struct {
	base  segment.ID
	size  int64
	start []byte    // contents at the start of the epoch
	lsn0  uint64    // its lsn then: every op adds one record, hence one lsn
	ops   []crashOp // acknowledged since, in acknowledgement (= log) order
}

// state returns the contents after the first k ops.
func (cv *crashVol) state(k int) []byte {
	p := bytes.Clone(cv.start)
	for _, o := range cv.ops[:k] {
		applyOp(p, o)
	}
	return p
}

func applyOp(p []byte, o crashOp) {
	if o.data == nil {
		clear(p[o.off : o.off+o.n])
	} else {
		copy(p[o.off:], o.data)
	}
}

// crashModel records every acknowledged op of every volume and the durability
// promises made so far. Ops are acknowledged by the store's writer goroutine,
// in log order, so the order callbacks run in is the log order.
type crashModel struct {
	t  testing.TB
	mu sync.Mutex
	// seq numbers acknowledgements store-wide.
	seq uint64
	// durable: every op with seq < durable must survive a crash, because a
	// flush, FUA write or synchronous call submitted after its acknowledgement
	// has completed.
	durable uint64
	vols    map[segment.ID]*crashVol
	order   []segment.ID // vols in creation order: picking by index keeps a seed's ops deterministic
	errs    []error      // unexpected errors from asynchronous ops
	noSpace atomic.Int64
}

func newCrashModel(t testing.TB) *crashModel {
	return &crashModel{t: t, vols: map[segment.ID]*crashVol{}}
}

// acked is the sequence number the next acknowledgement gets: everything
// acknowledged so far is below it.
func (m *crashModel) acked() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}

// promise records that everything acknowledged before seq is durable.
func (m *crashModel) promise(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.durable = max(m.durable, seq)
}

func (m *crashModel) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, err)
}

// writeAsync submits a write (data != nil) or a write-zeroes of n bytes and
// records it in the model when it is acknowledged. wg, if not nil, is done
// when it completes.
func (m *crashModel) writeAsync(v *segment.Volume, off int64, data []byte, n int64, fua bool, wg *sync.WaitGroup) {
	if wg != nil {
		wg.Add(1)
	}
	done := func(err error) {
		if wg != nil {
			defer wg.Done()
		}
		switch {
		case errors.Is(err, segment.ErrNoSpace):
			m.noSpace.Add(1) // not performed: not in the model
			return
		case err != nil:
			m.fail(fmt.Errorf("write of %d bytes at %d to %v: %w", n, off, v.Base(), err))
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		cv := m.vols[v.Base()]
		if data == nil {
			cv.ops = append(cv.ops, crashOp{off: off, n: n, seq: m.seq})
			m.seq++
		} else {
			const rec = segment.MaxEntrySectors * segment.SectorSize
			for i := int64(0); i < n; i += rec {
				k := min(rec, n-i)
				cv.ops = append(cv.ops, crashOp{off: off + i, data: data[i : i+k], n: k, seq: m.seq})
				m.seq++
			}
		}
		if fua {
			m.durable = max(m.durable, m.seq)
		}
	}
	if data != nil {
		v.WriteAsync(data, off, fua, done)
	} else {
		v.ZeroAsync(off, n, fua, done)
	}
}

// write is writeAsync waiting for the acknowledgement.
func (m *crashModel) write(v *segment.Volume, off int64, data []byte, n int64, fua bool) {
	var wg sync.WaitGroup
	m.writeAsync(v, off, data, n, fua, &wg)
	wg.Wait()
}

// flushAsync submits a flush of v; when it completes, everything
// acknowledged before it was submitted is durable.
func (m *crashModel) flushAsync(v *segment.Volume, wg *sync.WaitGroup) {
	at := m.acked()
	wg.Add(1)
	v.FlushAsync(func(err error) {
		defer wg.Done()
		if err != nil {
			m.fail(fmt.Errorf("flush of %v: %w", v.Base(), err))
			return
		}
		m.promise(at)
	})
}

// syncCall runs a call that is durable when it returns (create, branch,
// delete, checkpoint): on success, everything acknowledged before it is.
func (m *crashModel) syncCall(fn func() error) error {
	at := m.acked()
	err := fn()
	if err == nil {
		m.promise(at)
	}
	return err
}

func (m *crashModel) addVolume(v *segment.Volume, start []byte) {
	in, err := v.Info()
	if err != nil {
		m.t.Fatalf("Info(%v): %v", v.Base(), err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vols[v.Base()] = &crashVol{base: v.Base(), size: int64(in.Size), start: start, lsn0: in.LSN}
	m.order = append(m.order, v.Base())
}

func (m *crashModel) remove(base segment.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.vols, base)
	m.order = slices.DeleteFunc(m.order, func(b segment.ID) bool { return b == base })
}

func (m *crashModel) bases() []segment.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.order)
}

// current returns the model's contents of base: every acknowledged op.
func (m *crashModel) current(base segment.ID) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	cv := m.vols[base]
	return cv.state(len(cv.ops))
}

// verify checks a store recovered from a crash image against the model, with
// durable the promise made before the image was taken: every volume the model
// has exists (and no other); each holds the state after a prefix of its
// acknowledged ops, that prefix being as long as its lsn says and including
// every op promised durable. Then it rebases the model on what it found.
func (m *crashModel) verify(t testing.TB, st *segment.Store, durable uint64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var got []segment.ID
	for _, h := range st.Heads() {
		got = append(got, h.Base)
	}
	want := slices.Clone(m.order)
	slices.SortFunc(want, func(a, b segment.ID) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(got, want) {
		t.Fatalf("after crash: volumes %v, want %v", got, want)
	}
	for _, b := range want {
		cv := m.vols[b]
		v := mustOpenVolume(t, st, b)
		in, err := v.Info()
		if err != nil {
			t.Fatal(err)
		}
		content := readAll(t, v)
		lo := 0
		for lo < len(cv.ops) && cv.ops[lo].seq < durable {
			lo++
		}
		k := int(in.LSN) - int(cv.lsn0)
		if k < lo || k > len(cv.ops) {
			t.Fatalf("after crash: volume %v at lsn %d holds %d of its %d acknowledged ops since lsn %d; at least %d were promised durable (%s)",
				b, in.LSN, k, len(cv.ops), cv.lsn0, lo, m.matchingPrefixes(cv, content))
		}
		if want := cv.state(k); !bytes.Equal(content, want) {
			t.Fatalf("after crash: volume %v at lsn %d (%d of %d ops): contents differ from the model: %s (%s)",
				b, in.LSN, k, len(cv.ops), firstDiff(content, want), m.matchingPrefixes(cv, content))
		}
		cv.start, cv.lsn0, cv.ops = content, in.LSN, nil
	}
}

// matchingPrefixes lists the prefixes of cv's ops whose state equals content,
// for failure messages.
func (m *crashModel) matchingPrefixes(cv *crashVol, content []byte) string {
	var ks []int
	p := bytes.Clone(cv.start)
	for k := 0; ; k++ {
		if bytes.Equal(p, content) {
			ks = append(ks, k)
		}
		if k == len(cv.ops) {
			break
		}
		applyOp(p, cv.ops[k])
	}
	return fmt.Sprintf("contents match the prefixes %v of ops %v", ks, cv.opsString())
}

func (cv *crashVol) opsString() string {
	var b bytes.Buffer
	for i, o := range cv.ops {
		kind := "w"
		if o.data == nil {
			kind = "z"
		}
		fmt.Fprintf(&b, "%d:%s@%d+%d#%d ", i, kind, o.off/segment.SectorSize, o.n/segment.SectorSize, o.seq)
	}
	return b.String()
}

// ---- the crash test ---------------------------------------------------------

// crashCfg sizes one crash run.
type crashCfg struct {
	devSize     int64
	cycles      int // crash-recover cycles per run
	opsPerCycle int
	concurrent  bool // issue bursts of asynchronous writes from goroutines
}

// TestCrash runs seeded random histories of writes, write-zeroes, FUA
// writes, flushes, branches, deletes, checkpoints and cleaning passes against
// a small store, cuts the power at a random point (CrashClone, with a random
// share of unsynced blocks kept and some torn), recovers, and checks every
// volume against the model: the image passes Check, every volume created or
// branched is there, and each holds exactly the state after a prefix of its
// acknowledged ops (lsn-many records) that includes every op a completed
// flush, FUA write or synchronous call made durable. Then the run goes on
// from the recovered store and crashes again.
//
// Ops are issued one at a time and the store's own randomness (ids, uuid,
// secret) is seeded too, so a seed replays exactly: -seed N.
func TestCrash(t *testing.T) {
	for _, seed := range seeds(150, 20) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runCrash(t, seed, crashCfg{devSize: 96 << 20, cycles: 3, opsPerCycle: 40})
		})
	}
}

// TestCrashConcurrent is TestCrash with bursts of asynchronous writes and
// flushes from several goroutines, with checkpoints and cleaning passes
// running at the same time, and the power cut taken while writes are in
// flight. A seed fixes the ops each goroutine issues but not their
// interleaving, so a failure may need several runs of its seed to replay.
func TestCrashConcurrent(t *testing.T) {
	for _, seed := range seeds(40, 6) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runCrash(t, seed, crashCfg{devSize: 96 << 20, cycles: 3, opsPerCycle: 30, concurrent: true})
		})
	}
}

// crashRun is the state of one run.
type crashRun struct {
	t   *testing.T
	rng *rand.Rand
	cfg crashCfg
	dev *device.Mem
	st  *segment.Store
	m   *crashModel
}

func runCrash(t *testing.T, seed uint64, cfg crashCfg) {
	cryptotest.SetGlobalRandom(t, seed) // volume ids, store uuid and secret: a seed replays exactly
	t.Logf("seed %d (replay: -run 'TestCrash.*/seed=%d$' -seed %d)", seed, seed, seed)
	r := &crashRun{t: t, rng: rand.New(rand.NewPCG(seed, 0xc4a54)), cfg: cfg, m: newCrashModel(t)}
	r.dev = device.NewMem(cfg.devSize, 4096)
	r.st = r.open(r.dev)
	for range 1 + r.rng.IntN(2) {
		r.create()
	}
	for cycle := range cfg.cycles {
		var durable uint64
		var clone *device.Mem
		for i := range cfg.opsPerCycle {
			if cfg.concurrent && r.rng.IntN(4) == 0 {
				// crash during the last burst of the cycle, sometimes
				crashNow := i >= cfg.opsPerCycle-4 && r.rng.IntN(2) == 0
				clone, durable = r.burst(crashNow)
				if clone != nil {
					break
				}
				continue
			}
			r.step()
			if *checkEachFlag {
				t.Logf("cycle %d op %d: check", cycle, i)
				segtest.MustCheck(t, r.dev.CrashClone(device.CrashCfg{UnsyncedPercent: 100}))
			}
		}
		if err := r.firstError(); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		r.verifyLive()
		if clone == nil {
			durable = r.durable()
			clone = r.crash()
		}
		t.Logf("cycle %d: crash with %d ops acknowledged, promised durable below seq %d", cycle, r.m.acked(), durable)
		segtest.MustCheck(t, clone)
		r.dev, r.st = clone, r.open(clone)
		r.m.verify(t, r.st, durable)
	}
	if n := r.m.noSpace.Load(); n > 0 {
		t.Logf("%d writes, creates, branches or cleaning passes returned ErrNoSpace", n)
	}
}

func (r *crashRun) open(dev *device.Mem) *segment.Store {
	return segtest.Open(r.t, dev, segment.Options{NoBackground: true, CleanerRate: -1})
}

func (r *crashRun) durable() uint64 {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	return r.m.durable
}

func (r *crashRun) firstError() error {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if len(r.m.errs) > 0 {
		return r.m.errs[0]
	}
	return nil
}

// crash takes the power-cut image of the device now.
func (r *crashRun) crash() *device.Mem {
	return r.dev.CrashClone(device.CrashCfg{UnsyncedPercent: r.rng.IntN(101), TearPercent: 30, Rand: r.rng})
}

// verifyLive compares every volume of the running store with the model.
func (r *crashRun) verifyLive() {
	r.t.Helper()
	for _, b := range r.m.bases() {
		got := readAll(r.t, mustOpenVolume(r.t, r.st, b))
		if want := r.m.current(b); !bytes.Equal(got, want) {
			r.t.Fatalf("before the crash: volume %v differs from the model: %s", b, firstDiff(got, want))
		}
	}
}

func (r *crashRun) create() {
	size := int64(1+r.rng.IntN(4)) << 20
	var v *segment.Volume
	err := r.m.syncCall(func() (err error) { v, err = r.st.Create(uint64(size)); return err })
	if errors.Is(err, segment.ErrNoSpace) {
		r.m.noSpace.Add(1)
		return
	} else if err != nil {
		r.t.Fatalf("Create(%d): %v", size, err)
	}
	r.m.addVolume(v, make([]byte, size))
}

// pick returns a random volume of the model.
func (r *crashRun) pick(rng *rand.Rand) *segment.Volume {
	bases := r.m.bases()
	return mustOpenVolume(r.t, r.st, bases[rng.IntN(len(bases))])
}

// randWrite returns the offset, data (nil for zeroes) and length of a random
// write to a volume of size bytes.
func randWrite(rng *rand.Rand, size int64) (off int64, data []byte, n int64) {
	sectors := size / segment.SectorSize
	var ns int64
	switch x := rng.IntN(100); {
	case x < 40:
		ns = 1 + rng.Int64N(16)
	case x < 85:
		ns = 1 + rng.Int64N(512) // up to 256 KiB
	default:
		ns = segment.MaxEntrySectors/2 + rng.Int64N(segment.MaxEntrySectors*2) // up to 2.5 MiB: several records
	}
	ns = min(ns, sectors)
	off = rng.Int64N(sectors-ns+1) * segment.SectorSize
	n = ns * segment.SectorSize
	if rng.IntN(8) == 0 {
		return off, nil, n
	}
	return off, randData(rng, int(n), 15), n
}

// step runs one random sequential op.
func (r *crashRun) step() {
	t, rng := r.t, r.rng
	x := rng.IntN(100)
	if *checkEachFlag {
		t.Logf("op class %d", x)
	}
	switch {
	case x < 60:
		v := r.pick(rng)
		off, data, n := randWrite(rng, r.m.vols[v.Base()].size)
		r.m.write(v, off, data, n, rng.IntN(10) == 0)
	case x < 68:
		var wg sync.WaitGroup
		r.m.flushAsync(r.pick(rng), &wg)
		wg.Wait()
	case x < 75:
		src := r.pick(rng)
		in, err := src.Info()
		if err != nil {
			t.Fatal(err)
		}
		start := r.m.current(src.Base())
		var b *segment.Volume
		err = r.m.syncCall(func() (err error) { b, err = r.st.Branch(in.Version); return err })
		if errors.Is(err, segment.ErrNoSpace) {
			r.m.noSpace.Add(1)
			return
		} else if err != nil {
			t.Fatalf("Branch(%v of %v): %v", in.Version, src.Base(), err)
		}
		r.m.addVolume(b, start)
	case x < 80:
		bases := r.m.bases()
		if len(bases) < 3 {
			r.create()
			return
		}
		b := bases[rng.IntN(len(bases))]
		err := r.m.syncCall(func() error { return r.st.Delete(b) })
		if errors.Is(err, segment.ErrNoSpace) {
			// without the background, do what it does for a parked delete:
			// checkpoint (pending segments become free), clean, retry
			if cerr := r.m.syncCall(r.st.Checkpoint); cerr != nil && !errors.Is(cerr, segment.ErrNoSpace) {
				t.Fatalf("Checkpoint: %v", cerr)
			}
			r.clean(4)
			err = r.m.syncCall(func() error { return r.st.Delete(b) })
		}
		if errors.Is(err, segment.ErrNoSpace) {
			r.m.noSpace.Add(1) // full of live data: nothing to reclaim; not performed
			return
		}
		if err != nil {
			t.Fatalf("Delete(%v): %v", b, err)
		}
		r.m.remove(b)
	case x < 83:
		if len(r.m.bases()) < 6 {
			r.create()
		}
	case x < 91:
		if err := r.m.syncCall(r.st.Checkpoint); err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
	default:
		r.clean(1 + rng.IntN(3))
	}
}

// clean runs a cleaning pass. ErrNoSpace is allowed (the cleaner needs room
// to copy live data to; TestCleanerFreesSegments checks that it makes room).
func (r *crashRun) clean(n int) {
	if _, err := r.st.Clean(n); errors.Is(err, segment.ErrNoSpace) {
		r.m.noSpace.Add(1)
	} else if err != nil {
		r.t.Fatalf("Clean(%d): %v", n, err)
	}
}

// burst issues asynchronous writes and flushes from a few goroutines while
// this one checkpoints or cleans. With crashNow, it takes the power-cut image
// while ops are in flight and returns it with the durability promise made
// before it.
func (r *crashRun) burst(crashNow bool) (*device.Mem, uint64) {
	t := r.t
	var wg, gw sync.WaitGroup
	var submitted atomic.Int64
	const perG = 12
	nG := 2 + r.rng.IntN(2)
	for g := range nG {
		rng := rand.New(rand.NewPCG(r.rng.Uint64(), uint64(g)))
		vols := make([]*segment.Volume, perG)
		sizes := make([]int64, perG)
		for i := range vols {
			vols[i] = r.pick(rng)
			sizes[i] = r.m.vols[vols[i].Base()].size
		}
		gw.Add(1)
		go func() {
			defer gw.Done()
			for i, v := range vols {
				if rng.IntN(6) == 0 {
					r.m.flushAsync(v, &wg)
				} else {
					off, data, n := randWrite(rng, sizes[i])
					r.m.writeAsync(v, off, data, n, rng.IntN(10) == 0, &wg)
				}
				submitted.Add(1)
			}
		}()
	}
	switch r.rng.IntN(3) {
	case 0:
		if err := r.m.syncCall(r.st.Checkpoint); err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
	case 1:
		r.clean(1 + r.rng.IntN(2))
	}
	var clone *device.Mem
	var durable uint64
	if crashNow {
		target := int64(r.rng.IntN(nG * perG))
		for submitted.Load() < target {
			runtime.Gosched() // wait until some of the burst is submitted
		}
		durable = r.durable()
		clone = r.crash()
	}
	gw.Wait()
	wg.Wait()
	return clone, durable
}

// TestCrashRecoversFullSizeRecord: a flushed write of 1 MiB with no zero
// sector is one record of the largest size (a header and 2048 body
// sectors). Recovery must roll forward over it, and Check must read it.
func TestCrashRecoversFullSizeRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	dev, st := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	v := mustCreate(t, st, 4<<20)
	want := make([]byte, 4<<20)
	for _, off := range []int64{0, 1 << 20, 3 << 20} {
		p := randData(rng, 1<<20, 0)
		mustWriteAt(t, v, p, off)
		copy(want[off:], p)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed := dev.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	image := crashed.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
	st2 := segtest.Open(t, crashed, segment.Options{NoBackground: true})
	if got := readAll(t, mustOpenVolume(t, st2, v.Base())); !bytes.Equal(got, want) {
		t.Errorf("after the crash: %s (lsn %d, want 4)", firstDiff(got, want), mustInfo(t, mustOpenVolume(t, st2, v.Base())).LSN)
	}
	segtest.MustCheck(t, image)
}
