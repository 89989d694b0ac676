package replicator

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"cloudfs/segment"
)

// A planned hand-over moves a volume's primary role to an up-to-date
// replica while the volume is in use (live migration of a VM). The primary
// holds new writes (they wait, they are not refused), lets the writes in
// flight finish, waits until the new primary has acknowledged everything,
// then hands the volume over; the writes it held are then sent to the new
// primary by whoever issued them (the block device, the block API and the
// shim retry a write refused with ErrNotPrimary at the primary the catalog
// names). IO pauses for the hand-over alone.

// gate is a volume's held writes: closed (nil) or a channel closed when
// the hold ends.
type gate struct {
	ch       chan struct{}
	inflight int // writes between the local log and their acknowledgement
	since    time.Time
}

// Hold makes new writes and flushes of base wait (until the returned
// release is called), then waits until the writes already in flight are
// acknowledged or failed, within ctx.
func (a *Acks) Hold(ctx context.Context, base segment.ID) (release func(), err error) {
	a.mu.Lock()
	g := a.gateLocked(base)
	if g.ch != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("volume %v: a hand-over is under way: %w", base, ErrBusy)
	}
	g.ch, g.since = make(chan struct{}), time.Now()
	ch := g.ch
	a.mu.Unlock()
	release = func() {
		a.mu.Lock()
		if g.ch == ch {
			close(ch)
			g.ch = nil
		}
		a.mu.Unlock()
	}
	for {
		a.mu.Lock()
		n := g.inflight
		a.mu.Unlock()
		if n == 0 {
			return release, nil
		}
		select {
		case <-ctx.Done():
			release()
			return nil, fmt.Errorf("volume %v: %d writes still in flight: %w", base, n, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func (a *Acks) gateLocked(base segment.ID) *gate {
	if a.gates == nil {
		a.gates = map[segment.ID]*gate{}
	}
	g := a.gates[base]
	if g == nil {
		g = &gate{}
		a.gates[base] = g
	}
	return g
}

// enter registers a write of base about to reach the local log; if base is
// held it returns the channel to wait on first (and registers nothing).
func (a *Acks) enter(base segment.ID) <-chan struct{} {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gateLocked(base)
	if g.ch != nil {
		return g.ch
	}
	g.inflight++
	return nil
}

// leave ends a write registered by enter.
func (a *Acks) leave(base segment.ID) {
	if a == nil {
		return
	}
	a.mu.Lock()
	g := a.gateLocked(base)
	if g.inflight--; g.inflight == 0 && g.ch == nil {
		delete(a.gates, base) // no hand-over: nothing to keep (volumes come and go)
	}
	a.mu.Unlock()
}

// WaitCaughtUp waits until host has acknowledged base's head, within ctx.
func (a *Acks) WaitCaughtUp(ctx context.Context, base segment.ID, host string) error {
	for {
		head, err := a.cfg.Head(base)
		if err != nil {
			return err
		}
		a.mu.Lock()
		var at uint64
		v := a.vols[base]
		if v != nil && v.replicas[host] != nil {
			at = v.replicas[host].pos.LSN
		}
		a.mu.Unlock()
		if v == nil {
			return fmt.Errorf("volume %v: %w", base, ErrNotPrimary)
		}
		if at >= head.LSN {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s at lsn %d, the head at %d: %w", host, at, head.LSN, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// HandoverResult is the answer to an acquire or a hand-over.
type HandoverResult struct {
	Volume string `json:"volume"`
	From   string `json:"from"`  // the previous primary's host id
	To     string `json:"to"`    // the new primary's
	Epoch  uint64 `json:"epoch"` // the volume's new epoch
	// PausedMS is how long the previous primary held the volume's writes.
	PausedMS float64 `json:"paused_ms"`
}

// acquire answers POST /v1/volumes/{id}/acquire: this host (a replica up
// to date) becomes the volume's primary by a planned hand-over.
func (s *server) acquire(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if s.cfg.Acquire == nil {
		return errf(http.StatusServiceUnavailable, "this host runs without a cluster")
	}
	res, err := s.cfg.Acquire(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// force answers POST /v1/volumes/{id}/force: this host becomes the
// volume's primary though no failover would (an operator's last resort).
func (s *server) force(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if s.cfg.Force == nil {
		return errf(http.StatusServiceUnavailable, "this host runs without a cluster")
	}
	res, err := s.cfg.Force(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// Force makes the host the volume's primary without a failover's checks.
func (c *Client) Force(ctx context.Context, id string) (HandoverResult, error) {
	var out HandoverResult
	return out, c.json(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/force", &out)
}

// switchPrimary answers POST /v1/volumes/{id}/switch?epoch=<n>: a new
// primary (after a failover) tells this replica to stop following the old
// one. The answer is this host's copy of the volume once its follower has
// stopped, which the new primary needs to know it has every acknowledged
// write.
func (s *server) switchPrimary(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
	if err != nil || epoch == 0 {
		return errf(http.StatusBadRequest, "switch: want ?epoch=<the new epoch>")
	}
	if s.cfg.Switch == nil {
		return errf(http.StatusServiceUnavailable, "this host runs without a cluster")
	}
	v, err := s.cfg.Store.Volume(id)
	if err != nil {
		return err
	}
	if err := s.cfg.Switch(r.Context(), id, epoch); err != nil {
		return err
	}
	vi, err := s.info(v)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, vi)
}

// Switch tells a replica that a new primary owns the volume in epoch, and
// returns the replica's copy once it has stopped following the old one.
func (c *Client) Switch(ctx context.Context, id string, epoch uint64) (VolumeInfo, error) {
	var out VolumeInfo
	return out, c.json(ctx, http.MethodPost,
		"/v1/volumes/"+url.PathEscape(id)+"/switch?epoch="+strconv.FormatUint(epoch, 10), &out)
}

// handover answers POST /v1/volumes/{id}/handover?to=<host>: the primary
// holds the volume's writes, drains them, waits until host has everything,
// gives it the volume in the catalog (a new epoch) and answers; it keeps
// the writes held until POST .../handover/done (or 10 s), by which time
// the new primary serves.
func (s *server) handover(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	to := r.URL.Query().Get("to")
	if to == "" {
		return errf(http.StatusBadRequest, "handover: want ?to=<host id>")
	}
	if s.cfg.Handover == nil {
		return errf(http.StatusServiceUnavailable, "this host runs without a cluster")
	}
	res, err := s.cfg.Handover(r.Context(), id, to)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// handoverDone answers POST /v1/volumes/{id}/handover/done: the new primary
// serves; the writes held here go to it.
func (s *server) handoverDone(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if s.cfg.HandoverDone != nil {
		s.cfg.HandoverDone(id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Acquire asks the host to become the volume's primary (planned hand-over).
func (c *Client) Acquire(ctx context.Context, id string) (HandoverResult, error) {
	var out HandoverResult
	return out, c.json(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/acquire", &out)
}

// Handover asks the volume's primary to hand it over to host to.
func (c *Client) Handover(ctx context.Context, id, to string) (HandoverResult, error) {
	var out HandoverResult
	return out, c.json(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/handover?to="+url.QueryEscape(to), &out)
}

// HandoverDone tells the previous primary that the new one serves.
func (c *Client) HandoverDone(ctx context.Context, id string) error {
	return c.json(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/handover/done", nil)
}

// ModeResult answers a change of a volume's replication mode.
type ModeResult struct {
	Volume string `json:"volume"`
	Mode   string `json:"mode"`
	Was    string `json:"was"`
}

// setMode answers POST /v1/volumes/{id}/mode?mode=<sync|quorum|async>: the
// volume's replication mode changes in the catalog; its primary waits for
// the replicas by the new mode from its next write.
func (s *server) setMode(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	mode := r.URL.Query().Get("mode")
	if !ValidMode(mode) {
		return errf(http.StatusBadRequest, "mode: want ?mode=sync, quorum or async, not %q", mode)
	}
	if s.cfg.SetMode == nil {
		return errf(http.StatusServiceUnavailable, "this host runs without a cluster")
	}
	was, err := s.cfg.SetMode(r.Context(), id, mode)
	if err != nil {
		return err
	}
	s.log.Info("replication mode set", "volume", id, "mode", mode, "was", was)
	return writeJSON(w, http.StatusOK, ModeResult{Volume: id.String(), Mode: mode, Was: was})
}

// SetMode changes a volume's replication mode.
func (c *Client) SetMode(ctx context.Context, id, mode string) (ModeResult, error) {
	var out ModeResult
	return out, c.json(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/mode?mode="+url.QueryEscape(mode), &out)
}
