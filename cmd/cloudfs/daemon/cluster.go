package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
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
	cat      *cluster.Catalog // the catalog and the live hosts, followed by watch
	log      *slog.Logger

	mu      sync.Mutex
	member  *cluster.Membership
	leaving bool
	rejoin  sync.WaitGroup
}

// startCluster starts the embedded etcd member (or reaches the external
// cluster) and connects a client.
func startCluster(ctx context.Context, cfg Config) (*hostCluster, error) {
	hc := &hostCluster{log: cfg.Logger}
	endpoints := cfg.Etcd
	if len(endpoints) == 0 {
		start := time.Now()
		ec := cluster.EmbedConfig{Dir: filepath.Join(cfg.DataDir, "etcd"), Name: cfg.HostID, ClientURL: cfg.EtcdClientURL,
			PeerURL: cfg.EtcdPeerURL}
		if len(cfg.EtcdPeers) > 0 {
			peers, err := cluster.ParsePeers(cfg.EtcdPeers)
			if err != nil {
				return nil, err
			}
			// a new cluster of several members serves once a majority has
			// started: the hosts may come up minutes apart
			ec.Peers, ec.PeerURL, ec.ReadyTimeout = peers, "", 10*time.Minute
			cfg.Logger.Info("starting an embedded etcd member; it serves once a majority of its peers runs",
				"peers", cfg.EtcdPeers)
		}
		e, err := cluster.StartEmbedded(ctx, ec)
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
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if hc.cat, err = cluster.NewCatalog(cctx, c, cfg.Logger.With("component", "catalog")); err != nil {
		hc.close()
		return nil, fmt.Errorf("cluster catalog: %w", err)
	}
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
	hc.mu.Lock()
	hc.member = m
	hc.mu.Unlock()
	hc.log.Info("joined the cluster", "host_id", h.ID, "url", url)
	hc.rejoin.Go(func() { hc.keepJoined(m, h, cfg.LeaseTTL) })
	return nil
}

// keepJoined joins again when the membership is lost (etcd was unreachable
// for longer than the lease: a partition), so that the host is listed
// again once etcd is back, and keeps trying until it is or the host leaves.
func (hc *hostCluster) keepJoined(m *cluster.Membership, h cluster.Host, ttl time.Duration) {
	for {
		<-m.Done()
		for {
			hc.mu.Lock()
			leaving := hc.leaving
			hc.mu.Unlock()
			if leaving {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			nm, err := cluster.Join(ctx, hc.client, h, ttl, hc.log)
			cancel()
			if err == nil {
				hc.mu.Lock()
				if hc.leaving {
					hc.mu.Unlock()
					_ = nm.Leave(context.Background())
					return
				}
				hc.member, m = nm, nm
				hc.mu.Unlock()
				hc.log.Info("joined the cluster again after losing the lease", "host_id", h.ID)
				break
			}
			hc.log.Debug("rejoin failed; retrying", "err", err)
			time.Sleep(time.Second)
		}
	}
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
	hc.mu.Lock()
	hc.leaving = true
	m := hc.member
	hc.member = nil
	hc.mu.Unlock()
	if m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.Leave(ctx) // the lease expires anyway
		cancel()
	}
	hc.rejoin.Wait()
}

func (hc *hostCluster) close() {
	hc.leave()
	if hc.cat != nil {
		hc.cat.Close()
	}
	if hc.client != nil {
		hc.client.Close()
	}
	if hc.embedded != nil {
		hc.embedded.Close()
	}
}
