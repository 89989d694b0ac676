package replicator

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"cloudfs/segment"

	"github.com/prometheus/client_golang/prometheus"
)

// Replication modes: when the primary acknowledges a write (and a flush).
const (
	// ModeAsync acknowledges a write once it is in the primary's log; the
	// replicas follow as fast as they can.
	ModeAsync = "async"
	// ModeSync acknowledges a write once every replica in sync has it
	// durably in its log. A replica that is catching up does not hold writes
	// up; it joins the set when it reaches the primary's head. A replica
	// that does not acknowledge within the ack timeout leaves the set
	// (the volume runs degraded, which info and the metrics show).
	ModeSync = "sync"
	// ModeQuorum acknowledges a write once a majority of the volume's hosts
	// (the primary included) have it durably in their logs; without a
	// majority within the ack timeout the write fails with ErrNoQuorum.
	ModeQuorum = "quorum"
)

// ValidMode reports whether m names a replication mode.
func ValidMode(m string) bool { return m == ModeAsync || m == ModeSync || m == ModeQuorum }

// DefaultMode is the mode of a volume on n hosts: quorum from 3, sync for
// 2, async (nothing to wait for) for 1.
func DefaultMode(n int) string {
	switch {
	case n >= 3:
		return ModeQuorum
	case n == 2:
		return ModeSync
	}
	return ModeAsync
}

// AcksConfig configures Acks.
type AcksConfig struct {
	// Timeout bounds the wait for replicas: a quorum write fails after it,
	// a sync replica that has not acknowledged leaves the in-sync set after
	// it (default 5 s).
	Timeout time.Duration
	// Head returns a volume's current position on this host (the primary).
	// Required: a replica is in sync when it has reached it.
	Head func(base segment.ID) (segment.Position, error)
	// Confirm, if set, is asked before a sync volume acknowledges a write
	// that no replica has (every replica left the in-sync set): it must
	// fail unless this host is still the volume's primary (a linearizable
	// read of the catalog). Without it, a primary that was paused while
	// another took over could acknowledge writes alone. A success counts
	// for ConfirmFor (default 1 s, well under a lease).
	Confirm    func(base segment.ID) error
	ConfirmFor time.Duration
	Logger     *slog.Logger          // nil: discard
	Metrics    prometheus.Registerer // nil: no metrics
}

// Acks is the primary's side of acknowledged replication: for each volume
// this host is the primary of, how far each replica has durably logged it
// (replicas report it with POST /v1/volumes/{id}/ack after every applied
// batch, and every second), and the writes waiting for enough of them.
// Its methods are safe for concurrent use; a nil *Acks waits for nothing.
type Acks struct {
	cfg   AcksConfig
	log   *slog.Logger
	met   *ackMetrics
	mu    sync.Mutex
	vols  map[segment.ID]*ackVol
	gates map[segment.ID]*gate // hand-overs (handover.go)
	stop  chan struct{}
	wg    sync.WaitGroup
}

// ackVol is one volume's replication state on its primary.
type ackVol struct {
	mode      string
	replicas  map[string]*replicaAck // the other hosts, by host id
	waiters   []*waiter
	hist      history
	confirmed time.Time // Confirm succeeded then
}

// replicaAck is what the primary knows of one replica.
type replicaAck struct {
	pos    segment.Position // durably logged there, as last acknowledged
	seen   time.Time        // last acknowledgement (zero: never)
	inSync bool
}

type waiter struct {
	lsn      uint64
	start    time.Time
	deadline time.Time
	done     func(error)
}

// NewAcks starts the tracker (and its timer, stopped by Close).
func NewAcks(cfg AcksConfig) *Acks {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ConfirmFor <= 0 {
		cfg.ConfirmFor = time.Second
	}
	a := &Acks{cfg: cfg, log: cfg.Logger.With("component", "acks"), vols: map[segment.ID]*ackVol{},
		stop: make(chan struct{})}
	a.met = newAckMetrics(cfg.Metrics, a)
	a.wg.Go(a.sweep)
	return a
}

// Close stops the timer and fails every waiting write with ErrNotPrimary.
func (a *Acks) Close() {
	if a == nil {
		return
	}
	close(a.stop)
	a.wg.Wait()
	a.mu.Lock()
	var done []func()
	for base := range a.vols {
		done = append(done, a.dropLocked(base, "the host is stopping")...)
	}
	a.mu.Unlock()
	run(done)
}

