package segment

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"cloudfs/segment/device"
	"cloudfs/segment/extent"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure an open store. The zero value is valid.
type Options struct {
	Logger  *slog.Logger          // nil: discard
	Metrics prometheus.Registerer // nil: no metrics
	// CheckpointInterval bounds the time between checkpoints (default 30 s);
	// CheckpointBytes bounds the log written between them (default 256 MiB),
	// and with it the roll-forward work, so restart time is bounded by the
	// checkpoint interval, not by the log size.
	CheckpointInterval time.Duration
	CheckpointBytes    int64
	// CleanerRate limits the bytes per second the cleaner reads and rewrites
	// (default 64 MiB/s; negative: unlimited). The cleaner runs when fewer than
	// CleanerFreePercent of the segments are free (default 20).
	CleanerRate        int64
	CleanerFreePercent int
	// MaxBatchBytes caps one group commit (default 4 MiB).
	MaxBatchBytes int
	// NoBackground disables the checkpoint and cleaner goroutine; tests then
	// call Checkpoint and Clean themselves.
	NoBackground bool
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 30 * time.Second
	}
	if o.CheckpointBytes <= 0 {
		o.CheckpointBytes = 256 << 20
	}
	if o.CleanerRate == 0 {
		o.CleanerRate = 64 << 20
	}
	if o.CleanerFreePercent <= 0 {
		o.CleanerFreePercent = 20
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 4 << 20
	}
}

// FormatOptions configure Format.
type FormatOptions struct {
	SegmentSize int64 // default DefaultSegmentSize
}

// Format writes an empty store on dev: a superblock and two empty checkpoint
// slots. Everything else on the device is ignored (records of an older store
// never verify: their checksums are seeded with the old store's uuid).
func Format(dev device.Device, opts FormatOptions) (*Superblock, error) {
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if BlockSize%dev.BlockSize() != 0 {
		return nil, fmt.Errorf("format: device block size %d does not divide %d", dev.BlockSize(), BlockSize)
	}
	sb := &Superblock{Version: FormatVersion, SegmentSize: opts.SegmentSize, DeviceSize: dev.Size(), Created: time.Now().UnixNano()}
	sb.Segments = (dev.Size() - segmentAreaOff) / opts.SegmentSize
	if err := sb.validate(SectorSize, BlockSize, segmentAreaOff); err != nil {
		return nil, fmt.Errorf("format: device of %d bytes with %d-byte segments: %w", dev.Size(), opts.SegmentSize, err)
	}
	rand.Read(sb.UUID[:])
	rand.Read(sb.Secret[:])
	buf := device.AlignedBuf(3 * BlockSize)
	copy(buf, sb.Encode()) // slots A and B stay zero: never written
	if _, err := dev.WriteAt(buf, superblockOff); err != nil {
		return nil, fmt.Errorf("format: write superblock: %w", err)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("format: sync: %w", err)
	}
	return sb, nil
}

