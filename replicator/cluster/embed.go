package cluster

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// clusterToken is the initial cluster token of every cloudfs etcd cluster.
// etcd mixes it into the cluster and member ids, so that members of two
// clusters bootstrapped from one peer list refuse each other; cloudfs
// clusters are told apart by their peer lists, so one constant does.
const clusterToken = "cloudfs"

// EmbedConfig configures an embedded etcd member.
type EmbedConfig struct {
	Dir  string // its data directory (created if missing)
	Name string // member name, the host id
	// ClientURL and PeerURL are where it listens, e.g.
	// "http://127.0.0.1:2379" and "http://10.0.0.1:2380". The peer URL is
	// also the one the other members reach it at. With Peers set, PeerURL
	// may be empty: it is then Peers[Name].
	ClientURL, PeerURL string
	// Peers is the initial cluster: member name -> peer URL, this member
	// included (ParsePeers reads it from "name=url" flags). Empty means a
	// cluster of this member alone. Peers is read only when Dir holds no
	// member yet; a member with data rejoins the cluster its data records,
	// whatever Peers says.
	Peers map[string]string
	// ReadyTimeout bounds the wait for the member to serve (default 1 min).
	// A member of a new multi-member cluster serves only once a majority
	// of Peers has started.
	ReadyTimeout time.Duration
}

// Embedded is an etcd member running inside this process.
type Embedded struct {
	e        *embed.Etcd
	endpoint string
	close    sync.Once
}

// StartEmbedded starts an etcd member in cfg.Dir and waits until it serves.
// With an empty cfg.Dir it bootstraps a new cluster of cfg.Peers (or of
// itself alone); with the data of a previous run it restarts that member,
// which rejoins its cluster and catches up from the leader. Its logs go to
// cfg.Dir/etcd.log. A config that cannot work fails with ErrInvalidConfig
// before anything starts; a member that does not serve in time with
// ErrNotReady.
func StartEmbedded(ctx context.Context, cfg EmbedConfig) (*Embedded, error) {
	ec, err := cfg.etcdConfig()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	}
	if err := waitReady(ctx, e, cfg); err != nil {
		e.Close()
		return nil, err
	}
	return &Embedded{e: e, endpoint: ec.AdvertiseClientUrls[0].String()}, nil
}

// waitReady waits until e serves, fails or the timeout passes.
func waitReady(ctx context.Context, e *embed.Etcd, cfg EmbedConfig) error {
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("embedded etcd in %s: %w", cfg.Dir, err)
	case <-t.C:
		return fmt.Errorf("%w within %v (see %s/etcd.log)", ErrNotReady, timeout, cfg.Dir)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// etcdConfig validates cfg and translates it to etcd's.
func (cfg EmbedConfig) etcdConfig() (*embed.Config, error) {
	if cfg.Dir == "" || cfg.Name == "" {
		return nil, fmt.Errorf("embedded etcd: dir %q and name %q are both required: %w", cfg.Dir, cfg.Name, ErrInvalidConfig)
	}
	cu, err := parseMemberURL("client url", cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	initial, peer, err := cfg.initialCluster()
	if err != nil {
		return nil, err
	}
	pu, err := parseMemberURL("peer url", peer)
	if err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Dir, ec.Name = cfg.Dir, cfg.Name
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster, ec.InitialClusterToken = initial, clusterToken
	// "new" bootstraps from InitialCluster when Dir is empty; etcd ignores
	// it (and InitialCluster) when Dir holds a member, which restarts.
	ec.ClusterState = embed.ClusterStateFlagNew
	if len(cfg.Peers) > 1 {
		// When the leader's host dies, the members elect a new leader after
		// an election timeout or up to twice that, and the new leader
		// extends every lease by one more: a dead primary's lease, and with
		// it the failover, waits TTL + 2-3 election timeouts. etcd's default
		// (1 s, made for wide networks) made that 5-6 s with a 3 s TTL;
		// hosts of one cluster share a LAN, where a 100 ms heartbeat and a
		// 500 ms election timeout are still generous.
		ec.TickMs, ec.ElectionMs = 100, 500
	}
	ec.LogLevel = "warn"
	ec.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	return ec, nil
}

// initialCluster returns etcd's --initial-cluster for cfg and this
// member's peer URL.
func (cfg EmbedConfig) initialCluster() (initial, peer string, err error) {
	if len(cfg.Peers) == 0 {
		return cfg.Name + "=" + cfg.PeerURL, cfg.PeerURL, nil
	}
	self, ok := cfg.Peers[cfg.Name]
	switch {
	case !ok:
		return "", "", fmt.Errorf("embedded etcd: peers %v lack this member %q: %w", cfg.Peers, cfg.Name, ErrInvalidConfig)
	case cfg.PeerURL != "" && cfg.PeerURL != self:
		return "", "", fmt.Errorf("embedded etcd: peer url %s, but peers give %s for %q: %w", cfg.PeerURL, self, cfg.Name, ErrInvalidConfig)
	}
	names := make([]string, 0, len(cfg.Peers))
	owner := map[string]string{} // peer URL -> member name
	for name, u := range cfg.Peers {
		if _, err := parseMemberURL("peer url of "+name, u); err != nil {
			return "", "", err
		}
		if other, dup := owner[u]; dup {
			return "", "", fmt.Errorf("embedded etcd: members %q and %q share peer url %s: %w", other, name, u, ErrInvalidConfig)
		}
		owner[u] = name
		names = append(names, name+"="+u)
	}
	sort.Strings(names)
	return strings.Join(names, ","), self, nil
}

// ParsePeers reads an initial cluster given as "name=url" items (one per
// flag, or the comma-separated items of etcd's --initial-cluster) into
// EmbedConfig.Peers. A name given twice, an item without "=" or a URL etcd
// would refuse fails with ErrInvalidConfig.
func ParsePeers(items []string) (map[string]string, error) {
	peers := make(map[string]string, len(items))
	for _, item := range items {
		for it := range strings.SplitSeq(item, ",") {
			name, u, ok := strings.Cut(strings.TrimSpace(it), "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("etcd peer %q: not name=url: %w", it, ErrInvalidConfig)
			}
			if _, dup := peers[name]; dup {
				return nil, fmt.Errorf("etcd peer %q: name given twice: %w", name, ErrInvalidConfig)
			}
			if _, err := parseMemberURL("peer url of "+name, u); err != nil {
				return nil, err
			}
			peers[name] = u
		}
	}
	return peers, nil
}

// parseMemberURL parses a URL a member listens at or is reached at:
// http or https, a host and a port, and no path (etcd refuses one).
func parseMemberURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("embedded etcd: %s %q: %w: %w", what, s, ErrInvalidConfig, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("embedded etcd: %s %q: scheme must be http or https: %w", what, s, ErrInvalidConfig)
	case u.Hostname() == "" || u.Port() == "":
		return nil, fmt.Errorf("embedded etcd: %s %q: needs host:port: %w", what, s, ErrInvalidConfig)
	case u.Path != "" || u.RawQuery != "" || u.User != nil:
		return nil, fmt.Errorf("embedded etcd: %s %q: only scheme://host:port: %w", what, s, ErrInvalidConfig)
	}
	return u, nil
}

// Endpoints returns the client endpoints of this member (not of the other
// members: a client of the local member fails when it does).
func (m *Embedded) Endpoints() []string { return []string{m.endpoint} }

// Close stops the member. Its data stays in its directory; StartEmbedded
// with the same config restarts it. Safe to call more than once.
func (m *Embedded) Close() { m.close.Do(m.e.Close) }
