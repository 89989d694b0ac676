package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"cloudfs/posixshim"
	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/device"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

// ErrKeepWithoutRecovery: Config.KeepDevices with NoDeviceRecovery. A
// detached device without user recovery is no use to the next serve: the
// kernel fails its IO and removes it as soon as its daemon stops serving it.
var ErrKeepWithoutRecovery = errors.New("keeping devices across a restart needs device recovery: " +
	"the kernel removes a device without it once its daemon stops serving it")

// Config configures a host daemon.
type Config struct {
	// DataDir holds the cluster secret and, by default, the store file.
	DataDir string
	// StorePath is the store's device or file (default DataDir/store). When
	// it is the default and does not exist, the daemon creates a sparse
	// file of StoreSize bytes and formats it: the embedded default.
	StorePath string
	StoreSize int64 // 0: min(8 GiB, half the free space of DataDir's file system)
	// SegmentSize for a store the daemon formats (0: 16 MiB).
	SegmentSize int64
	Listen      string // HTTP address (":8090")
	// DeviceLinkDir holds the symlink <id> -> /dev/ublkbN of every volume
	// (default /dev/cloudfs).
	DeviceLinkDir string
	// KeepDevices: at shutdown, detach the block devices instead of deleting
	// them; their IO waits until the next serve re-attaches (an upgrade).
	KeepDevices bool
	// NoDeviceRecovery makes the block devices without ublk user recovery:
	// when the daemon dies, the kernel fails their IO and removes them (a
	// file system mounted on one gets EIO) instead of holding the IO until a
	// restarted daemon re-attaches; the restarted daemon makes new devices.
	// For a host whose volumes fail over to other hosts: nothing waits for a
	// daemon that may not come back. Run refuses it with KeepDevices, whose
	// detached devices the kernel would remove at once.
	NoDeviceRecovery bool
	// NoAcquireOnWrite: a write made on this host to a volume another host
	// is the primary of (its block device, its disk file in the POSIX shim)
	// goes to the primary. By default it first moves the primary role here
	// (a hand-over, as cloudfs acquire): the VM using the volume moved here.
	NoAcquireOnWrite bool
	// HostID names this host in the cluster (default: the hostname).
	HostID string
	// Etcd lists the client endpoints of an external etcd cluster; empty
	// runs an embedded member in DataDir/etcd listening on EtcdClientURL and
	// EtcdPeerURL (defaults http://127.0.0.1:2379 and :2380).
	Etcd                       []string
	EtcdClientURL, EtcdPeerURL string
	// EtcdPeers, "name=http://ip:2380" each, makes the embedded member one
	// of a cluster of several: every host lists the same members, itself
	// included (its name is HostID). Read only when the member's directory
	// is new.
	EtcdPeers []string
	// AdvertiseURL is the API address other hosts use (default
	// http://127.0.0.1:<port> for a wildcard or loopback listener).
	AdvertiseURL string
	// LeaseTTL is how long the cluster keeps a silent host listed (10 s).
	LeaseTTL time.Duration
	// AckTimeout bounds a write's wait for its replicas (default 5 s): a
	// quorum write fails after it, a silent sync replica leaves the in-sync
	// set after it.
	AckTimeout time.Duration
	// ResyncRate caps a replica's catch-up in bytes a second (0: no cap).
	ResyncRate int64
	// RereplicateAfter is how long a replica's host may be gone before a
	// volume's primary puts the replica on another host (0: never).
	RereplicateAfter time.Duration
	// Mount, if set, is where the POSIX shim is mounted (FUSE): each volume
	// a directory on first lookup, disks/<id> its whole disk as a file.
	Mount string
	// ShutdownTimeout bounds the wait for HTTP requests in flight at
	// shutdown (default 10 s); followed streams are cut at once.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger // nil: discard
	// Ready, if set, is called with the listener's address once the daemon
	// serves.
	Ready func(addr net.Addr)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Listen == "" {
		c.Listen = ":8090"
	}
	if c.DeviceLinkDir == "" {
		c.DeviceLinkDir = "/dev/cloudfs"
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.HostID == "" {
		c.HostID, _ = os.Hostname()
	}
	if c.EtcdClientURL == "" {
		c.EtcdClientURL = "http://127.0.0.1:2379"
	}
	if c.EtcdPeerURL == "" {
		c.EtcdPeerURL = "http://127.0.0.1:2380"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
}

// Run serves a host until ctx ends, then shuts down cleanly: HTTP first,
// then the store (flush, checkpoint). It returns the first error that
// stopped it.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if cfg.KeepDevices && cfg.NoDeviceRecovery {
		return ErrKeepWithoutRecovery
	}
	log := cfg.Logger
	start := time.Now()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	storePath, err := prepareStore(&cfg)
	if err != nil {
		return err
	}
	unlock, err := Lock(storePath, true)
	if err != nil {
		return err
	}
	defer unlock()
	secret, err := replicator.LoadOrCreateSecret(filepath.Join(cfg.DataDir, "secret"))
	if err != nil {
		return fmt.Errorf("cluster secret: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfoCollector())
	dev, err := device.Open(storePath, device.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	st, err := segment.Open(dev, segment.Options{Logger: log, Metrics: reg})
	if err != nil {
		return fmt.Errorf("open store %s: %w", storePath, err)
	}
	cl, err := startCluster(ctx, cfg)
	if err != nil {
		st.Close()
		return err
	}
	defer cl.close()
	var repl *replication
	acks := replicator.NewAcks(replicator.AcksConfig{Timeout: cfg.AckTimeout, Head: headOf(st), Logger: log, Metrics: reg,
		Confirm: func(base segment.ID) error { return repl.confirm(base) }})
	defer acks.Close()
	rt := newRoutes(secret)
	host := &Host{st: st, devs: startDevices(st, cfg, reg, acks, rt), acks: acks}
	repl = &replication{hc: cl, host: host, self: cfg.HostID, secret: secret, acks: acks, rt: rt, rate: cfg.ResyncRate,
		fmet: replicator.NewFollowMetrics(reg), log: log.With("component", "replication"),
		followers: map[string]*following{}, primaryOf: map[segment.ID]bool{},
		ho: handovers{holds: map[segment.ID]func(){}, acquiring: map[segment.ID]chan struct{}{},
			lastAcquire: map[segment.ID]time.Time{}}, switched: map[string]uint64{}}
	repl.own = newOwnership(repl, cfg.DataDir, cfg.RereplicateAfter, reg)
	host.repl = repl
	if !cfg.NoAcquireOnWrite {
		rt.acquirer.Store(repl)
	}
	replCtx, stopRepl := context.WithCancel(context.Background())
	replDone := make(chan struct{})
	go func() { defer close(replDone); repl.run(replCtx) }()
	api, err := replicator.NewHandler(replicator.Config{Store: host, Secret: secret, Logger: log, Metrics: reg,
		Device: host.Device, Hosts: cl.hosts, Replicate: repl.create, Replication: repl.replication, Acks: acks,
		Route: rt.primary, Orphan: host.orphan(rt), Acquire: repl.acquire, Handover: repl.handover, HandoverDone: repl.handoverDone,
		Force: repl.own.force, Switch: repl.switchTo, Forks: repl.own.forkInfo,
		SetMode: repl.setMode})
	abort := func(err error) error {
		stopRepl()
		<-replDone
		st.Close()
		return err
	}
	if err != nil {
		return abort(err)
	}
	var shim *posixshim.Server
	if cfg.Mount != "" {
		host.shim = &shimSource{h: host, rt: rt, use: map[segment.ID]posixshim.Use{}}
		clearStaleMount(cfg.Mount, log)
		if err := os.MkdirAll(cfg.Mount, 0o755); err != nil {
			return abort(fmt.Errorf("mount point: %w", err))
		}
		if shim, err = posixshim.Mount(cfg.Mount, host.shim, posixshim.Config{Logger: log}); err != nil {
			return abort(fmt.Errorf("mount the POSIX shim on %s: %w", cfg.Mount, err))
		}
		log.Info("POSIX shim mounted", "dir", cfg.Mount)
	}
	serveErr := serveHTTP(ctx, cfg, api, reg, log, start, st, func(addr net.Addr) error {
		return cl.join(ctx, cfg, addr, st)
	})
	if shim != nil {
		if err := shim.Unmount(); err != nil {
			log.Error("POSIX shim unmount failed", "dir", cfg.Mount, "err", err)
		}
	}
	stopRepl()
	<-replDone
	cl.leave()
	if host.devs != nil {
		host.devs.stop()
	}
	if err := st.Close(); err != nil {
		log.Error("store close failed", "err", err)
		return errors.Join(serveErr, err)
	}
	log.Info("stopped", "store", storePath)
	return serveErr
}

// headOf returns a store's function that gives a volume's position.
func headOf(st *segment.Store) func(segment.ID) (segment.Position, error) {
	return func(base segment.ID) (segment.Position, error) {
		v, err := st.Volume(base)
		if err != nil {
			return segment.Position{}, err
		}
		in, err := v.Info()
		return segment.Position{LSN: in.LSN, Version: in.Version}, err
	}
}

// serveHTTP serves the API and /metrics until ctx ends, then shuts the
// server down.
func serveHTTP(ctx context.Context, cfg Config, api http.Handler, reg *prometheus.Registry, log *slog.Logger,
	start time.Time, st *segment.Store, listening func(net.Addr) error) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/", api)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	// Requests' contexts end when shutdown begins, so followed streams end.
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	defer cancelReqs()
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if err := listening(ln.Addr()); err != nil {
		srv.Close()
		return err
	}
	rec := st.Recovery()
	log.Info("serving", "addr", ln.Addr().String(), "volumes", len(st.Heads()),
		"recovered_records", rec.Records, "recovery", rec.Took, "took", time.Since(start))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	cancelReqs()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown cut requests in flight", "err", err)
		srv.Close()
	}
	return nil
}

// prepareStore returns the store's path, creating and formatting the
// embedded default's file on first start.
func prepareStore(cfg *Config) (string, error) {
	if cfg.StorePath != "" {
		return cfg.StorePath, nil
	}
	path := filepath.Join(cfg.DataDir, "store")
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return path, err
	}
	size := cfg.StoreSize
	if size == 0 {
		size = defaultStoreSize(cfg.DataDir)
	}
	cfg.Logger.Info("creating the store", "path", path, "bytes", size)
	if err := CreateStore(path, size, cfg.SegmentSize); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

// CreateStore creates a sparse file of size bytes at path and formats it as
// an empty store.
func CreateStore(path string, size, segmentSize int64) error {
	if err := device.Create(path, size&^(segment.BlockSize-1)); err != nil {
		return err
	}
	dev, err := device.Open(path, device.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	_, err = segment.Format(dev, segment.FormatOptions{SegmentSize: segmentSize})
	return err
}

// defaultStoreSize is the embedded default's store: 8 GiB, or half the free
// space of the data directory's file system if that is less (the file is
// sparse, but a store larger than its file system fails when it fills).
func defaultStoreSize(dir string) int64 {
	const max = 8 << 30
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return max
	}
	free := int64(sfs.Bavail) * sfs.Bsize / 2
	return min(max, free)
}
