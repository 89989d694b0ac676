package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"cloudfs/segment"
)

// FollowStore is what a follower needs of the local store.
type FollowStore interface {
	Volume(base segment.ID) (*segment.Volume, error)
	ApplyLive(r io.Reader, applied func(segment.Position)) (segment.ApplyStats, error)
}

// FollowConfig configures Follow.
type FollowConfig struct {
	Store  FollowStore
	Source *Client // the host the volume is followed from
	Volume segment.ID
	Logger *slog.Logger // nil: discard
	// MinBackoff and MaxBackoff bound the wait before a reconnect, doubled
	// after each failure in a row (defaults 100 ms and 10 s).
	MinBackoff, MaxBackoff time.Duration
	// Status, if set, receives the follower's state after every change.
	Status func(FollowStatus)
	// Self is this host's id. If set, the follower acknowledges to Source
	// (the primary) how far it has durably applied the volume: after every
	// applied batch, and every second while it follows.
	Self string
	// Peers are other hosts that keep the volume. A replica more than
	// PeerMinLag entries behind catches up from the peer that is furthest
	// ahead (sparing the primary), then joins the primary's live stream.
	Peers      []*Client
	PeerMinLag uint64 // default 1024
	// Rate caps catch-up at so many bytes a second (0: no cap); the live
	// stream is never capped.
	Rate int64
	// Progress is how often a catch-up logs its progress (default 5 s).
	Progress time.Duration
	Metrics  *FollowMetrics // nil: none
}

// FollowStatus says where a follower is.
type FollowStatus struct {
	State      string // "connecting", "catching-up", "following" or "retrying"
	Position   segment.Position
	Entries    int   // entries applied since Follow started
	Bytes      int64 // their bytes
	Reconnects int
	Err        error // the last error, while retrying
	// HeadLSN is the source's head when the stream began; LeftBytes what
	// remained to catch up then, less what has arrived since (-1: unknown).
	HeadLSN   uint64
	LeftBytes int64
	Source    string // the host the entries come from now
}

