package segment

// Fault tests: device errors, torn writes, a full store, corruption, a newer
// format, and checkpoints racing the writer.
//
// This file is in package segment, not segment_test, for one reason: the
// race tests must know that a Checkpoint has encoded its state and queued its
// op (ftQueued), which no API shows. Everything else goes through the
// exported API. It cannot import segtest (segtest imports segment), so
// ftOpen and ftCheck do what segtest.Open and segtest.MustCheck do.
// Identifiers start with ft so as not to collide with other tests of the
// package.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/cryptotest"

	"cloudfs/segment/device"
	"cloudfs/segment/device/faultdev"
)

const ftSegSize = MinSegmentSize

var ftOpts = Options{NoBackground: true, CleanerRate: -1}

// ftOpen formats dev if it holds no store and opens it, logging to t.
func ftOpen(t testing.TB, dev device.Device, opts Options) *Store {
	t.Helper()
	buf := device.AlignedBuf(BlockSize)
	if _, err := dev.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeSuperblock(buf); errors.Is(err, ErrNotStore) {
		if _, err := Format(dev, FormatOptions{SegmentSize: ftSegSize}); err != nil {
			t.Fatalf("Format: %v", err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	st, err := Open(dev, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

// ftClose closes st, which must not have failed.
func ftClose(t testing.TB, st *Store) {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// ftCheck runs Check on dev and fails the test with its problems.
func ftCheck(t testing.TB, dev device.Device) *Report {
	t.Helper()
	rep, err := Check(dev)
	if err != nil {
		if rep != nil {
			for _, p := range rep.Problems {
				t.Errorf("check: %s", p)
			}
		}
		t.Fatalf("Check: %v", err)
	}
	return rep
}

// ftCheckErr is ftCheck that lets the test go on.
func ftCheckErr(t testing.TB, dev device.Device) {
	t.Helper()
	rep, err := Check(dev)
	if err != nil {
		if rep != nil {
			for _, p := range rep.Problems {
				t.Errorf("check: %s", p)
			}
		}
		t.Errorf("Check: %v", err)
	}
}

// ftImage is dev as a power cut would leave it if every write landed.
func ftImage(m *device.Mem) *device.Mem { return m.CrashClone(device.CrashCfg{UnsyncedPercent: 100}) }

func ftRand(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// ftVol is the model of one volume written sequentially: the writes in the
// order they were acknowledged (or failed: a failed write may or may not be
// in the log), each cut into record-sized pieces, and how many pieces the
// last completed flush made durable.
type ftVol struct {
	v       *Volume
	size    int
	pieces  []ftPiece
	durable int
}

type ftPiece struct {
	off  int64
	data []byte
}

func (m *ftVol) add(off int64, p []byte) {
	const rec = MaxEntrySectors * SectorSize
	for i := 0; i < len(p); i += rec {
		m.pieces = append(m.pieces, ftPiece{off + int64(i), p[i:min(i+rec, len(p))]})
	}
}

func (m *ftVol) write(t testing.TB, off int64, p []byte) {
	t.Helper()
	if _, err := m.v.WriteAt(p, off); err != nil {
		t.Fatalf("WriteAt(%d bytes at %d): %v", len(p), off, err)
	}
	m.add(off, p)
}

func (m *ftVol) flush(t testing.TB) {
	t.Helper()
	if err := m.v.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	m.durable = len(m.pieces)
}

func (m *ftVol) state(k int) []byte {
	p := make([]byte, m.size)
	for _, pc := range m.pieces[:k] {
		copy(p[pc.off:], pc.data)
	}
	return p
}

// verify checks that v (the same volume on a recovered store) holds the state
// after a prefix of the pieces, of the length its lsn says, that includes
// every durable piece. It returns that length.
func (m *ftVol) verify(t testing.TB, v *Volume) int {
	t.Helper()
	in, err := v.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	k := int(in.LSN) - 1 // lsn 1 is the create record
	if k < m.durable || k > len(m.pieces) {
		t.Fatalf("recovered volume at lsn %d holds %d pieces; %d were written, %d flushed", in.LSN, k, len(m.pieces), m.durable)
	}
	got := make([]byte, m.size)
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if want := m.state(k); !bytes.Equal(got, want) {
		t.Fatalf("recovered volume (%d of %d pieces) does not read as written: %s", k, len(m.pieces), ftDiff(got, want))
	}
	return k
}

func (m *ftVol) readBack(t testing.TB) {
	t.Helper()
	got := make([]byte, m.size)
	if _, err := m.v.ReadAt(got, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	if want := m.state(len(m.pieces)); !bytes.Equal(got, want) {
		t.Fatalf("volume does not read as written: %s", ftDiff(got, want))
	}
}

func ftDiff(got, want []byte) string {
	for i := range got {
		if got[i] != want[i] {
			return "first difference at sector " + strconv.Itoa(i/SectorSize)
		}
	}
	return "equal"
}

// ftHistory opens a store on dev, creates a volume and writes a history to
// it: some writes, a flush, and some writes after it (acknowledged, not
// flushed). The same seed gives the same device calls, so a dry run on a
// fault-free faultdev counts the calls a real run makes before its fault.
func ftHistory(t testing.TB, dev device.Device) (*Store, *ftVol) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	st := ftOpen(t, dev, ftOpts)
	v, err := st.Create(8 << 20)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	m := &ftVol{v: v, size: 8 << 20}
	for i := range 6 {
		m.write(t, int64(i)*(512<<10), ftRand(rng, 300<<10))
	}
	m.flush(t)
	m.write(t, 1<<20, ftRand(rng, 64<<10))
	m.write(t, 5<<20, ftRand(rng, 1536<<10)) // two records
	return st, m
}

// ftCalls returns how many calls of op the history makes.
func ftCalls(t *testing.T, op faultdev.Op) int {
	cryptotest.SetGlobalRandom(t, 1)
	fd := faultdev.Wrap(device.NewMem(64<<20, 4096))
	st, _ := ftHistory(t, fd)
	reads, writes, syncs := fd.Counts()
	ftClose(t, st)
	return map[faultdev.Op]int{faultdev.OpRead: reads, faultdev.OpWrite: writes, faultdev.OpSync: syncs}[op]
}

// TestFaultDeviceError fails one device write, or one sync, after a history:
// the op that hit it fails with ErrDeviceFailed (and the device's error),
// later writes and flushes fail too, reads still work, and the store reopened
// on the healthy device recovers every flushed write, passes Check, and
// takes writes again.
func TestFaultDeviceError(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   faultdev.Op
	}{{"write", faultdev.OpWrite}, {"sync", faultdev.OpSync}} {
		t.Run(tc.name, func(t *testing.T) {
			n := ftCalls(t, tc.op)
			cryptotest.SetGlobalRandom(t, 1)
			mem := device.NewMem(64<<20, 4096)
			fd := faultdev.Wrap(mem, faultdev.Nth(tc.op, n+1))
			st, m := ftHistory(t, fd)
			rng := rand.New(rand.NewPCG(2, 2))
			var err error
			p := ftRand(rng, 128<<10)
			if tc.op == faultdev.OpWrite {
				_, err = m.v.WriteAt(p, 2<<20) // its device write fails
			} else {
				m.write(t, 2<<20, p) // acknowledged: no sync yet
				err = m.v.Flush()    // the sync fails
			}
			if !errors.Is(err, ErrDeviceFailed) || !errors.Is(err, faultdev.ErrInjected) {
				t.Fatalf("op hitting the %s fault = %v, want ErrDeviceFailed wrapping ErrInjected", tc.name, err)
			}
			if tc.op == faultdev.OpWrite {
				m.add(2<<20, p) // failed: it may or may not be in the log
			}
			if _, err := m.v.WriteAt(p, 0); !errors.Is(err, ErrDeviceFailed) {
				t.Errorf("write after the failure = %v, want ErrDeviceFailed", err)
			}
			if err := m.v.Flush(); !errors.Is(err, ErrDeviceFailed) {
				t.Errorf("flush after the failure = %v, want ErrDeviceFailed", err)
			}
			if _, err := st.Create(1 << 20); !errors.Is(err, ErrDeviceFailed) {
				t.Errorf("create after the failure = %v, want ErrDeviceFailed", err)
			}
			if err := st.Checkpoint(); !errors.Is(err, ErrDeviceFailed) {
				t.Errorf("checkpoint after the failure = %v, want ErrDeviceFailed", err)
			}
			// Reads still work and see every acknowledged write (the
			// failed write of the write case was never applied).
			want := m.state(len(m.pieces))
			if tc.op == faultdev.OpWrite {
				want = m.state(len(m.pieces) - 1)
			}
			got := make([]byte, m.size)
			if _, err := m.v.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Errorf("read after the failure: %v, %s", err, ftDiff(got, want))
			}
			if err := st.Close(); !errors.Is(err, ErrDeviceFailed) {
				t.Errorf("Close of a failed store = %v, want ErrDeviceFailed", err)
			}

			// Reopen on the device itself, as after a restart.
			ftCheck(t, ftImage(mem))
			st2 := ftOpen(t, mem, ftOpts)
			v2, err := st2.Volume(m.v.Base())
			if err != nil {
				t.Fatal(err)
			}
			k := m.verify(t, v2)
			t.Logf("recovered %d of %d pieces (%d flushed)", k, len(m.pieces), m.durable)
			if _, err := v2.WriteAt(p, 0); err != nil {
				t.Errorf("write after reopening: %v", err)
			}
			ftClose(t, st2)
			ftCheck(t, mem)
		})
	}
}

// TestFaultTornWriteThenCrash tears the device write of a three-record write
// (a prefix of its sectors lands), then the power fails: recovery stops at the
// torn record, keeps every flushed write, and the image passes Check.
func TestFaultTornWriteThenCrash(t *testing.T) {
	for _, keep := range []int{0, 1, 7, 700, 2100, 3000} {
		t.Run("keep="+strconv.Itoa(keep), func(t *testing.T) {
			n := ftCalls(t, faultdev.OpWrite)
			cryptotest.SetGlobalRandom(t, 1)
			mem := device.NewMem(64<<20, 4096)
			fd := faultdev.Wrap(mem, faultdev.Torn(n+1, keep))
			st, m := ftHistory(t, fd)
			p := ftRand(rand.New(rand.NewPCG(3, 3)), 3<<20)
			_, err := m.v.WriteAt(p, 4<<20)
			if !errors.Is(err, ErrDeviceFailed) {
				t.Fatalf("torn write = %v, want ErrDeviceFailed", err)
			}
			m.add(4<<20, p)
			st.Close()
			image := mem.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
			ftCheck(t, ftImage(image))
			st2 := ftOpen(t, image, ftOpts)
			v2, err := st2.Volume(m.v.Base())
			if err != nil {
				t.Fatal(err)
			}
			k := m.verify(t, v2)
			if k == len(m.pieces) {
				t.Errorf("recovered all %d pieces, including the torn write's last record", k)
			}
			ftClose(t, st2)
			ftCheck(t, image)
		})
	}
}

// TestFaultStoreFull fills a small store until a write fails with
// ErrNoSpace: everything acknowledged before reads back, the store closes,
// reopens and passes Check, and after deleting a volume and letting the
// cleaner run, writes succeed again.
func TestFaultStoreFull(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(32<<20, 4096)
	st := ftOpen(t, mem, ftOpts)
	rng := rand.New(rand.NewPCG(4, 4))
	var vols []*ftVol
	for range 3 {
		v, err := st.Create(16 << 20)
		if err != nil {
			t.Fatal(err)
		}
		vols = append(vols, &ftVol{v: v, size: 16 << 20})
	}
	var full error
	for i := 0; full == nil; i++ {
		if i > 1000 {
			t.Fatal("no ErrNoSpace after 1000 writes of 256 KiB to a 32 MiB store")
		}
		m := vols[i%len(vols)]
		off := int64(rng.IntN(64)) * (256 << 10)
		p := ftRand(rng, 256<<10)
		if _, err := m.v.WriteAt(p, off); err != nil {
			full = err
			break
		}
		m.add(off, p)
	}
	if !errors.Is(full, ErrNoSpace) {
		t.Fatalf("write to a full store = %v, want ErrNoSpace", full)
	}
	for _, m := range vols {
		m.readBack(t)
	}
	if _, err := st.Create(1 << 20); err == nil {
		t.Logf("Create on a full store succeeded") // a create record is one sector: allowed
	}
	ftClose(t, st)
	ftCheck(t, mem)

	st = ftOpen(t, mem, ftOpts)
	for _, m := range vols {
		v, err := st.Volume(m.v.Base())
		if err != nil {
			t.Fatal(err)
		}
		m.v = v
		m.readBack(t)
	}
	if err := st.Delete(vols[0].v.Base()); err != nil {
		t.Fatalf("Delete on a full store: %v", err)
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if _, err := st.Clean(100); err != nil {
		t.Fatalf("Clean: %v", err)
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	for i := range 8 {
		vols[1].write(t, int64(i)*(256<<10), ftRand(rng, 256<<10))
	}
	for _, m := range vols[1:] {
		m.readBack(t)
	}
	ftClose(t, st)
	ftCheck(t, mem)
}

// TestFaultStoreFullWithBackground: with the background running, writes to
// a full store wait for it to reclaim space, and fail with ErrNoSpace when
// nothing can be reclaimed; they must neither hang nor lose anything.
func TestFaultStoreFullWithBackground(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(32<<20, 4096)
	st := ftOpen(t, mem, Options{CleanerRate: -1})
	rng := rand.New(rand.NewPCG(5, 5))
	m := &ftVol{size: 24 << 20}
	var err error
	if m.v, err = st.Create(24 << 20); err != nil {
		t.Fatal(err)
	}
	var full error
	for off := int64(0); off < 24<<20; off += 256 << 10 {
		p := ftRand(rng, 256<<10)
		if _, err := m.v.WriteAt(p, off); err != nil {
			full = err
			break
		}
		m.add(off, p)
	}
	if !errors.Is(full, ErrNoSpace) {
		t.Fatalf("writing 24 MiB of distinct data to a 32 MiB store: %v, want ErrNoSpace", full)
	}
	m.readBack(t)
	ftClose(t, st)
	ftCheck(t, mem)
}

// TestFaultCorruptRecordMidLog flips a byte in the body of a record in the
// middle of the log (after the last checkpoint, so recovery must read it).
// What is right: recovery cannot tell bit rot from a torn tail, so it stops
// at the record (DESIGN.md §3): the writes before it are there, that write
// and the later ones are not, the store passes Check and takes writes. But it
// must say so above Info: valid records follow, so acknowledged writes were
// dropped, which an operator must hear about.
func TestFaultCorruptRecordMidLog(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(32<<20, 4096)
	st := ftOpen(t, mem, ftOpts)
	v, err := st.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	m := &ftVol{v: v, size: 1 << 20}
	rng := rand.New(rand.NewPCG(6, 6))
	for i := range 10 {
		m.write(t, int64(i)*8192, ftRand(rng, 8192))
	}
	m.flush(t)
	image := ftImage(mem) // a power cut now: no checkpoint since the create
	st.Close()

	// Find the data records in segment 0 and damage the body of the fifth.
	var data []int64
	hdr := make([]byte, BlockSize)
	for off := int64(segmentAreaOff); off < segmentAreaOff+ftSegSize && len(data) < 10; off += SectorSize {
		blk := off &^ (BlockSize - 1)
		if _, err := image.ReadAt(hdr, blk); err != nil {
			t.Fatal(err)
		}
		h := hdr[off-blk : off-blk+SectorSize]
		if [4]byte(h[:4]) == recordMagic && Kind(h[52]) == KindData {
			data = append(data, off)
		}
	}
	if len(data) < 10 {
		t.Fatalf("found %d data records, want 10", len(data))
	}
	damage := data[4] + HeaderSize + 100
	blk := damage &^ (BlockSize - 1)
	if _, err := image.ReadAt(hdr, blk); err != nil {
		t.Fatal(err)
	}
	hdr[damage-blk] ^= 0x01
	if _, err := image.WriteAt(hdr, blk); err != nil {
		t.Fatal(err)
	}

	var logs ftLogs
	st2 := ftOpen(t, image, Options{NoBackground: true, Logger: slog.New(&logs)})
	v2, err := st2.Volume(v.Base())
	if err != nil {
		t.Fatal(err)
	}
	m.durable = 4 // what recovery can still honour
	if k := m.verify(t, v2); k != 4 {
		t.Errorf("recovered %d writes, want the 4 before the damaged record", k)
	}
	if !logs.warned() {
		t.Errorf("recovery dropped 6 flushed writes after a damaged record with valid records behind it, and logged nothing above Info:\n%s", logs.String())
	}
	m.v, m.pieces = v2, m.pieces[:4]
	m.write(t, 0, ftRand(rng, 4096))
	ftClose(t, st2)
	ftCheck(t, image)
}

// ftLogs records log records.
type ftLogs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *ftLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *ftLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *ftLogs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *ftLogs) WithGroup(string) slog.Handler      { return l }

func (l *ftLogs) warned() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Level >= slog.LevelWarn {
			return true
		}
	}
	return false
}

func (l *ftLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	for _, r := range l.recs {
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		b.WriteString("\n")
	}
	return b.String()
}

// TestFaultReadErrorDuringRecovery fails one device read during Open, for
// each read Open makes: Open must fail (with the device's error) or recover
// everything; it must never treat the failed read as the end of the log and
// drop flushed writes (which later writes would then overwrite).
func TestFaultReadErrorDuringRecovery(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(64<<20, 4096)
	st, m := ftHistory(t, mem)
	m.flush(t)
	image := ftImage(mem) // no checkpoint but the create's: Open rolls everything forward
	st.Close()
	probe := faultdev.Wrap(ftImage(image))
	if st, err := Open(probe, ftOpts); err != nil {
		t.Fatal(err)
	} else {
		st.Close()
	}
	reads, _, _ := probe.Counts()
	for n := 1; n <= reads; n++ {
		dev := faultdev.Wrap(ftImage(image), faultdev.Nth(faultdev.OpRead, n))
		st, err := Open(dev, ftOpts)
		if err != nil {
			if !errors.Is(err, faultdev.ErrInjected) {
				t.Errorf("read %d of %d failing: Open = %v, want an error wrapping ErrInjected", n, reads, err)
			}
			continue
		}
		v, err := st.Volume(m.v.Base())
		if err != nil {
			t.Errorf("read %d of %d failing: Open succeeded without the volume: %v", n, reads, err)
			st.Close()
			continue
		}
		in, _ := v.Info()
		if int(in.LSN)-1 != len(m.pieces) {
			t.Errorf("read %d of %d failing: Open succeeded with %d of %d flushed writes: a read error ended the log",
				n, reads, in.LSN-1, len(m.pieces))
		}
		st.Close()
	}
}

// TestFaultNewerFormat: a superblock of another format version makes Open
// and Check fail with ErrUnsupportedFormat, and nothing on the device changes.
func TestFaultNewerFormat(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(32<<20, 4096)
	st, _ := ftHistory(t, mem)
	ftClose(t, st)
	sb := make([]byte, BlockSize)
	if _, err := mem.ReadAt(sb, 0); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(sb[8:], FormatVersion+1)
	binary.LittleEndian.PutUint32(sb[BlockSize-4:], crc32.Checksum(sb[:BlockSize-4], crcTable))
	if _, err := mem.WriteAt(sb, 0); err != nil {
		t.Fatal(err)
	}
	if err := mem.Sync(); err != nil {
		t.Fatal(err)
	}
	before := ftDump(t, mem)
	if st, err := Open(mem, ftOpts); !errors.Is(err, ErrUnsupportedFormat) {
		if err == nil {
			st.Close()
		}
		t.Errorf("Open(format version %d) = %v, want ErrUnsupportedFormat", FormatVersion+1, err)
	}
	if _, err := Check(mem); !errors.Is(err, ErrUnsupportedFormat) {
		t.Errorf("Check(format version %d) = %v, want ErrUnsupportedFormat", FormatVersion+1, err)
	}
	if !bytes.Equal(ftDump(t, mem), before) {
		t.Errorf("the device changed")
	}
}

func ftDump(t testing.TB, dev device.Device) []byte {
	p := make([]byte, dev.Size())
	if _, err := dev.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- checkpoints racing the writer ---------------------------------------------

// ftQueued reports how many ops wait for the writer.
// ftQueued counts ops submitted and not yet completed behind a batch the
// writer holds: waiting for the writer, or prepared and waiting for the
// completer (the writer pipelines batches).
func ftQueued(s *Store) int { return len(s.ops) + len(s.complete) }

// ftGate is a device that blocks the first write whose range matches until
// released, so a test can act while the writer is in the middle of a batch.
type ftGate struct {
	device.Device
	mu      sync.Mutex
	match   func(off int64, n int) bool
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func ftNewGate(dev device.Device) *ftGate {
	return &ftGate{Device: dev, entered: make(chan struct{}), release: make(chan struct{})}
}

// arm makes the next write matching match block.
func (g *ftGate) arm(match func(off int64, n int) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.match, g.armed = match, true
}

func (g *ftGate) WriteAt(p []byte, off int64) (int, error) {
	g.mu.Lock()
	hit := g.armed && g.match(off, len(p))
	if hit {
		g.armed = false
	}
	g.mu.Unlock()
	if hit {
		close(g.entered)
		<-g.release
	}
	return g.Device.WriteAt(p, off)
}

func ftWaitQueued(t testing.TB, s *Store, n int) {
	t.Helper()
	for ftQueued(s) < n {
		runtime.Gosched()
	}
}

// TestCheckpointDuringSegmentCrossingBatch takes a checkpoint while the
// writer is writing a batch that seals a segment and opens the next one. The
// checkpoint's replay position is before the batch; after a power cut,
// roll-forward from it must follow the batch into the next segment and keep
// everything flushed later.
func TestCheckpointDuringSegmentCrossingBatch(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(64<<20, 4096)
	gate := ftNewGate(mem)
	st := ftOpen(t, gate, ftOpts)
	rng := rand.New(rand.NewPCG(7, 7))
	v, err := st.Create(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	m := &ftVol{v: v, size: 16 << 20}
	for i := range 7 {
		m.write(t, int64(i)*(512<<10), ftRand(rng, 512<<10)) // 3.5 MiB of segment 0
	}
	seg1 := int64(segmentAreaOff + ftSegSize)
	gate.arm(func(off int64, n int) bool { return off+int64(n) > seg1 })
	p := ftRand(rng, 1<<20)
	wrote := make(chan error, 1)
	go func() { _, err := m.v.WriteAt(p, 8<<20); wrote <- err }()
	<-gate.entered // the writer has planned the batch into segment 1
	ckpt := make(chan error, 1)
	go func() { ckpt <- st.Checkpoint() }()
	ftWaitQueued(t, st, 1) // the checkpoint has encoded the index and waits for the writer
	close(gate.release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	m.add(8<<20, p)
	if err := <-ckpt; err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		m.write(t, 10<<20+int64(i)*(512<<10), ftRand(rng, 512<<10))
	}
	m.flush(t)
	image := mem.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	ftClose(t, st)
	ftCheck(t, ftImage(image))
	st2 := ftOpen(t, image, ftOpts)
	v2, err := st2.Volume(v.Base())
	if err != nil {
		t.Fatal(err)
	}
	m.verify(t, v2)
	ftClose(t, st2)
}

// TestCheckpointDuringDelete deletes a volume while a checkpoint is being
// written (after it encoded the index, before its slot is durable). The
// deleted volume's segments become free when the checkpoint is durable and
// are reused; after a power cut, roll-forward from that checkpoint replays
// the delete and must follow the log into the reused segments.
func TestCheckpointDuringDelete(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(64<<20, 4096)
	gate := ftNewGate(mem)
	st := ftOpen(t, gate, ftOpts)
	rng := rand.New(rand.NewPCG(8, 8))
	doomed, err := st.Create(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // segments 0..2 hold only the doomed volume
		if _, err := doomed.WriteAt(ftRand(rng, 512<<10), int64(i)*(512<<10)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := st.Create(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	m := &ftVol{v: v, size: 16 << 20}
	m.write(t, 0, ftRand(rng, 64<<10))
	gate.arm(func(off int64, n int) bool { return off == slotAOff || off == slotBOff })
	ckpt := make(chan error, 1)
	go func() { ckpt <- st.Checkpoint() }()
	<-gate.entered // the checkpoint's body is in the log; its slot is not written
	if err := st.Delete(doomed.Base()); err != nil {
		t.Fatal(err)
	}
	close(gate.release)
	if err := <-ckpt; err != nil {
		t.Fatal(err)
	}
	for i := range 24 { // 12 MiB: through the freed segments
		m.write(t, int64(i)*(512<<10), ftRand(rng, 512<<10))
	}
	m.flush(t)
	image := mem.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	ftClose(t, st)
	ftCheck(t, ftImage(image))
	st2 := ftOpen(t, image, ftOpts)
	v2, err := st2.Volume(v.Base())
	if err != nil {
		t.Fatal(err)
	}
	m.verify(t, v2)
	if _, err := st2.Volume(doomed.Base()); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted volume after recovery: %v, want ErrNotFound", err)
	}
	ftClose(t, st2)
}

// TestCheckpointDuringClean is TestCheckpointDuringDelete with a cleaning
// pass instead of the delete: the victims empty between the checkpoint's
// encoding and its slot.
func TestCheckpointDuringClean(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(64<<20, 4096)
	gate := ftNewGate(mem)
	st := ftOpen(t, gate, ftOpts)
	rng := rand.New(rand.NewPCG(9, 9))
	v, err := st.Create(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	m := &ftVol{v: v, size: 4 << 20}
	for range 4 { // 16 MiB of overwrites: segments 0..3 mostly dead
		for i := range 8 {
			m.write(t, int64(i)*(512<<10), ftRand(rng, 512<<10))
		}
	}
	gate.arm(func(off int64, n int) bool { return off == slotAOff || off == slotBOff })
	ckpt := make(chan error, 1)
	go func() { ckpt <- st.Checkpoint() }()
	<-gate.entered
	res, err := st.Clean(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clean: %+v", res)
	close(gate.release)
	if err := <-ckpt; err != nil {
		t.Fatal(err)
	}
	for range 4 {
		for i := range 8 {
			m.write(t, int64(i)*(512<<10), ftRand(rng, 512<<10))
		}
	}
	m.flush(t)
	image := mem.CrashClone(device.CrashCfg{UnsyncedPercent: 0})
	ftClose(t, st)
	ftCheck(t, ftImage(image))
	st2 := ftOpen(t, image, ftOpts)
	v2, err := st2.Volume(v.Base())
	if err != nil {
		t.Fatal(err)
	}
	m.verify(t, v2)
	ftClose(t, st2)
}

// TestFaultTornCleanerWrite tears the write of a cleaning pass, then the
// power fails: some records are relocated, their originals are still in the
// victim. The image must pass Check, and cleaning the victim again must not
// leave the volume's chain with two entries for one lsn: a stream of it must
// still give a receiver the sender's version and contents.
func TestFaultTornCleanerWrite(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	build := func(dev device.Device) (*Store, *ftVol) {
		rng := rand.New(rand.NewPCG(10, 10))
		st := ftOpen(t, dev, ftOpts)
		v, err := st.Create(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		m := &ftVol{v: v, size: 1 << 20}
		for i := range 12 { // live records, 9 sectors each
			m.write(t, int64(i)*8192, ftRand(rng, 4096))
		}
		filler, err := st.Create(4 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := filler.WriteAt(ftRand(rng, 4<<20), 0); err != nil { // seals segment 0
			t.Fatal(err)
		}
		if err := st.Delete(filler.Base()); err != nil { // segment 0 is now mostly dead
			t.Fatal(err)
		}
		if err := st.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		return st, m
	}
	probe := faultdev.Wrap(device.NewMem(64<<20, 4096))
	st, _ := build(probe)
	_, writes, _ := probe.Counts()
	st.Close()

	cryptotest.SetGlobalRandom(t, 1)
	mem := device.NewMem(64<<20, 4096)
	st, m := build(faultdev.Wrap(mem, faultdev.Torn(writes+1, 40))) // the create's copy and 4 of 12 records
	if _, err := st.Clean(1); !errors.Is(err, ErrDeviceFailed) {
		t.Fatalf("Clean with its write torn = %v, want ErrDeviceFailed", err)
	}
	st.Close()
	image := mem.CrashClone(device.CrashCfg{UnsyncedPercent: 100})
	ftCheckErr(t, ftImage(image))

	st2 := ftOpen(t, image, ftOpts)
	v2, err := st2.Volume(m.v.Base())
	if err != nil {
		t.Fatal(err)
	}
	m.durable = len(m.pieces)
	m.verify(t, v2)
	if err := st2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Clean(10); err != nil {
		t.Fatal(err)
	}
	if err := st2.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	m.verify(t, v2)
	var stream bytes.Buffer
	if _, err := st2.Stream(&stream, m.v.Base(), Position{}); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	recv := ftOpen(t, device.NewMem(64<<20, 4096), ftOpts)
	if _, err := recv.Apply(&stream); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	rv, err := recv.Volume(m.v.Base())
	if err != nil {
		t.Fatal(err)
	}
	in, _ := v2.Info()
	rin, _ := rv.Info()
	if rin.Version != in.Version || rin.LSN != in.LSN {
		t.Errorf("receiver at lsn %d %v, sender at lsn %d %v", rin.LSN, rin.Version, in.LSN, in.Version)
	}
	m.verify(t, rv)
	ftClose(t, recv)
	ftClose(t, st2)
	ftCheck(t, image)
}

// TestApplySameStreamConcurrently applies one stream twice at once, as two
// peers pushing the same delta would: the second must skip what the first
// appended (Apply's contract), not fail with ErrLink, which means a fork.
func TestApplySameStreamConcurrently(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	src := ftOpen(t, device.NewMem(64<<20, 4096), ftOpts)
	v, err := src.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 11))
	for i := range 4 {
		if _, err := v.WriteAt(ftRand(rng, 8192), int64(i)*8192); err != nil {
			t.Fatal(err)
		}
	}
	var stream bytes.Buffer
	if _, err := src.Stream(&stream, v.Base(), Position{}); err != nil {
		t.Fatal(err)
	}
	mem := device.NewMem(64<<20, 4096)
	gate := ftNewGate(mem)
	dst := ftOpen(t, gate, ftOpts)
	gate.arm(func(off int64, n int) bool { return off >= segmentAreaOff })
	first := make(chan error, 1)
	go func() { _, err := dst.Apply(bytes.NewReader(stream.Bytes())); first <- err }()
	<-gate.entered // the first Apply's entries are being written
	second := make(chan error, 1)
	go func() { _, err := dst.Apply(bytes.NewReader(stream.Bytes())); second <- err }()
	ftWaitQueued(t, dst, 1) // the second has verified the same entries and queued them
	close(gate.release)
	if err := <-first; err != nil {
		t.Errorf("first Apply: %v", err)
	}
	if err := <-second; err != nil {
		t.Errorf("second, concurrent Apply of the same stream: %v, want its entries skipped", err)
	}
	ftClose(t, dst)
	ftClose(t, src)
	ftCheck(t, mem)
}
