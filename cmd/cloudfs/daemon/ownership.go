package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"cloudfs/replicator"
	"cloudfs/replicator/cluster"
	"cloudfs/segment"

	"github.com/prometheus/client_golang/prometheus"
)

// Ownership (issue 6). The catalog's epoch of a volume is the etcd revision
// of its last ownership change; the store's epoch of the volume is the one
// its entries carry. This host keeps the two equal:
//   - the primary takes the catalog's epoch with a view entry
//     (segment.TakeOver) when its store is behind it (a new volume, or one
//     made before epochs);
//   - a host whose store still owns a volume the catalog gives to another
//     host (an old primary back from a pause or a partition) fences it at
//     the catalog's epoch (segment.Fence): its store refuses its writes from
//     then on. Replicas are not fenced by the catalog: the new primary's
//     history holds entries of the old epoch before its view entry, which a
//     lagging replica must still apply; they stop following the old primary
//     when the catalog changes, and once they apply the view entry they
//     refuse the old epoch;
//   - when the primary's lease has expired, the most up-to-date live
//     replica (highest lsn, then lowest host id) takes the volume by
//     compare-and-swap in etcd; in quorum mode only while a majority of
//     the volume's hosts is live. Before it serves, it makes the other
//     replicas stop following the old primary and catches up from the one
//     furthest ahead (finish), then appends a view entry in the new epoch;
//   - a replica whose history has diverged from the primary's (an old
//     primary's tail nobody else has) keeps it as a branch, a fork, reported
//     in the log, a metric and <data-dir>/forks.json, and copies the volume
//     again from the primary.

// errElection: another host became the primary first, or the old one is back.
var errElection = errors.New("election lost")

// ownership is the per-host state of the above.
type ownership struct {
	r        *replication
	forkPath string
	forks    prometheus.Counter
	failover prometheus.Counter
	rerep    prometheus.Counter
	// after is how long a replica's host may be gone before the primary
	// puts the volume on another host instead (0: never).
	after time.Duration

	alignMu   sync.Mutex
	mu        sync.Mutex
	electing  map[segment.ID]time.Time // last attempt
	taking    map[segment.ID]bool      // a take-over under way (finish, acquire)
	downSince map[string]time.Time     // "<volume>/<host>" -> first seen gone
}

func newOwnership(r *replication, dataDir string, after time.Duration, reg prometheus.Registerer) *ownership {
	o := &ownership{r: r, forkPath: filepath.Join(dataDir, "forks.json"), electing: map[segment.ID]time.Time{},
		taking: map[segment.ID]bool{},
		after:  after, downSince: map[string]time.Time{},
		rerep: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cloudfs", Subsystem: "ownership",
			Name: "rereplications_total", Help: "Replicas of volumes this host is the primary of moved off a host gone too long."}),
		forks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cloudfs", Subsystem: "ownership",
			Name: "forks_total", Help: "Divergent histories kept as branches on this host (forks)."}),
		failover: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cloudfs", Subsystem: "ownership",
			Name: "takeovers_total", Help: "Volumes this host took over as primary after the primary's lease expired."}),
	}
	if reg != nil {
		reg.MustRegister(o.forks, o.failover, o.rerep)
	}
	return o
}

// align gives the primary's store the catalog's epoch. A volume on this
// host alone needs none (nobody to fence), and keeps its history as it is.
func (o *ownership) align(base segment.ID, v cluster.Volume) {
	if len(v.Replicas) < 2 {
		return
	}
	o.alignMu.Lock() // creation and reconcile may both get here
	defer o.alignMu.Unlock()
	in, ok := o.info(base)
	if !ok || v.Epoch == 0 || in.Epoch >= v.Epoch || !in.Owned {
		return
	}
	if _, err := o.r.host.st.TakeOver(base, v.Epoch); err != nil {
		o.r.log.Error("volume not moved to the catalog's epoch", "volume", base, "epoch", v.Epoch, "err", err)
		return
	}
	o.r.log.Info("volume in the catalog's epoch", "volume", base, "epoch", v.Epoch)
}

// fence makes a store that still owns a volume the catalog gives to
// another host refuse writes to it.
func (o *ownership) fence(base segment.ID, v cluster.Volume) {
	in, ok := o.info(base)
	if !ok || !in.Owned || v.Epoch == 0 || in.Epoch >= v.Epoch || in.FencedEpoch >= v.Epoch {
		return
	}
	if err := o.r.host.st.Fence(base, v.Epoch); err != nil {
		o.r.log.Error("volume not fenced", "volume", base, "epoch", v.Epoch, "err", err)
		return
	}
	o.r.log.Info("volume fenced: entries of older epochs are refused", "volume", base, "epoch", v.Epoch,
		"primary", v.Primary, "was_owner", in.Owned)
}