// Set makes this host the primary of base with the given mode and replica
// hosts (the other hosts, not this one), keeping what it knew of replicas
// that stay. Waiting writes are judged again by the new rules.
func (a *Acks) Set(base segment.ID, mode string, replicas []string) {
	a.mu.Lock()
	v := a.vols[base]
	if v == nil {
		v = &ackVol{replicas: map[string]*replicaAck{}}
		a.vols[base] = v
	}
	if v.mode != mode && v.mode != "" {
		a.log.Info("replication mode changed", "volume", base, "from", v.mode, "to", mode)
	}
	v.mode = mode
	for h := range v.replicas {
		if !slices.Contains(replicas, h) {
			delete(v.replicas, h)
		}
	}
	for _, h := range replicas {
		if v.replicas[h] == nil {
			v.replicas[h] = &replicaAck{}
		}
	}
	done := a.settleLocked(base, v, time.Now())
	a.mu.Unlock()
	run(done)
}

// Drop forgets base (deleted, or no longer primary here); its waiting writes
// fail with ErrNotPrimary.
func (a *Acks) Drop(base segment.ID, why string) {
	a.mu.Lock()
	done := a.dropLocked(base, why)
	a.mu.Unlock()
	run(done)
}

func (a *Acks) dropLocked(base segment.ID, why string) []func() {
	v := a.vols[base]
	if v == nil {
		return nil
	}
	delete(a.vols, base)
	var done []func()
	for _, w := range v.waiters {
		err := fmt.Errorf("volume %v lsn %d: %s: %w", base, w.lsn, why, ErrNotPrimary)
		done = append(done, func() { w.done(err) })
	}
	return done
}

// Primary reports whether this host is tracked as the primary of base.
func (a *Acks) Primary(base segment.ID) bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.vols[base] != nil
}

// Ack records that host has base durably up to pos. It fails with
// ErrNotPrimary if this host is not base's primary, ErrNotReplica if host
// does not keep base.
func (a *Acks) Ack(base segment.ID, host string, pos segment.Position) error {
	head, herr := a.cfg.Head(base)
	a.mu.Lock()
	v := a.vols[base]
	if v == nil {
		a.mu.Unlock()
		return fmt.Errorf("volume %v: %w", base, ErrNotPrimary)
	}
	r := v.replicas[host]
	if r == nil {
		a.mu.Unlock()
		return fmt.Errorf("volume %v, host %q: %w", base, host, ErrNotReplica)
	}
	now := time.Now()
	r.pos, r.seen = pos, now
	if !r.inSync && v.mode == ModeSync && (herr == nil && pos.LSN >= head.LSN || v.caughtUp(pos.LSN)) {
		r.inSync = true
		a.log.Info("replica in sync", "volume", base, "replica", host, "lsn", pos.LSN)
	}
	done := a.settleLocked(base, v, now)
	a.mu.Unlock()
	run(done)
	return nil
}

// Await calls done once the replicas the volume's mode waits for have lsn
// (at once for a volume this host is not tracking, or in async mode), or
// with ErrNoQuorum after the timeout. done may be called on this goroutine
// and must not block.
func (a *Acks) Await(base segment.ID, lsn uint64, done func(error)) { a.await(base, lsn, -1, done) }

// await is Await that, for a write of n >= 0 bytes, also records it for the
// lag in bytes, under the same lock (one lock per write on the IO path).
func (a *Acks) await(base segment.ID, lsn uint64, n int64, done func(error)) {
	if a == nil {
		done(nil)
		return
	}
	now := time.Now()
	a.mu.Lock()
	v := a.vols[base]
	if v != nil && n >= 0 {
		v.hist.add(lsn, n)
	}
	if v == nil {
		a.mu.Unlock()
		done(nil)
		return
	}
	if v.satisfied(lsn) {
		f := a.completeLocked(base, v, now, done)
		a.mu.Unlock()
		f()
		return
	}
	v.waiters = append(v.waiters, &waiter{lsn: lsn, start: now, deadline: now.Add(a.cfg.Timeout), done: done})
	a.mu.Unlock()
}

