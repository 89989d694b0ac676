package cluster

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbedConfig configures an embedded etcd member.
type EmbedConfig struct {
	Dir  string // its data directory (created if missing)
	Name string // member name, the host id
	// ClientURL and PeerURL are where it listens, e.g.
	// "http://127.0.0.1:2379" and "http://127.0.0.1:2380".
	ClientURL, PeerURL string
	// ReadyTimeout bounds the wait for the member to serve (default 1 min).
	ReadyTimeout time.Duration
}

// Embedded is an etcd member running inside this process.
type Embedded struct {
	e        *embed.Etcd
	endpoint string
}

// StartEmbedded starts a single-member etcd cluster in cfg.Dir (or rejoins
// the one there) and waits until it serves. Its logs go to cfg.Dir/etcd.log.
func StartEmbedded(ctx context.Context, cfg EmbedConfig) (*Embedded, error) {
	cu, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client url %q: %w", cfg.ClientURL, err)
	}
	pu, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer url %q: %w", cfg.PeerURL, err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Dir, ec.Name = cfg.Dir, cfg.Name
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = cfg.Name + "=" + pu.String()
	ec.LogLevel = "warn"
	ec.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	}
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(timeout):
		e.Close()
		return nil, fmt.Errorf("%w within %v (see %s/etcd.log)", ErrNotReady, timeout, cfg.Dir)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Embedded{e: e, endpoint: cu.String()}, nil
}

// Endpoints returns the client endpoints of the member.
func (m *Embedded) Endpoints() []string { return []string{m.endpoint} }

// Close stops the member.
func (m *Embedded) Close() { m.e.Close() }
