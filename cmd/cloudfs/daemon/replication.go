package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"cloudfs/replicator"
	"cloudfs/replicator/cluster"
	"cloudfs/segment"
)

// replication places new volumes on several hosts and keeps this host's
// replicas following their primaries. The catalog in etcd says which hosts
// keep which volume and which is the primary; every host follows it and
//   - for each volume it is the primary of, tells acks the volume's mode and
//     replicas: writes wait for the replicas' acknowledgements by the mode;
//   - for each volume it keeps and is not the primary of, runs a follower
//     (catch-up by delta, then live, acknowledging to the primary), and
//     routes the volume's block IO to the primary.
type replication struct {
	hc     *hostCluster
	host   *Host
	self   string
	secret string
	log    *slog.Logger
	acks   *replicator.Acks
	rt     *routes
	rate   int64 // catch-up bytes a second, 0: no cap
	fmet   *replicator.FollowMetrics
	own    *ownership
	ho     handovers

	mu        sync.Mutex
	followers map[string]*following // volume id -> its follower
	primaryOf map[segment.ID]bool   // volumes acks tracks
	// switched is, per volume, the epoch a new primary announced (POST
	// .../switch) before this host's catalog shows it: no follower of an
	// older primary starts until the catalog has that epoch.
	switched map[string]uint64
}

// following is a running follower of a volume.
type following struct {
	epoch uint64 // the catalog's epoch of the primary it follows
	stop  context.CancelFunc
	done  chan struct{} // closed when it has stopped: it applies nothing more
}

// create makes a volume on n live hosts (self first) as one transaction:
// created here, its creation entry applied on the others, then put in the
// catalog; on any failure every copy made is deleted again.
func (r *replication) create(ctx context.Context, size uint64, n int, mode string) (*segment.Volume, []string, error) {
	hosts, err := r.hc.hosts(ctx)
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		n = min(3, len(hosts))
	}
	if mode == "" {
		mode = replicator.DefaultMode(n)
	}
	placed, err := cluster.Place(hosts, r.self, n)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", replicator.ErrPlacement, err)
	}
	if placed[0].ID != r.self {
		return nil, nil, fmt.Errorf("%w: this host (%s) is not live in the cluster", replicator.ErrPlacement, r.self)
	}
	v, err := r.host.Create(size)
	if err != nil {
		return nil, nil, err
	}
	ids := []string{r.self}
	var creation bytes.Buffer
	if _, err := r.host.st.Stream(&creation, v.Base(), segment.Position{}); err != nil {
		return nil, nil, r.undo(v, nil, err)
	}
	var done []cluster.Host
	for _, h := range placed[1:] {
		cl := &replicator.Client{URL: h.URL, Secret: r.secret}
		if _, err := cl.Apply(ctx, bytes.NewReader(creation.Bytes())); err != nil {
			return nil, nil, r.undo(v, done, fmt.Errorf("create on %s: %w", h.ID, err))
		}
		done = append(done, h)
		ids = append(ids, h.ID)
	}
	rec := cluster.Volume{ID: v.Base().String(), Size: size, Primary: r.self, Replicas: ids, Mode: mode,
		Created: time.Now().UTC()}
	r.track(v.Base(), rec) // before the first write, which then waits for the replicas
	if err := cluster.PutVolume(ctx, r.hc.client, rec); err != nil {
		r.untrack(v.Base(), "its creation failed")
		return nil, nil, r.undo(v, done, err)
	}
	// the store takes the catalog's epoch (the entry's revision) before the
	// first write, so that replicas fenced at it accept the writes
	epoch, err := cluster.UpdateVolume(ctx, r.hc.client, rec.ID, func(*cluster.Volume) error { return nil })
	if err == nil {
		rec.Epoch = uint64(epoch)
		r.own.align(v.Base(), rec)
	} else {
		r.log.Warn("volume created in epoch 1; it takes the catalog's epoch at the next reconcile", "volume", rec.ID,
			"err", err)
	}
	r.log.Info("replicated volume created", "volume", rec.ID, "replicas", ids, "mode", mode)
	return v, ids, nil
}