// lagBytes returns the data written to base after lsn, if this host is
// tracking base and remembers writes that far back.
func (a *Acks) lagBytes(base segment.ID, lsn uint64) (int64, bool) {
	if a == nil {
		return 0, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.vols[base]
	if v == nil || len(v.hist.lsn) == 0 || lsn < v.hist.first() {
		return 0, false
	}
	return v.hist.since(lsn), true
}

// satisfied reports whether the replicas the mode waits for have lsn.
func (v *ackVol) satisfied(lsn uint64) bool {
	switch v.mode {
	case ModeSync:
		for _, r := range v.replicas {
			if r.inSync && r.pos.LSN < lsn {
				return false
			}
		}
		return true
	case ModeQuorum:
		return v.have(lsn) >= quorumOthers(len(v.replicas)+1)
	}
	return true
}

// caughtUp reports whether a replica at lsn has every write now waiting:
// under a steady load the head moves on before an acknowledgement arrives,
// so a replica joins the sync set when it is within the writes in flight.
func (v *ackVol) caughtUp(lsn uint64) bool {
	return len(v.waiters) > 0 && lsn >= v.waiters[0].lsn
}

// have counts the replicas that acknowledged lsn.
func (v *ackVol) have(lsn uint64) int {
	n := 0
	for _, r := range v.replicas {
		if r.pos.LSN >= lsn {
			n++
		}
	}
	return n
}

// quorumOthers is how many hosts besides the primary make a majority of n.
func quorumOthers(n int) int { return n / 2 }

// settleLocked completes the waiters the replicas now satisfy and, past
// their deadline, the others: a sync volume drops the replicas that kept it
// waiting from its in-sync set; a quorum write fails.
func (a *Acks) settleLocked(base segment.ID, v *ackVol, now time.Time) []func() {
	var done []func()
	keep := v.waiters[:0]
	for _, w := range v.waiters {
		if !v.satisfied(w.lsn) && now.After(w.deadline) {
			if v.mode == ModeSync {
				a.dropLaggardsLocked(v, w.lsn)
			} else {
				err := fmt.Errorf("lsn %d: %d of the %d other hosts acknowledged within %v, %d needed: %w",
					w.lsn, v.have(w.lsn), len(v.replicas), a.cfg.Timeout, quorumOthers(len(v.replicas)+1), ErrNoQuorum)
				a.met.noQuorum.Inc()
				done = append(done, func() { w.done(err) })
				continue
			}
		}
		if v.satisfied(w.lsn) {
			a.met.wait.WithLabelValues(v.mode).Observe(now.Sub(w.start).Seconds())
			done = append(done, a.completeLocked(base, v, now, w.done))
			continue
		}
		keep = append(keep, w)
	}
	clear(v.waiters[len(keep):])
	v.waiters = keep
	return done
}

// completeLocked returns what acknowledges a satisfied write: done(nil),
// unless the volume runs degraded (a sync volume with replicas, none in
// sync) and its ownership was not confirmed within ConfirmFor: then a
// goroutine asks Confirm first, and the write fails with ErrNotPrimary if
// this host is no longer the primary.
func (a *Acks) completeLocked(base segment.ID, v *ackVol, now time.Time, done func(error)) func() {
	if a.cfg.Confirm == nil || !v.degraded() || now.Sub(v.confirmed) < a.cfg.ConfirmFor {
		return func() { done(nil) }
	}
	return func() {
		go func() {
			err := a.cfg.Confirm(base)
			if err == nil {
				a.mu.Lock()
				if v := a.vols[base]; v != nil {
					v.confirmed = time.Now()
				}
				a.mu.Unlock()
				done(nil)
				return
			}
			a.log.Warn("write not acknowledged: no replica has it and this host could not confirm it is still the primary",
				"volume", base, "err", err)
			done(fmt.Errorf("volume %v: %w: %w", base, err, ErrNotPrimary))
		}()
	}
}

// degraded reports whether a sync volume with replicas has none in sync.
func (v *ackVol) degraded() bool {
	if v.mode != ModeSync || len(v.replicas) == 0 {
		return false
	}
	for _, r := range v.replicas {
		if r.inSync {
			return false
		}
	}
	return true
}

// dropLaggardsLocked takes the replicas that have not reached lsn out of
// a sync volume's in-sync set.
func (a *Acks) dropLaggardsLocked(v *ackVol, lsn uint64) {
	for h, r := range v.replicas {
		if r.inSync && r.pos.LSN < lsn {
			r.inSync = false
			a.met.dropped.Inc()
			a.log.Warn("replica left the sync set: no acknowledgement within the timeout; writes go on without it",
				"replica", h, "acked_lsn", r.pos.LSN, "waited_for", lsn, "timeout", a.cfg.Timeout)
		}
	}
}

// sweep judges overdue waiters and silent replicas ten times a second.
func (a *Acks) sweep() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case now := <-t.C:
			a.mu.Lock()
			var done []func()
			for base, v := range a.vols {
				for h, r := range v.replicas {
					if r.inSync && now.Sub(r.seen) > a.cfg.Timeout {
						r.inSync = false
						a.met.dropped.Inc()
						a.log.Warn("replica left the sync set: silent longer than the timeout", "replica", h,
							"acked_lsn", r.pos.LSN, "timeout", a.cfg.Timeout)
					}
				}
				done = append(done, a.settleLocked(base, v, now)...)
			}
			a.mu.Unlock()
			run(done)
		}
	}
}