func (o *ownership) info(base segment.ID) (segment.Info, bool) {
	vol, err := o.r.host.st.Volume(base)
	if err != nil {
		return segment.Info{}, false
	}
	in, err := vol.Info()
	return in, err == nil
}

// elect runs, for a volume whose primary is not live, the election of this
// host if it is the most up-to-date live replica. At most one attempt a
// second per volume.
func (o *ownership) elect(ctx context.Context, base segment.ID, v cluster.Volume, urls map[string]string) {
	o.mu.Lock()
	if time.Since(o.electing[base]) < 3*time.Second {
		o.mu.Unlock()
		return
	}
	o.electing[base] = time.Now()
	o.mu.Unlock()
	go func() {
		// a few quick tries: the catalog may not have caught up with the
		// lease's expiry everywhere yet; after them the reconcile retries
		for try := 0; try < 8; try++ {
			_, err := o.tryTakeOver(ctx, base, v, urls, false)
			if err == nil || ctx.Err() != nil {
				return
			}
			if cur, ok := o.r.hc.cat.Volume(v.ID); !ok || cur.Primary != v.Primary {
				return // someone took it
			}
			if try == 7 && !errors.Is(err, errElection) {
				o.r.log.Warn("failover of a volume whose primary is gone did not happen", "volume", base,
					"primary", v.Primary, "err", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
}

// tryTakeOver makes this host base's primary if it is the most
// up-to-date live replica and, for a quorum volume, a majority of the
// volume's hosts is live; force skips both checks (cloudfs force), and
// turns a quorum volume into a sync one, which this host alone can serve.
// It returns the new epoch.
func (o *ownership) tryTakeOver(ctx context.Context, base segment.ID, v cluster.Volume, urls map[string]string,
	force bool) (uint64, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in, ok := o.info(base)
	if !ok {
		return 0, fmt.Errorf("volume %v: no copy here: %w", base, segment.ErrNotFound)
	}
	best, bestLSN, live := o.r.self, in.LSN, 1
	for _, h := range v.Replicas {
		if h == o.r.self || h == v.Primary || urls[h] == "" {
			continue
		}
		vi, err := (&replicator.Client{URL: urls[h], Secret: o.r.secret, HTTP: o.r.rt.client}).LocalInfo(ctx, v.ID)
		if err != nil {
			continue
		}
		live++
		if vi.LSN > bestLSN || (vi.LSN == bestLSN && h < best) {
			best, bestLSN = h, vi.LSN
		}
	}
	if !force && v.Mode == replicator.ModeQuorum && live < len(v.Replicas)/2+1 {
		return 0, fmt.Errorf("%d of %d hosts live, a majority is needed (cloudfs force overrides): %w", live,
			len(v.Replicas), replicator.ErrNoQuorum)
	}
	if !force && best != o.r.self {
		return 0, errElection // the most up-to-date replica takes it
	}
	mode := v.Mode
	if force && mode == replicator.ModeQuorum {
		mode = replicator.ModeSync
	}
	// marked before the catalog changes, so that reconcile does not resume
	// the take-over this call is making
	if !o.begin(base) {
		return 0, fmt.Errorf("volume %v: a take-over is under way: %w", base, errElection)
	}
	defer o.end(base)
	epoch, err := cluster.UpdateVolume(ctx, o.r.hc.client, v.ID, func(cur *cluster.Volume) error {
		if cur.Primary != v.Primary {
			return errElection
		}
		if _, back := o.r.hc.cat.Host(cur.Primary); back {
			return errElection
		}
		cur.Primary, cur.Epoch, cur.Mode = o.r.self, 0, mode // a new epoch: this write's revision
		return nil
	})
	if err != nil {
		return 0, err
	}
	old := v.Primary
	v.Primary, v.Epoch, v.Mode = o.r.self, uint64(epoch), mode
	won := time.Now()
	pos, err := o.finish(ctx, base, v, old, urls, force)
	if err != nil {
		// the catalog names this host: reconcile finishes it (resume)
		return 0, fmt.Errorf("took the volume in etcd (epoch %d) but does not serve it yet: %w", epoch, err)
	}
	o.failover.Inc()
	msg := "took over a volume whose primary's lease expired"
	if force {
		msg = "FORCED take-over: this host is the primary without the checks of a failover; writes another host " +
			"acknowledged and this one lacks are not in the volume (the old primary keeps them as a fork when it returns)"
	}
	o.r.log.Warn(msg, "volume", base, "old_primary", old, "epoch", epoch, "lsn", pos.LSN, "live_hosts", live,
		"mode", mode, "best_live_replica", best, "best_lsn", bestLSN, "election_took", won.Sub(start),
		"switch_took", time.Since(won))
	return uint64(epoch), nil
}

// finish serves a volume the catalog has just made this host the primary
// of (v, in v.Epoch; old was the primary before, "" if unknown), whose
// store does not own it yet. The election compared the replicas' copies
// while they still followed the old primary, which may have been paused
// rather than dead; so before it serves, this host
//   - stops its own follower;
//   - tells the other replicas (switch), which stop theirs and answer with
//     their copy. A quorum volume needs the answers of a majority of its
//     hosts (this one counted): every write the old primary acknowledged
//     is on one of them, and no majority is left to acknowledge its
//     writes from then on. A sync volume needs every live replica's
//     answer; async and forced take-overs ask once, without waiting;
//   - catches up from the answer furthest ahead of its own copy;
//
// then it takes the epoch with a view entry and serves the volume. The
// caller holds the volume's take-over mark (begin).
func (o *ownership) finish(ctx context.Context, base segment.ID, v cluster.Volume, old string,
	urls map[string]string, force bool) (segment.Position, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := o.r.stopFollower(ctx, v.ID); err != nil {
		return segment.Position{}, err
	}
	var ask []string
	for _, h := range v.Replicas {
		if h != o.r.self && h != old && urls[h] != "" {
			ask = append(ask, h)
		}
	}
	need := 0
	switch {
	case force || v.Mode == replicator.ModeAsync:
	case v.Mode == replicator.ModeQuorum:
		need = len(v.Replicas) / 2 // a majority, this host counted
	default: // sync: every live replica
		need = len(ask)
	}
	answers, err := o.announce(ctx, v, ask, urls, need)
	if err != nil {
		return segment.Position{}, err
	}
	o.catchUp(ctx, base, answers, urls)
	o.r.track(base, v) // before the store takes it: no write is acknowledged without the replicas
	pos, err := o.r.host.st.TakeOver(base, v.Epoch)
	if err != nil {
		o.r.untrack(base, "its take-over failed")
		return segment.Position{}, fmt.Errorf("the store did not take epoch %d: %w", v.Epoch, err)
	}
	o.r.rt.forget(base)
	return pos, nil
}

// announce tells hosts that this host is v's primary in v.Epoch (switch)
// and returns their answers (their copies once they stopped following the
// old primary). It asks again those that did not answer until need of
// them have, or ctx ends; need 0 asks once. A host that knows a newer
// primary ends it with that error.
func (o *ownership) announce(ctx context.Context, v cluster.Volume, hosts []string, urls map[string]string,
	need int) (map[string]replicator.VolumeInfo, error) {
	answers := map[string]replicator.VolumeInfo{}
	warned := map[string]bool{} // one log line per silent host, not one per try
	var mu sync.Mutex
	var newer error
	for {
		var ask []string
		for _, h := range hosts {
			if _, ok := answers[h]; !ok {
				ask = append(ask, h)
			}
		}
		var wg sync.WaitGroup
		for _, h := range ask {
			wg.Go(func() {
				actx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				c := &replicator.Client{URL: urls[h], Secret: o.r.secret, HTTP: o.r.rt.client}
				vi, err := c.Switch(actx, v.ID, v.Epoch)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					answers[h] = vi
				case replicator.IsStatus(err, http.StatusConflict):
					newer = fmt.Errorf("%s: %w: %w", h, errElection, err)
				case !warned[h]:
					warned[h] = true
					o.r.log.Warn("replica not told of the new primary; asking again", "volume", v.ID, "replica", h,
						"answers", len(answers), "needed", need, "err", err)
				}
			})
		}
		wg.Wait()
		switch {
		case newer != nil:
			return nil, newer
		case len(answers) >= need:
			return answers, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of the %d answers needed from the volume's replicas before serving: %w",
				len(answers), need, replicator.ErrNoQuorum)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// catchUp applies, from the answer furthest ahead of this host's copy of
// base, the entries this host lacks: writes of the old primary that
// reached a replica after the election compared their copies. A peer
// whose history does not continue this host's is passed over (its tail
// becomes a fork there when it follows this host).
func (o *ownership) catchUp(ctx context.Context, base segment.ID, answers map[string]replicator.VolumeInfo,
	urls map[string]string) {
	hosts := slices.Collect(maps.Keys(answers))
	slices.SortFunc(hosts, func(a, b string) int { return cmp.Compare(answers[b].LSN, answers[a].LSN) })
	for _, h := range hosts {
		in, ok := o.info(base)
		if !ok || answers[h].LSN <= in.LSN {
			return
		}
		c := &replicator.Client{URL: urls[h], Secret: o.r.secret, HTTP: o.r.rt.client}
		rs, err := c.OpenStream(ctx, base.String(), replicator.StreamOptions{From: in.Version.String(), LSN: in.LSN})
		if err == nil {
			_, err = o.r.host.ApplyLive(rs.Body, nil)
			rs.Body.Close()
		}
		after, _ := o.info(base)
		if err != nil {
			o.r.log.Error("a replica ahead of the new primary did not give it its entries", "volume", base, "replica", h,
				"its_lsn", answers[h].LSN, "lsn", after.LSN, "err", err)
			continue
		}
		o.r.log.Warn("the new primary caught up from a replica ahead of it", "volume", base, "replica", h,
			"from_lsn", in.LSN, "lsn", after.LSN)
	}
}

// begin marks a take-over of base under way (finish, acquire); false if
// one is.
func (o *ownership) begin(base segment.ID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.taking[base] {
		return false
	}
	o.taking[base] = true
	return true
}

func (o *ownership) end(base segment.ID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.taking, base)
}

// resume finishes, in the background, a take-over the catalog records but
// this host's store has not made (finish failed, or the daemon stopped in
// between): v names this host the primary, and the store does not own the
// volume in v's epoch. At most one attempt every 3 s per volume.
func (o *ownership) resume(ctx context.Context, base segment.ID, v cluster.Volume, urls map[string]string) {
	o.mu.Lock()
	if o.taking[base] || time.Since(o.electing[base]) < 3*time.Second {
		o.mu.Unlock()
		return
	}
	o.electing[base], o.taking[base] = time.Now(), true
	o.mu.Unlock()
	go func() {
		defer o.end(base)
		pos, err := o.finish(ctx, base, v, "", urls, false)
		if err != nil {
			o.r.log.Warn("the catalog names this host the volume's primary; it does not serve it yet", "volume", base,
				"epoch", v.Epoch, "err", err)
			return
		}
		o.r.log.Warn("serves a volume the catalog gave it earlier", "volume", base, "epoch", v.Epoch, "lsn", pos.LSN)
	}()
}

// pending reports whether v names this host the primary in an epoch its
// store has not taken yet, while another host owned the volume before (a
// failover not finished; resume finishes it).
func (o *ownership) pending(base segment.ID, v cluster.Volume) bool {
	if len(v.Replicas) < 2 || v.Epoch == 0 {
		return false
	}
	in, ok := o.info(base)
	return ok && !in.Owned && in.Epoch < v.Epoch
}

// force makes this host base's primary though no failover would (no quorum
// live, or another replica ahead): an operator's last resort.
func (o *ownership) force(ctx context.Context, base segment.ID) (replicator.HandoverResult, error) {
	res := replicator.HandoverResult{Volume: base.String(), To: o.r.self}
	v, ok := o.r.hc.cat.Volume(base.String())
	switch {
	case !ok:
		return res, fmt.Errorf("volume %v is not in the cluster's catalog: %w", base, segment.ErrNotFound)
	case v.Primary == o.r.self:
		return res, httpErr(http.StatusConflict, "this host (%s) is the primary already", o.r.self)
	case !slices.Contains(v.Replicas, o.r.self):
		return res, httpErr(http.StatusConflict, "this host (%s) keeps no replica of the volume", o.r.self)
	}
	if _, live := o.r.hc.cat.Host(v.Primary); live {
		return res, httpErr(http.StatusConflict, "the primary %s is live: use acquire for a hand-over", v.Primary)
	}
	urls := map[string]string{}
	for _, h := range o.r.hc.cat.Hosts() {
		urls[h.ID] = h.URL
	}
	res.From = v.Primary
	epoch, err := o.tryTakeOver(ctx, base, v, urls, true)
	res.Epoch = epoch
	return res, err
}

// rereplicate, on the primary of v, replaces each replica whose host has
// been gone longer than o.after by a live host that does not keep the
// volume (the one with the most free space): the catalog changes, and the
// new host's follower copies the volume (from the replica furthest ahead,
// then live from the primary). A host that comes back afterwards keeps its
// copy, no longer followed, until someone deletes it.
func (o *ownership) rereplicate(ctx context.Context, v cluster.Volume, urls map[string]string) {
	if o.after <= 0 {
		return
	}
	now := time.Now()
	var due []string
	o.mu.Lock()
	for _, h := range v.Replicas {
		key := v.ID + "/" + h
		if h == o.r.self || urls[h] != "" {
			delete(o.downSince, key)
			continue
		}
		if o.downSince[key].IsZero() {
			o.downSince[key] = now
		}
		if now.Sub(o.downSince[key]) >= o.after {
			due = append(due, h)
		}
	}
	o.mu.Unlock()
	if len(due) == 0 {
		return
	}
	var spare []cluster.Host
	for _, h := range o.r.hc.cat.Hosts() {
		if !slices.Contains(v.Replicas, h.ID) {
			spare = append(spare, h)
		}
	}
	n := min(len(due), len(spare))
	if n == 0 {
		o.r.log.Debug("replicas gone, no live host to put the volume on instead", "volume", v.ID, "gone", due)
		return
	}
	placed, err := cluster.Place(spare, "", n)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cluster.UpdateVolume(ctx, o.r.hc.client, v.ID, func(cur *cluster.Volume) error {
		if cur.Primary != o.r.self {
			return errElection
		}
		for i, h := range due[:n] {
			if j := slices.Index(cur.Replicas, h); j >= 0 {
				cur.Replicas[j] = placed[i].ID
			}
		}
		return nil
	})
	if err != nil {
		o.r.log.Warn("re-replication not recorded", "volume", v.ID, "err", err)
		return
	}
	for i, h := range due[:n] {
		o.rerep.Inc()
		o.mu.Lock()
		delete(o.downSince, v.ID+"/"+h)
		o.mu.Unlock()
		o.r.log.Warn("re-replicating: a replica's host is gone too long; the volume goes to another host", "volume", v.ID,
			"gone", h, "after", o.after, "new", placed[i].ID)
	}
}

// fork is one divergent history kept as a branch.
type fork struct {
	Volume  string    `json:"volume"`
	Branch  string    `json:"branch"`  // the volume holding the divergent history
	Version string    `json:"version"` // its head
	LSN     uint64    `json:"lsn"`
	Epoch   uint64    `json:"epoch"`
	At      time.Time `json:"at"`
}

// setAside keeps a replica's history that does not continue in the
// primary's as a branch (a fork) and deletes the volume here, so that its
// follower copies it again from the primary.
func (o *ownership) setAside(base segment.ID, cause error) {
	in, ok := o.info(base)
	if !ok {
		return
	}
	b, err := o.r.host.Branch(in.Version)
	if err != nil {
		o.r.log.Error("fork not kept: the volume stays as it is and is not followed", "volume", base, "err", err)
		return
	}
	if err := o.r.host.Delete(base, true); err != nil {
		o.r.log.Error("forked volume not deleted", "volume", base, "fork", b.Base(), "err", err)
		return
	}
	f := fork{Volume: base.String(), Branch: b.Base().String(), Version: in.Version.String(), LSN: in.LSN,
		Epoch: in.Epoch, At: time.Now().UTC()}
	o.forks.Inc()
	o.r.log.Error("FORK: this host's history of the volume is not in the primary's; it is kept as a branch and the "+
		"volume is copied again from the primary", "volume", base, "fork", f.Branch, "lsn", f.LSN, "version",
		f.Version, "cause", cause)
	o.mu.Lock()
	defer o.mu.Unlock()
	all := o.loadLocked()
	all = append(all, f)
	if b, err := json.MarshalIndent(all, "", "  "); err == nil {
		err = os.WriteFile(o.forkPath, b, 0o644)
		if err != nil {
			o.r.log.Error("fork not recorded", "path", o.forkPath, "err", err)
		}
	}
}

// Forks returns the forks of base kept on this host.
func (o *ownership) Forks(base segment.ID) []fork {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []fork
	for _, f := range o.loadLocked() {
		if f.Volume == base.String() {
			out = append(out, f)
		}
	}
	return out
}

// forkInfo lists the forks of base kept on this host, for its info.
func (o *ownership) forkInfo(base segment.ID) []replicator.ForkInfo {
	var out []replicator.ForkInfo
	for _, f := range o.Forks(base) {
		out = append(out, replicator.ForkInfo{Host: o.r.self, Branch: f.Branch, Version: f.Version, LSN: f.LSN, At: f.At})
	}
	return out
}

func (o *ownership) loadLocked() []fork {
	var all []fork
	if b, err := os.ReadFile(o.forkPath); err == nil {
		_ = json.Unmarshal(b, &all)
	}
	return all
}