// undo deletes the copies of a volume whose creation failed.
func (r *replication) undo(v *segment.Volume, on []cluster.Host, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := []error{cause}
	for _, h := range on {
		cl := &replicator.Client{URL: h.URL, Secret: r.secret}
		if err := cl.Delete(ctx, v.Base().String(), true); err != nil {
			errs = append(errs, fmt.Errorf("undo on %s: %w", h.ID, err))
		}
	}
	if err := r.host.Delete(v.Base(), true); err != nil {
		errs = append(errs, fmt.Errorf("undo here: %w", err))
	}
	return errors.Join(errs...)
}

// forgetIfPrimary removes a deleted volume from the catalog if this host
// was its primary; its replicas then stop following and keep their copies.
func (r *replication) forgetIfPrimary(base segment.ID) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vols, err := cluster.Volumes(ctx, r.hc.client)
	if err != nil {
		r.log.Warn("catalog unreachable; a deleted volume may stay in it", "volume", base, "err", err)
		return
	}
	r.untrack(base, "the volume was deleted")
	for _, v := range vols {
		if v.ID == base.String() && v.Primary == r.self {
			if err := cluster.DeleteVolume(ctx, r.hc.client, v.ID); err != nil {
				r.log.Warn("volume not removed from the catalog", "volume", base, "err", err)
			}
		}
	}
}

// run keeps a follower per replica this host keeps and tells acks the
// volumes it is the primary of, at every change of the catalog (followed
// by watch) and every 2 s (to restart followers that stopped), until ctx
// ends.
func (r *replication) run(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		changed := r.hc.cat.Changed()
		r.reconcile(ctx)
		select {
		case <-ctx.Done():
			r.stopAll()
			return
		case <-changed:
		case <-t.C:
		}
	}
}

func (r *replication) reconcile(ctx context.Context) {
	vols, hosts := r.hc.cat.Volumes(), r.hc.cat.Hosts()
	urls := map[string]string{}
	for _, h := range hosts {
		urls[h.ID] = h.URL
	}
	want := map[string]bool{}
	primary := map[segment.ID]bool{}
	route := map[segment.ID]string{}
	orphan := map[segment.ID]bool{}
	for _, v := range vols {
		base, err := segment.ParseID(v.ID)
		if err != nil {
			continue
		}
		if v.Primary == r.self {
			primary[base] = true // tracked already if a take-over is under way
			if r.own.pending(base, v) {
				orphan[base] = true
				r.own.resume(ctx, base, v, urls)
				continue
			}
			r.track(base, v)
			r.own.align(base, v)
			r.own.rereplicate(ctx, v, urls)
			continue
		}
		if urls[v.Primary] != "" {
			route[base] = urls[v.Primary]
		}
		if !slices.Contains(v.Replicas, r.self) {
			continue
		}
		r.own.fence(base, v)
		if urls[v.Primary] == "" { // its lease expired: fail over
			orphan[base] = true
			r.own.elect(ctx, base, v, urls)
			continue
		}
		want[v.ID] = true
		r.ensure(ctx, v, urls)
	}
	r.rt.set(route, orphan)
	r.mu.Lock()
	var gone []segment.ID
	for base := range r.primaryOf {
		if !primary[base] {
			gone = append(gone, base)
		}
	}
	for id, fl := range r.followers {
		if !want[id] {
			fl.stop()
			delete(r.followers, id)
		}
	}
	r.mu.Unlock()
	for _, base := range gone {
		r.untrack(base, "the catalog no longer names this host its primary")
	}
}

// confirm tells acks whether this host is still base's primary, by a
// linearizable read of its catalog entry (acks asks before a sync volume
// with no replica in sync acknowledges a write alone).
func (r *replication) confirm(base segment.ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := cluster.GetVolume(ctx, r.hc.client, base.String())
	if err != nil {
		return err
	}
	if v.Primary != r.self {
		return fmt.Errorf("the catalog names %s the primary", v.Primary)
	}
	return nil
}