// Store is one host's log-structured store: many volumes sharing one log.
// All methods are safe for concurrent use.
type Store struct {
	dev  device.Device
	sb   *Superblock
	opts Options
	log  *slog.Logger
	met  *metrics

	ops    chan *op      // to the writer goroutine
	stopBg chan struct{} // closed first: the background goroutine stops
	stop   chan struct{} // closed once it has: the writer drains and stops
	bgWG   sync.WaitGroup
	wg     sync.WaitGroup
	// writerGone: the writer has exited; internal ops commit in the caller.
	writerGone bool
	closing    atomic.Bool
	subMu      sync.RWMutex          // submitters hold it shared; Close takes it to drain them
	failed     atomic.Pointer[error] // set once a device write or sync fails
	// readOnly: opened by Check; recovery writes nothing.
	readOnly bool
	recovery RecoveryInfo

	// ckptMu serialises checkpoints (background, Close, tests).
	ckptMu sync.Mutex
	// cleanMu serialises cleaning passes.
	cleanMu sync.Mutex

	mu  sync.RWMutex // guards everything below
	cat *catalog
	// changed is closed, and replaced, whenever a batch is applied: followers
	// of a volume wait on it for new entries.
	changed chan struct{}
	segs    []segInfo
	w       writerPos // the log's end, including records planned but not yet applied (writer only)
	spareMu sync.Mutex
	spare   [][]byte // batch buffers to reuse
	// The writer's view: every volume's chain including records planned but
	// not yet applied, and the snapshots its planned branches will freeze.
	// Only the writer goroutine touches these.
	wchain   map[ID]*wvol
	wsnaps   map[ID]wsnap
	batchSeq uint64
	// Pipeline: batches go from the writer to the completer in log order;
	// ioSem bounds the batches in flight.
	complete         chan *batch
	ioSem            chan struct{}
	appliedSeq       atomic.Uint64 // seq of the last batch completed
	branchesInFlight atomic.Int64  // branches planned, not yet applied
	parked           []*op         // ops waiting for space (writer only)
	kick             chan struct{} // the writer asks the background to reclaim space
	// applied is the log position after the last batch applied to the index:
	// a checkpoint taken now rolls forward from here.
	applied writerPos
	// checkpoint bookkeeping
	ckptGen      uint64          // generation of the newest durable checkpoint
	ckptSegs     map[uint32]bool // segments holding its body
	ckptBytes    int64
	ckptEst      int64 // ckptBodySizeLocked as of the last applied batch
	logSinceCkpt int64
	lastCkptTime time.Time
	pendingFree  int // segments waiting for a checkpoint to become free
	freeSegs     int
}

// writerPos is the append position: a segment and a sector offset in it.
type writerPos struct {
	seg   uint32
	off   int64  // sectors from the segment start; always at a block boundary between batches
	gseq  uint64 // gseq of the next record
	segSq uint64 // sequence number of the next segment opened
}

type segState uint8

const (
	segFree    segState = iota
	segActive           // the writer appends here
	segSealed           // full, ends in a next record
	segPending          // sealed and empty; free once a newer checkpoint is durable
)

// segInfo is the accounting of one segment.
type segInfo struct {
	state segState
	seq   uint64 // when it was opened; orders segments by age
	// live counts the sectors a store needs from this segment: data sectors an
	// extent map references and the headers of chained records of live volumes.
	live int64
	// emptiedAt: for segPending, the checkpoint generation that was newest when
	// the segment emptied; a checkpoint of a later generation frees it.
	emptiedAt uint64
	pins      atomic.Int32 // reads in flight
}

// volume is the state of one volume as of the last applied batch, guarded by
// Store.mu. (The writer plans on its own view, wvol.)
type volume struct {
	base    ID
	size    uint64 // bytes
	created int64  // sector address of its create or branch record
	parent  *snapshot
	m       *extent.Map
	runs    runs // where its chained records are, by lsn

	// committed chain state: what readers and Info see.
	head    ID
	entropy ID
	lsn     uint64
	epoch   uint64 // the head's epoch
	// epochLSN: lsn of the first entry of epoch (its view entry, or the
	// create or branch): the entries from it to the head are of epoch.
	epochLSN uint64
	// fence: the highest epoch Fence recorded (0: none). Entries of an
	// epoch below max(epoch, fence) are refused (seenEpoch).
	fence uint64
	// owned: this store holds the view secret of epoch and no fence above
	// epoch was recorded: it can extend the chain.
	owned bool

	deleted bool // the volume was deleted; handles return ErrNotFound

	// hdrs counts this volume's chained record headers per segment.
	hdrs map[uint32]int32

	met *volMetrics // set before the volume is visible to a handle
}

// wvol is a volume as the writer sees it: its chain including the records
// planned but not yet applied.
type wvol struct {
	head, token                       ID
	lsn, epoch, epochLSN, fence, size uint64
	owned                             bool
}

// seenEpoch is the highest epoch this store has seen for a volume whose head
// has epoch epoch and whose fence is fence: entries below it are stale.
func seenEpoch(epoch, fence uint64) uint64 { return max(epoch, fence) }

// wsnap is a snapshot a planned branch will freeze when it is applied.
type wsnap struct {
	src branchSrc
	seq uint64 // the batch that freezes it
}

// snapshot is the frozen extent map of a volume at one version: branches of
// that version, and the volume itself, read through it.
type snapshot struct {
	version ID
	owner   ID // the volume whose map this was
	lsn     uint64
	m       *extent.Map
	parent  *snapshot
	refs    int // volumes and snapshots whose parent this is; 0: released, dropped at the next checkpoint
	size    uint64
}

