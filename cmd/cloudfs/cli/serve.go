package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cloudfs/cmd/cloudfs/daemon"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type serveOptions struct {
	g               *globalOptions
	store           string
	storeSize       string
	segmentSize     string
	listen          string
	logLevel        string
	logFormat       string
	shutdownTimeout time.Duration
	deviceDir       string
	keepDevices     bool
	deviceRecovery  bool
	hostID          string
	etcd            []string
	etcdClientURL   string
	etcdPeerURL     string
	etcdPeers       []string
	advertiseURL    string
	leaseTTL        time.Duration
	ackTimeout      time.Duration
	mount           string
	rereplicate     time.Duration
	acquireOnWrite  bool
	resyncRate      string
}

func (o *serveOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.store, "store", "", "the store's device or file (default <data-dir>/store, created on first start)")
	fs.StringVar(&o.storeSize, "store-size", "", "size of the store file created on first start (default min(8G, half the free space))")
	fs.StringVar(&o.segmentSize, "segment-size", "16M", "segment size of a store created on first start")
	fs.StringVar(&o.listen, "listen", ":8090", "address of the HTTP API and /metrics")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.deviceDir, "device-dir", "/dev/cloudfs", "where the symlinks <volume id> -> /dev/ublkbN go")
	fs.BoolVar(&o.keepDevices, "keep-devices", false,
		"at shutdown, detach the block devices instead of deleting them: their IO waits for the next serve (upgrades)")
	fs.BoolVar(&o.deviceRecovery, "device-recovery", true,
		"when the daemon dies, the kernel holds its block devices' IO for the restarted daemon (ublk user recovery); "+
			"false: the kernel fails the IO and removes the devices (a host whose volumes fail over elsewhere)")
	fs.StringVar(&o.hostID, "host-id", "", "this host's name in the cluster (default: the hostname)")
	fs.StringSliceVar(&o.etcd, "etcd", nil, "client endpoints of an external etcd cluster (default: run an embedded member in <data-dir>/etcd)")
	fs.StringVar(&o.etcdClientURL, "etcd-client-url", "http://127.0.0.1:2379", "where the embedded etcd serves clients")
	fs.StringVar(&o.etcdPeerURL, "etcd-peer-url", "http://127.0.0.1:2380", "where the embedded etcd serves peers")
	fs.StringSliceVar(&o.etcdPeers, "etcd-peers", nil,
		"the members of an embedded etcd cluster of a few hosts, name=http://ip:2380 each (comma-separated or repeated), "+
			"this host's --host-id included; every host gives the same list (default: a member alone)")
	fs.StringVar(&o.advertiseURL, "advertise-url", "", "the API URL other hosts use (default: http://<listen address>, 127.0.0.1 for a wildcard)")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", 10*time.Second, "how long the cluster keeps listing a host that stopped renewing its lease")
	fs.DurationVar(&o.ackTimeout, "ack-timeout", 5*time.Second,
		"how long a write waits for its replicas: then a quorum write fails, a silent sync replica leaves the in-sync set")
	fs.StringVar(&o.mount, "mount", "", "mount the POSIX shim (FUSE) here: <dir>/<id> is a volume's files, <dir>/disks/<id> its whole disk")
	fs.DurationVar(&o.rereplicate, "rereplicate-after", 10*time.Minute,
		"how long a replica's host may be gone before the volume's primary puts the replica on another live host (0: never)")
	fs.BoolVar(&o.acquireOnWrite, "acquire-on-write", true,
		"a write on this host to a volume another host is the primary of (its block device or disk file) first moves "+
			"the primary here, as acquire does (at most once every 10 s a volume); false: the write goes to the primary")
	fs.StringVar(&o.resyncRate, "resync-rate", "0", "cap a replica's catch-up at this many bytes a second (K, M, G suffixes; 0: no cap)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "wait at most this long for requests in flight at shutdown")
}

func newServeCommand(g *globalOptions) *cobra.Command {
	o := &serveOptions{g: g}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run this host's daemon: the store, the HTTP API on :8090 and /metrics",
		Long: `Run this host's daemon until SIGTERM or SIGINT: open the store (with no
--store, the file <data-dir>/store, created and formatted on first start),
serve the HTTP API and Prometheus metrics on --listen, and on shutdown stop
the API, flush and checkpoint the store. The cluster secret is
<data-dir>/secret, created on first start. Logs go to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return o.run(c) },
	}
	o.AddFlags(c.Flags())
	return c
}

func (o *serveOptions) run(c *cobra.Command) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return &exitError{ExitUsage, err}
	}
	if o.keepDevices && !o.deviceRecovery {
		return &exitError{ExitUsage, fmt.Errorf("--keep-devices with --device-recovery=false: %w", daemon.ErrKeepWithoutRecovery)}
	}
	cfg := daemon.Config{DataDir: o.g.dataDir, StorePath: o.store, Listen: o.listen, Logger: log,
		ShutdownTimeout: o.shutdownTimeout, DeviceLinkDir: o.deviceDir, KeepDevices: o.keepDevices, NoDeviceRecovery: !o.deviceRecovery,
		HostID: o.hostID, Etcd: o.etcd, EtcdClientURL: o.etcdClientURL, EtcdPeerURL: o.etcdPeerURL, EtcdPeers: o.etcdPeers,
		AdvertiseURL: o.advertiseURL, LeaseTTL: o.leaseTTL, AckTimeout: o.ackTimeout, Mount: o.mount, RereplicateAfter: o.rereplicate,
		NoAcquireOnWrite: !o.acquireOnWrite}
	if o.resyncRate != "0" {
		if cfg.ResyncRate, err = parseSize(o.resyncRate); err != nil {
			return &exitError{ExitUsage, fmt.Errorf("--resync-rate: %w", err)}
		}
	}
	if o.storeSize != "" {
		if cfg.StoreSize, err = parseSize(o.storeSize); err != nil {
			return &exitError{ExitUsage, err}
		}
	}
	if cfg.SegmentSize, err = parseSize(o.segmentSize); err != nil {
		return &exitError{ExitUsage, err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	version, commit, _ := daemon.BuildInfo()
	log.Info("starting", "version", version, "commit", commit, "data_dir", o.g.dataDir, "pid", os.Getpid())
	return daemon.Run(ctx, cfg)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
