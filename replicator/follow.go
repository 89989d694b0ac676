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
}

// FollowStatus says where a follower is.
type FollowStatus struct {
	State      string // "connecting", "following" or "retrying"
	Position   segment.Position
	Entries    int   // entries applied since Follow started
	Bytes      int64 // their bytes
	Reconnects int
	Err        error // the last error, while retrying
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
	f.log = f.log.With("component", "follower", "volume", cfg.Volume, "source", cfg.Source.URL)
	if f.cfg.MinBackoff <= 0 {
		f.cfg.MinBackoff = 100 * time.Millisecond
	}
	if f.cfg.MaxBackoff <= 0 {
		f.cfg.MaxBackoff = 10 * time.Second
	}
	return f.run(ctx)
}

type follower struct {
	cfg FollowConfig
	log *slog.Logger
	mu  sync.Mutex
	st  FollowStatus
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

// once streams from the replica's position until the stream ends.
func (f *follower) once(ctx context.Context) error {
	from, err := f.position()
	if err != nil {
		return err
	}
	o := StreamOptions{Follow: true}
	if from.LSN > 0 {
		o.From, o.LSN = from.Version.String(), from.LSN
	}
	rc, err := f.cfg.Source.Stream(ctx, f.cfg.Volume.String(), o)
	if err != nil {
		return err
	}
	defer rc.Close()
	f.set(func(s *FollowStatus) { s.State, s.Err, s.Position = "following", nil, from })
	f.log.Info("following", "from_lsn", from.LSN)
	st, err := f.cfg.Store.ApplyLive(rc, func(p segment.Position) {
		f.set(func(s *FollowStatus) { s.Position = p })
	})
	f.set(func(s *FollowStatus) { s.Entries += st.Entries; s.Bytes += st.Bytes })
	if err == nil {
		err = errors.New("the source ended the stream")
	}
	return err
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
	change(&f.st)
	st := f.st
	f.mu.Unlock()
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
	return fmt.Sprintf("%s at lsn %d (%d entries, %d reconnects)", s.State, s.Position.LSN, s.Entries, s.Reconnects)
}