// track makes acks wait for v's replicas by its mode.
func (r *replication) track(base segment.ID, v cluster.Volume) {
	others := slices.DeleteFunc(slices.Clone(v.Replicas), func(h string) bool { return h == r.self })
	mode := v.Mode
	if !replicator.ValidMode(mode) {
		mode = replicator.ModeAsync
	}
	r.acks.Set(base, mode, others)
	r.mu.Lock()
	r.primaryOf[base] = true
	r.mu.Unlock()
}

func (r *replication) untrack(base segment.ID, why string) {
	r.acks.Drop(base, why)
	r.mu.Lock()
	delete(r.primaryOf, base)
	r.mu.Unlock()
}

// ensure runs a follower of v from its primary, unless one runs; urls are
// the live hosts' API addresses.
func (r *replication) ensure(ctx context.Context, v cluster.Volume, urls map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.followers[v.ID]; ok {
		return
	}
	if v.Epoch < r.switched[v.ID] {
		return // a newer primary announced itself; the catalog follows shortly
	}
	id, err := segment.ParseID(v.ID)
	if err != nil {
		return
	}
	fctx, cancel := context.WithCancel(ctx)
	fl := &following{epoch: v.Epoch, stop: cancel, done: make(chan struct{})}
	r.followers[v.ID] = fl
	var peers []*replicator.Client
	for _, h := range v.Replicas {
		if h != r.self && h != v.Primary && urls[h] != "" {
			peers = append(peers, &replicator.Client{URL: urls[h], Secret: r.secret, HTTP: r.rt.client})
		}
	}
	cfg := replicator.FollowConfig{Store: r.host, Volume: id, Logger: r.log, Self: r.self, Peers: peers,
		Rate: r.rate, Metrics: r.fmet, Source: &replicator.Client{URL: urls[v.Primary], Secret: r.secret, HTTP: r.rt.client}}
	go func() {
		err := replicator.Follow(fctx, cfg)
		if fctx.Err() == nil {
			wait := 10 * time.Second
			if forked(err) {
				r.own.setAside(id, err)
				wait = time.Second
			}
			r.log.Error("replica stopped following; retrying", "volume", v.ID, "in", wait, "err", err)
			select {
			case <-fctx.Done():
			case <-time.After(wait):
			}
		}
		r.mu.Lock()
		if r.followers[v.ID] == fl {
			delete(r.followers, v.ID) // the next reconcile starts it again
		}
		r.mu.Unlock()
		cancel()
		close(fl.done)
	}()
}

// forked reports whether a follower stopped because this host's history of
// the volume does not continue in the primary's: the primary does not have
// the replica's version (409 to the stream's from), or an entry does not link.
func forked(err error) bool {
	return errors.Is(err, segment.ErrLink) && !errors.Is(err, segment.ErrStaleEpoch) ||
		replicator.IsStatus(err, 409)
}

// switchTo is a new primary's announcement that it owns base in epoch (a
// failover): this host stops following the old primary, and returns once
// its follower has stopped, so that what it then reports of its copy is
// final: no older primary gets another entry applied, nor acknowledged,
// here. If this host's store still owns the volume (it was the primary),
// it fences it first: it acknowledges no more writes. It starts no follower of a primary older than epoch (its catalog
// shows the new one shortly). An announcement older than what this host
// knows is refused (409): a newer primary exists.
func (r *replication) switchTo(ctx context.Context, base segment.ID, epoch uint64) error {
	id := base.String()
	r.mu.Lock()
	if cur, ok := r.hc.cat.Volume(id); ok && cur.Epoch > epoch {
		r.mu.Unlock()
		return httpErr(http.StatusConflict, "volume %v has a newer primary (%s, epoch %d) than epoch %d", base,
			cur.Primary, cur.Epoch, epoch)
	}
	if known := r.switched[id]; known > epoch {
		r.mu.Unlock()
		return httpErr(http.StatusConflict, "volume %v: a primary of epoch %d announced itself already", base, known)
	}
	r.switched[id] = epoch
	fl, ok := r.followers[id]
	r.mu.Unlock()
	// this host may still take itself for the primary (an old primary whose
	// catalog lags): it stops acknowledging before it answers
	if in, known := r.own.info(base); known && in.Owned && in.Epoch < epoch {
		if err := r.host.st.Fence(base, epoch); err != nil { // first: an untracked volume's writes need no acks
			return fmt.Errorf("volume %v not fenced at epoch %d: %w", base, epoch, err)
		}
		r.untrack(base, fmt.Sprintf("a new primary announced itself in epoch %d", epoch))
		r.log.Warn("deposed by a new primary's announcement: the volume is fenced here", "volume", base, "epoch", epoch)
	}
	if ok && fl.epoch >= epoch { // the catalog was quicker: it follows the new primary
		r.log.Info("a new primary announced itself", "volume", base, "epoch", epoch, "following_it", true)
		return nil
	}
	stopped, err := r.stopFollower(ctx, id)
	r.log.Info("a new primary announced itself", "volume", base, "epoch", epoch, "stopped_follower", stopped)
	return err
}

