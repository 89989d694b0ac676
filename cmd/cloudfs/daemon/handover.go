package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"cloudfs/replicator"
	"cloudfs/replicator/cluster"
	"cloudfs/segment"
)

// Planned hand-over (cloudfs acquire <id> on an up-to-date replica): the
// replica asks the primary to hand the volume over; the primary holds new
// writes, drains those in flight, waits until the replica has acknowledged
// its head, gives it the volume in etcd (a new epoch), fences its own copy
// and points the volume's IO at the replica; the replica takes the epoch
// with a view entry and serves; then the primary lets the writes it held
// go, to the new primary.

// handovers are the holds a primary keeps until the new primary serves,
// and the hand-overs writes on this host start (acquireForWrite).
type handovers struct {
	mu    sync.Mutex
	holds map[segment.ID]func()
	// acquireForWrite's attempts: under way, and the last one's start
	acquiring   map[segment.ID]chan struct{}
	lastAcquire map[segment.ID]time.Time
}

// acquire makes this host the primary of base, from the live primary.
func (r *replication) acquire(ctx context.Context, base segment.ID) (replicator.HandoverResult, error) {
	v, ok := r.hc.cat.Volume(base.String())
	switch {
	case !ok:
		return replicator.HandoverResult{}, fmt.Errorf("volume %v is not in the cluster's catalog: %w", base, segment.ErrNotFound)
	case v.Primary == r.self:
		return replicator.HandoverResult{}, httpErr(http.StatusConflict, "this host (%s) is the primary already", r.self)
	case !slices.Contains(v.Replicas, r.self):
		return replicator.HandoverResult{}, httpErr(http.StatusConflict, "this host (%s) keeps no replica of the volume", r.self)
	}
	h, ok := r.hc.cat.Host(v.Primary)
	if !ok {
		return replicator.HandoverResult{}, httpErr(http.StatusServiceUnavailable,
			"the primary %s is not live: failover gives the volume to the most up-to-date replica", v.Primary)
	}
	if !r.own.begin(base) {
		return replicator.HandoverResult{}, httpErr(http.StatusConflict, "a take-over of volume %v is under way", base)
	}
	defer r.own.end(base)
	start := time.Now()
	pc := &replicator.Client{URL: h.URL, Secret: r.secret, HTTP: r.rt.client}
	res, err := pc.Handover(ctx, base.String(), r.self)
	if err != nil {
		return res, fmt.Errorf("hand-over from %s: %w", v.Primary, err)
	}
	if err := r.hc.cat.WaitRevision(ctx, int64(res.Epoch)); err != nil {
		r.log.Warn("the local catalog lags the hand-over", "volume", base, "err", err)
	}
	if _, err := r.stopFollower(ctx, base.String()); err != nil {
		return res, err
	}
	v.Primary, v.Epoch = r.self, res.Epoch
	r.track(base, v) // before the store takes it: no write is acknowledged without the replicas
	if _, err := r.host.st.TakeOver(base, res.Epoch); err != nil {
		r.untrack(base, "its take-over failed")
		return res, fmt.Errorf("the catalog names this host the primary (epoch %d) but the store did not take it: %w",
			res.Epoch, err)
	}
	r.rt.forget(base)
	if err := pc.HandoverDone(ctx, base.String()); err != nil {
		r.log.Warn("the previous primary was not told the hand-over is done; it lets its writes go within 10 s",
			"volume", base, "err", err)
	}
	res.PausedMS = float64(time.Since(start).Microseconds()) / 1000
	r.log.Info("volume acquired", "volume", base, "from", res.From, "epoch", res.Epoch, "writes_held_ms", res.PausedMS)
	return res, nil
}

// acquireEvery is the least time between two hand-overs a volume's writes
// on this host start (acquireForWrite): two hosts that both write to a
// volume toss it to and fro no faster than that.
const acquireEvery = 10 * time.Second