// Open opens the store on dev, recovers it (newest valid checkpoint, then
// roll-forward verifying every record), and starts the writer and, unless
// opts.NoBackground, the checkpoint and cleaner goroutine. The store owns dev
// until Close.
func Open(dev device.Device, opts Options) (*Store, error) {
	opts.setDefaults()
	s := &Store{dev: dev, opts: opts, stop: make(chan struct{}), stopBg: make(chan struct{}), ops: make(chan *op, 1024), kick: make(chan struct{}, 1),
		complete: make(chan *batch, pipelineDepth), ioSem: make(chan struct{}, pipelineDepth), wsnaps: map[ID]wsnap{}}
	s.log = opts.Logger.With("component", "segment")
	s.met = newMetrics(opts.Metrics)
	start := time.Now()
	if err := s.recover(); err != nil {
		s.met.unregister()
		return nil, err
	}
	s.lastCkptTime = time.Now() // what a restart would roll forward starts here
	for _, v := range s.cat.volumes() {
		if v.met == nil { // loaded from the checkpoint
			v.met = s.met.forVolume(v.base, v.size)
			v.met.lsn.Set(float64(v.lsn))
		}
	}
	s.changed = make(chan struct{})
	s.met.register(newStoreCollector(s))
	s.log.Info("store opened", "uuid", fmt.Sprintf("%x", s.sb.UUID), "segments", len(s.segs),
		"volumes", len(s.cat.volumes()), "checkpoint", s.ckptGen, "took", time.Since(start))
	s.wg.Add(1)
	go s.writer()
	if !opts.NoBackground {
		s.bgWG.Add(1)
		go s.background()
	}
	return s, nil
}

// Close stops the background work, writes a checkpoint (so the next open
// rolls forward nothing) and syncs. Outstanding operations complete first. It
// does not close the device.
func (s *Store) Close() error {
	if s.closing.Swap(true) {
		return ErrClosed
	}
	defer s.met.unregister()
	s.wake() // followers see closing and end
	// Wait for submitters, Checkpoint and Clean calls in flight; later ones
	// see closing once Close returns.
	s.subMu.Lock()
	defer s.subMu.Unlock()
	close(s.stopBg) // the background's last ops still go through the writer
	s.bgWG.Wait()
	close(s.stop)
	s.wg.Wait()
	s.writerGone = true
	if s.failed.Load() != nil {
		return s.failure()
	}
	err := s.checkpoint()
	if errors.Is(err, ErrNoSpace) {
		// Nothing is lost: every acknowledged write is in the log, and the
		// next Open rolls forward from the last checkpoint, only slower.
		s.log.Warn("store full: closed without a final checkpoint; the next open rolls the log forward", "err", err)
		return s.dev.Sync()
	}
	return err
}

// RecoveryInfo says what Open's roll-forward did.
type RecoveryInfo struct {
	Checkpoint uint64        // generation of the checkpoint loaded (0: none)
	Records    int           // records rolled forward after it
	Took       time.Duration // roll-forward time
	// Unreachable counts records of this log found past its end, behind the
	// record that ended it (see probeBeyondEnd); more than zero is logged as
	// an error.
	Unreachable int
}

// Recovery returns what Open's recovery did.
func (s *Store) Recovery() RecoveryInfo { return s.recovery }

// Superblock returns the store's superblock.
func (s *Store) Superblock() Superblock { return *s.sb }

func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Store) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrDeviceFailed, err)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("device failed; store is read-only until reopened", "err", err)
	}
	return s.failure()
}

// addr converts a position in a segment (sectors) to a store sector address.
func (s *Store) addr(seg uint32, off int64) uint64 {
	return uint64(segmentAreaOff/SectorSize) + uint64(seg)*uint64(s.sb.SegmentSize/SectorSize) + uint64(off)
}

// segOf returns the segment holding sector address a.
func (s *Store) segOf(a uint64) uint32 {
	return uint32((a - segmentAreaOff/SectorSize) / uint64(s.sb.SegmentSize/SectorSize))
}

func (s *Store) segSectors() int64 { return s.sb.SegmentSize / SectorSize }