// stopFollower stops the follower of volume id, if one runs, and waits
// until it has stopped (or ctx ends); it reports whether one ran.
func (r *replication) stopFollower(ctx context.Context, id string) (bool, error) {
	r.mu.Lock()
	fl, ok := r.followers[id]
	delete(r.followers, id)
	r.mu.Unlock()
	if !ok {
		return false, nil
	}
	fl.stop()
	select {
	case <-fl.done:
		return true, nil
	case <-ctx.Done():
		return true, fmt.Errorf("the follower of volume %s did not stop: %w", id, ctx.Err())
	}
}

func (r *replication) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, fl := range r.followers {
		fl.stop()
		delete(r.followers, id)
	}
}

// replication answers info's question: the volume's catalog entry, and
// every host that keeps it with the version it has now (asked with a short
// timeout; an unreachable host is reported, not waited for).
func (r *replication) replication(ctx context.Context, base segment.ID, lsn uint64) *replicator.Replication {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	vols, err := cluster.Volumes(ctx, r.hc.client)
	if err != nil {
		return nil
	}
	i := slices.IndexFunc(vols, func(v cluster.Volume) bool { return v.ID == base.String() })
	if i < 0 {
		return nil
	}
	v := vols[i]
	hosts, _ := r.hc.hosts(ctx)
	urls := map[string]string{}
	for _, h := range hosts {
		urls[h.ID] = h.URL
	}
	out := &replicator.Replication{Mode: v.Mode, Primary: v.Primary, Replicas: make([]replicator.ReplicaInfo, len(v.Replicas))}
	forks := make([][]replicator.ForkInfo, len(v.Replicas))
	var wg sync.WaitGroup
	for j, id := range v.Replicas {
		wg.Go(func() { out.Replicas[j], forks[j] = r.replica(ctx, id, urls[id], base, lsn) })
	}
	wg.Wait()
	out.Forks = slices.Concat(forks...)
	states, _ := r.acks.Replicas(base) // the primary's view, if this host is the primary
	for j := range out.Replicas {
		ri := &out.Replicas[j]
		ri.LagBytes = -1
		if ri.Host == r.self {
			ri.LagBytes, ri.InSync = 0, true
		}
		for _, s := range states {
			if s.Host == ri.Host {
				ri.LagBytes, ri.InSync = s.LagBytes, s.InSync
				if !s.LastAck.IsZero() {
					ri.LastAck = &s.LastAck
				}
			}
		}
	}
	return out
}

// replica asks host for its copy of base, and the forks of base it keeps.
func (r *replication) replica(ctx context.Context, host, url string, base segment.ID,
	lsn uint64) (replicator.ReplicaInfo, []replicator.ForkInfo) {
	ri := replicator.ReplicaInfo{Host: host}
	if url == "" {
		ri.Err = "not live in the cluster"
		return ri, nil
	}
	vi, err := (&replicator.Client{URL: url, Secret: r.secret}).LocalInfo(ctx, base.String())
	if err != nil {
		ri.Err = err.Error()
		return ri, nil
	}
	ri.Version, ri.LSN = vi.Version, vi.LSN
	for i := range vi.Forks {
		vi.Forks[i].Host = host
	}
	if lsn > vi.LSN {
		ri.LagEntries = lsn - vi.LSN
	}
	return ri, vi.Forks
}
