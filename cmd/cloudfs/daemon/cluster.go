package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"cloudfs/replicator/cluster"
	"cloudfs/segment"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// hostCluster is the host's link to etcd: the embedded member (unless an
// external cluster is configured), a client, and the host's membership.
type hostCluster struct {
	embedded *cluster.Embedded
	client   *clientv3.Client
	member   *cluster.Membership
	log      *slog.Logger
}

// startCluster starts the embedded etcd member (or reaches the external
// cluster) and connects a client.
func startCluster(ctx context.Context, cfg Config) (*hostCluster, error) {
	hc := &hostCluster{log: cfg.Logger}
	endpoints := cfg.Etcd
	if len(endpoints) == 0 {
		start := time.Now()
		e, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: filepath.Join(cfg.DataDir, "etcd"),
			Name: cfg.HostID, ClientURL: cfg.EtcdClientURL, PeerURL: cfg.EtcdPeerURL})
		if err != nil {
			return nil, err
		}
		hc.embedded, endpoints = e, e.Endpoints()
		cfg.Logger.Info("embedded etcd started", "client_url", cfg.EtcdClientURL, "dir", filepath.Join(cfg.DataDir, "etcd"),
			"took", time.Since(start))
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		hc.close()
		return nil, fmt.Errorf("etcd client of %v: %w", endpoints, err)
	}
	hc.client = c
	return hc, nil
}

// join registers the host under its lease once the API listens at addr.
func (hc *hostCluster) join(ctx context.Context, cfg Config, addr net.Addr, st *segment.Store) error {
	url := cfg.AdvertiseURL
	if url == "" {
		url = advertise(addr)
	}
	sp := st.Space()
	h := cluster.Host{ID: cfg.HostID, URL: url, Store: fmt.Sprintf("%x", st.Superblock().UUID), Joined: time.Now().UTC(),
		FreeBytes: int64(sp.FreeSegments) * sp.SegmentSize}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := cluster.Join(jctx, hc.client, h, cfg.LeaseTTL, cfg.Logger)
	if err != nil {
		return err
	}
	hc.member = m
	hc.log.Info("joined the cluster", "host_id", h.ID, "url", url)
	return nil
}

// advertise makes the API URL of a listener: its own address, or
// 127.0.0.1 for a wildcard one.
func advertise(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

func (hc *hostCluster) hosts(ctx context.Context) ([]cluster.Host, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cluster.Hosts(ctx, hc.client)
}

// leave revokes the host's lease so peers see it go at once.
func (hc *hostCluster) leave() {
	if hc.member == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hc.member.Leave(ctx) // the lease expires anyway
	hc.member = nil
}

func (hc *hostCluster) close() {
	hc.leave()
	if hc.client != nil {
		hc.client.Close()
	}
	if hc.embedded != nil {
		hc.embedded.Close()
	}
}