func run(fs []func()) {
	for _, f := range fs {
		f()
	}
}

// ReplicaState is what the primary knows of one replica of a volume.
type ReplicaState struct {
	Host       string           `json:"host"`
	Position   segment.Position `json:"-"`
	LSN        uint64           `json:"acked_lsn"`
	LagEntries uint64           `json:"lag_entries"`
	// LagBytes is the data written since the replica's position; a lower
	// bound when the replica is further behind than the primary remembers
	// (the last 65536 writes since it became primary).
	LagBytes int64     `json:"lag_bytes"`
	InSync   bool      `json:"in_sync"`
	LastAck  time.Time `json:"last_ack"`
}

// Replicas returns what the primary knows of base's replicas, ordered by
// host, and false if this host is not tracking base.
func (a *Acks) Replicas(base segment.ID) ([]ReplicaState, bool) {
	if a == nil {
		return nil, false
	}
	head, herr := a.cfg.Head(base)
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.vols[base]
	if v == nil {
		return nil, false
	}
	return v.states(head, herr == nil), true
}

func (v *ackVol) states(head segment.Position, known bool) []ReplicaState {
	out := make([]ReplicaState, 0, len(v.replicas))
	for h, r := range v.replicas {
		rs := ReplicaState{Host: h, Position: r.pos, LSN: r.pos.LSN, InSync: r.inSync || (v.mode != ModeSync && known &&
			r.pos.LSN >= head.LSN), LastAck: r.seen}
		if known && head.LSN > r.pos.LSN {
			rs.LagEntries = head.LSN - r.pos.LSN
			rs.LagBytes = v.hist.since(r.pos.LSN)
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// history remembers the data bytes of the last writes by lsn, to tell a
// replica's lag in bytes.
type history struct {
	lsn  []uint64 // ring, oldest at start
	cum  []int64  // bytes written up to and including lsn[i]
	at   int      // next slot
	full bool
	tot  int64
}

const historyLen = 1 << 16

func (h *history) add(lsn uint64, n int64) {
	if h.lsn == nil {
		h.lsn, h.cum = make([]uint64, 0, 64), make([]int64, 0, 64)
	}
	h.tot += n
	if !h.full && len(h.lsn) < historyLen {
		h.lsn, h.cum = append(h.lsn, lsn), append(h.cum, h.tot)
		h.full = len(h.lsn) == historyLen
		return
	}
	h.lsn[h.at], h.cum[h.at] = lsn, h.tot
	h.at = (h.at + 1) % historyLen
}

// first returns the oldest lsn remembered, less one: the history knows the
// bytes written after it.
func (h *history) first() uint64 {
	if h.full {
		return h.lsn[h.at]
	}
	return h.lsn[0] - 1
}

// since returns the bytes written after lsn (a lower bound if lsn is older
// than the history).
func (h *history) since(lsn uint64) int64 {
	n := len(h.lsn)
	if n == 0 {
		return 0
	}
	idx := func(i int) int { return (h.at + i) % n } // i-th oldest
	if !h.full {
		idx = func(i int) int { return i }
	}
	// the oldest remembered write after lsn
	i := sort.Search(n, func(i int) bool { return h.lsn[idx(i)] > lsn })
	if i == n {
		return 0
	}
	if i == 0 {
		if !h.full {
			return h.tot // every write remembered is after lsn
		}
		return h.tot - h.cum[idx(0)] // a lower bound: older writes are forgotten
	}
	return h.tot - h.cum[idx(i-1)]
}