// Follow keeps the local replica of cfg.Volume up to date with cfg.Source
// until ctx ends: it asks for the entries after the replica's current
// version (the delta only; the whole volume if the replica has none), then
// stays on the live stream and applies each entry as it arrives. A broken
// stream reconnects by itself, from wherever the replica got to. It returns
// ctx's error, or at once an error that retrying cannot cure: a fork (the
// source's history does not contain the replica's version, ErrLink) or a
// stream that does not verify (ErrCorrupt).
func Follow(ctx context.Context, cfg FollowConfig) error {
	f := &follower{cfg: cfg, log: cfg.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("component", "follower", "volume", cfg.Volume, "primary", cfg.Source.URL)
	if f.cfg.MinBackoff <= 0 {
		f.cfg.MinBackoff = 100 * time.Millisecond
	}
	if f.cfg.MaxBackoff <= 0 {
		f.cfg.MaxBackoff = 10 * time.Second
	}
	if f.cfg.PeerMinLag == 0 {
		f.cfg.PeerMinLag = 1024
	}
	if f.cfg.Progress <= 0 {
		f.cfg.Progress = 5 * time.Second
	}
	f.kick = make(chan struct{}, 1)
	if cfg.Self != "" {
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		go f.acknowledge(actx)
	}
	defer cfg.Metrics.forget(cfg.Volume.String())
	return f.run(ctx)
}

type follower struct {
	cfg  FollowConfig
	log  *slog.Logger
	mu   sync.Mutex
	st   FollowStatus
	kick chan struct{} // the position moved: acknowledge it
}

func (f *follower) run(ctx context.Context) error {
	backoff := f.cfg.MinBackoff
	for {
		f.set(func(s *FollowStatus) { s.State = "connecting" })
		before := f.status().Entries
		err := f.once(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fatal(err) {
			switch {
			case errors.Is(err, segment.ErrCorrupt):
				f.cfg.Metrics.reject("corrupt")
			case errors.Is(err, segment.ErrLink):
				f.cfg.Metrics.reject("link")
			}
			f.log.Error("following stopped", "err", err)
			return err
		}
		if f.status().Entries > before {
			backoff = f.cfg.MinBackoff // it was working: retry soon
		}
		f.set(func(s *FollowStatus) { s.State, s.Err = "retrying", err; s.Reconnects++ })
		f.log.Warn("stream broke; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, f.cfg.MaxBackoff)
	}
}

// once catches up (from a peer, if one is far enough ahead) and then
// streams from the primary until the stream ends.
func (f *follower) once(ctx context.Context) error {
	from, err := f.position()
	if err != nil {
		return err
	}
	if peer := f.aheadPeer(ctx, from); peer != nil {
		if err := f.stream(ctx, peer, from, false); err != nil {
			f.log.Warn("catch-up from a peer failed; the primary sends the rest", "peer", peer.URL, "err", err)
		}
		if from, err = f.position(); err != nil {
			return err
		}
	}
	err = f.stream(ctx, f.cfg.Source, from, true)
	if err == nil {
		err = errors.New("the source ended the stream")
	}
	return err
}

// stream applies src's entries after from: up to its head, and then live
// if follow.
func (f *follower) stream(ctx context.Context, src *Client, from segment.Position, follow bool) error {
	o := StreamOptions{Follow: follow}
	if from.LSN > 0 {
		o.From, o.LSN = from.Version.String(), from.LSN
	}
	rs, err := src.OpenStream(ctx, f.cfg.Volume.String(), o)
	if err != nil {
		return err
	}
	defer rs.Body.Close()
	state := "catching-up"
	if rs.HeadLSN <= from.LSN {
		state = "following"
	}
	f.set(func(s *FollowStatus) {
		s.State, s.Err, s.Position, s.HeadLSN, s.LeftBytes, s.Source = state, nil, from, rs.HeadLSN, rs.LagBytes, src.URL
	})
	f.log.Info("stream open", "source", src.URL, "from_lsn", from.LSN, "head_lsn", rs.HeadLSN, "lag_bytes", rs.LagBytes,
		"follow", follow)
	body := io.Reader(rs.Body)
	if f.cfg.Rate > 0 {
		body = &throttle{r: rs.Body, rate: f.cfg.Rate, live: func() bool { return f.status().State == "following" }}
	}
	pr := newProgress(f, from.LSN, rs.HeadLSN)
	st, err := f.cfg.Store.ApplyLive(body, func(p segment.Position) {
		f.set(func(s *FollowStatus) {
			s.Position = p
			if s.State == "catching-up" && p.LSN >= s.HeadLSN {
				s.State = "following"
			}
			if rs.LagBytes >= 0 && rs.HeadLSN > from.LSN { // pro rata by entries
				left := float64(rs.HeadLSN-min(p.LSN, rs.HeadLSN)) / float64(rs.HeadLSN-from.LSN)
				s.LeftBytes = int64(left * float64(rs.LagBytes))
			}
		})
		pr.update(p)
	})
	f.set(func(s *FollowStatus) { s.Entries += st.Entries; s.Bytes += st.Bytes })
	return err
}

// aheadPeer returns the peer furthest ahead of from, if it is more than
// PeerMinLag entries ahead; nil otherwise.
func (f *follower) aheadPeer(ctx context.Context, from segment.Position) *Client {
	if len(f.cfg.Peers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var best *Client
	bestLSN := from.LSN + f.cfg.PeerMinLag
	for _, p := range f.cfg.Peers {
		vi, err := p.LocalInfo(ctx, f.cfg.Volume.String())
		if err == nil && vi.LSN > bestLSN {
			best, bestLSN = p, vi.LSN
		}
	}
	return best
}

// acknowledge tells the primary the replica's durable position whenever it
// moves, and every second while following (a heartbeat: a silent replica
// leaves a sync volume's in-sync set).
func (f *follower) acknowledge(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var warned bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		case <-t.C:
		}
		st := f.status()
		if st.State != "following" && st.State != "catching-up" || st.Position.LSN == 0 || st.Source != f.cfg.Source.URL {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f.cfg.Source.Ack(actx, f.cfg.Volume.String(),
			Ack{Host: f.cfg.Self, LSN: st.Position.LSN, Version: st.Position.Version.String()})
		cancel()
		switch {
		case err != nil && !warned && ctx.Err() == nil:
			f.log.Warn("acknowledgement refused", "err", err)
			warned = true
		case err == nil:
			warned = false
		}
	}
}

// position is the replica's current version, zero if it has none yet.
func (f *follower) position() (segment.Position, error) {
	v, err := f.cfg.Store.Volume(f.cfg.Volume)
	if errors.Is(err, segment.ErrNotFound) {
		return segment.Position{}, nil
	}
	if err != nil {
		return segment.Position{}, err
	}
	in, err := v.Info()
	if err != nil {
		return segment.Position{}, err
	}
	return segment.Position{LSN: in.LSN, Version: in.Version}, nil
}

// fatal reports whether retrying cannot cure err: a fork, bytes that do not
// verify, a volume the source does not have. A stream cut inside an entry
// (the connection broke) is not corrupt: the entries before it are applied
// and the next connection resends the rest.
func fatal(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	return errors.Is(err, segment.ErrLink) || errors.Is(err, segment.ErrCorrupt) ||
		IsStatus(err, 409) || IsStatus(err, 422) || IsStatus(err, 404) || IsStatus(err, 401)
}

func (f *follower) set(change func(*FollowStatus)) {
	f.mu.Lock()
	before, reconnects := f.st.Position, f.st.Reconnects
	change(&f.st)
	st := f.st
	f.mu.Unlock()
	f.cfg.Metrics.observe(f.cfg.Volume.String(), st, st.Reconnects > reconnects)
	if st.Position != before {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
	if f.cfg.Status != nil {
		f.cfg.Status(st)
	}
}

func (f *follower) status() FollowStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (s FollowStatus) String() string {
	return fmt.Sprintf("%s at lsn %d of %d (%d entries, %d reconnects)", s.State, s.Position.LSN, s.HeadLSN, s.Entries,
		s.Reconnects)
}