// acquireForWrite makes this host base's primary because a write was made
// to the volume here, on its block device or disk file while another host
// is the primary: the VM that uses it moved here (serve --acquire-on-write).
// It is the hand-over of acquire. Writes made meanwhile wait for it; after
// a failed attempt, writes go to the primary for acquireEvery before the
// next attempt. It reports whether this host is the primary now.
func (r *replication) acquireForWrite(base segment.ID) bool {
	r.ho.mu.Lock()
	if ch := r.ho.acquiring[base]; ch != nil {
		r.ho.mu.Unlock()
		<-ch
		return r.acks.Primary(base)
	}
	if time.Since(r.ho.lastAcquire[base]) < acquireEvery {
		r.ho.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	r.ho.acquiring[base], r.ho.lastAcquire[base] = ch, time.Now()
	r.ho.mu.Unlock()
	defer func() {
		r.ho.mu.Lock()
		delete(r.ho.acquiring, base)
		r.ho.mu.Unlock()
		close(ch)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := r.acquire(ctx, base)
	if err != nil {
		r.log.Warn("a write here did not move the volume here; writes go to its primary", "volume", base,
			"next_try_in", acquireEvery, "err", err)
		return false
	}
	r.log.Info("a write here moved the volume here (acquire on write)", "volume", base, "from", res.From,
		"epoch", res.Epoch, "writes_held_ms", res.PausedMS)
	return true
}

// handover gives base, of which this host is the primary, to host to.
func (r *replication) handover(ctx context.Context, base segment.ID, to string) (replicator.HandoverResult, error) {
	res := replicator.HandoverResult{Volume: base.String(), From: r.self, To: to}
	v, ok := r.hc.cat.Volume(base.String())
	if !ok || v.Primary != r.self || !r.acks.Primary(base) {
		return res, fmt.Errorf("volume %v: %w", base, replicator.ErrNotPrimary)
	}
	if !slices.Contains(v.Replicas, to) || to == r.self {
		return res, httpErr(http.StatusConflict, "%s keeps no replica of volume %v", to, base)
	}
	toHost, ok := r.hc.cat.Host(to)
	if !ok {
		return res, httpErr(http.StatusServiceUnavailable, "%s is not live", to)
	}
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	release, err := r.acks.Hold(hctx, base)
	if err != nil {
		return res, err
	}
	handed := false
	defer func() {
		if !handed {
			release()
		}
	}()
	if err := r.acks.WaitCaughtUp(hctx, base, to); err != nil {
		return res, fmt.Errorf("%s did not catch up: %w", to, err)
	}
	epoch, err := cluster.UpdateVolume(hctx, r.hc.client, base.String(), func(cur *cluster.Volume) error {
		if cur.Primary != r.self {
			return fmt.Errorf("the catalog names %s the primary: %w", cur.Primary, replicator.ErrNotPrimary)
		}
		cur.Primary, cur.Epoch = to, 0
		return nil
	})
	if err != nil {
		return res, err
	}
	handed = true
	res.Epoch = uint64(epoch)
	if err := r.hc.cat.WaitRevision(hctx, epoch); err != nil { // reconcile must not see the old primary again
		r.log.Warn("the local catalog lags the hand-over", "volume", base, "err", err)
	}
	r.untrack(base, "handed over to "+to)
	if err := r.host.st.Fence(base, res.Epoch); err != nil {
		r.log.Error("handed-over volume not fenced here", "volume", base, "err", err)
	}
	r.rt.setOne(base, toHost.URL)
	r.ho.mu.Lock()
	r.ho.holds[base] = release
	r.ho.mu.Unlock()
	time.AfterFunc(10*time.Second, func() { r.handoverDone(base) })
	res.PausedMS = float64(time.Since(start).Microseconds()) / 1000
	r.log.Info("volume handed over; writes held until the new primary serves", "volume", base, "to", to,
		"epoch", res.Epoch)
	return res, nil
}

// handoverDone lets the writes held for base's hand-over go (to the new
// primary).
func (r *replication) handoverDone(base segment.ID) {
	r.ho.mu.Lock()
	release := r.ho.holds[base]
	delete(r.ho.holds, base)
	r.ho.mu.Unlock()
	if release != nil {
		release()
	}
}

// setMode changes base's replication mode in the catalog: the primary's
// reconcile gives acks the new mode (a volume force made sync goes back to
// quorum once its replicas are back, for instance).
func (r *replication) setMode(ctx context.Context, base segment.ID, mode string) (string, error) {
	var was string
	_, err := cluster.UpdateVolume(ctx, r.hc.client, base.String(), func(cur *cluster.Volume) error {
		was = cur.Mode
		cur.Mode = mode
		return nil
	})
	if errors.Is(err, cluster.ErrVolumeNotFound) {
		return "", fmt.Errorf("volume %v is not in the cluster's catalog: %w", base, segment.ErrNotFound)
	}
	return was, err
}

// httpErr is an error answered with code.
func httpErr(code int, format string, args ...any) error {
	return replicator.WithStatus(code, fmt.Errorf(format, args...))
}
