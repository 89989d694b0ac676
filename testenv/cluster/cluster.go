package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Config describes a cluster. Hosts and Binary are required; the rest has
// defaults.
type Config struct {
	// Hosts is the number of hosts, 1 to 200.
	Hosts int
	// Binary is the cloudfs binary every host runs, e.g.
	// testenv.CloudfsBinary(t).
	Binary string
	// StoreSize and SegmentSize are the serve flags --store-size and
	// --segment-size of the store each host creates on its first start.
	// Defaults: "256M" and "4M".
	StoreSize, SegmentSize string
	// LogLevel is serve's --log-level; default "info". Logs must stay in
	// the text format: Start reads "msg=serving" from them.
	LogLevel string
	// Args, if not nil, returns extra serve flags for h; it is called at
	// every start, so flags may change between restarts. Every address is
	// known before the first start, so it may list peers:
	//
	//	Args: func(h *cluster.Host) []string {
	//		ip := h.Addr().Addr().String()
	//		return []string{"--etcd-peer-url", "http://" + ip + ":2380"}
	//	}
	//
	// Its flags come after the cluster's own (see Host.Start), so they win.
	Args func(h *Host) []string
	// Timeout bounds every wait of the cluster: a start until the daemon
	// serves, a stop, a kill, a CLI command, a dial. Default one minute.
	Timeout time.Duration
	// Loopback forces the fallback without namespaces (127.77.n.x
	// addresses, no Cut), which New also takes when namespaces are
	// impossible.
	Loopback bool
}

// Cluster is a set of cloudfs hosts on one machine. Its methods are safe for
// concurrent use.
type Cluster struct {
	t      testing.TB
	cfg    Config
	id     string       // 6 hex digits, in every name; "" in loopback mode
	lock   *os.File     // the flocked lock file of id
	subnet netip.Prefix // 10.77.n.0/24, or 127.77.n.0/24 in loopback mode
	root   string       // holds the hosts' data directories
	secret string
	canCut error           // nil if Cut works, else why not
	flags  map[string]bool // the flags the binary's serve knows
	hosts  []*Host

	mu      sync.Mutex
	clients map[string]*http.Client // by source namespace ("" is the test process's own)
}

// New starts a cluster of cfg.Hosts hosts and waits until each serves. It
// registers a cleanup that kills every daemon and removes every namespace,
// also when the test fails or panics, and first removes the leftovers of
// crashed runs. It fails the test if the cluster cannot start.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, cfg: cfg, clients: map[string]*http.Client{}}
	c.secret = newSecret()
	// TempDir before Cleanup: cleanups run last first, so the daemons are
	// dead before their directories go.
	c.root = t.TempDir()
	t.Cleanup(c.cleanup)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	var err error
	if c.flags, err = serveFlags(ctx, cfg.Binary); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	why := namespacesPossible()
	if cfg.Loopback {
		why = errors.New("Config.Loopback")
	}
	if why == nil {
		err = c.setUpNamespaces()
	} else {
		t.Logf("cluster: no network namespaces (%v): hosts on 127.77.n.x, Cut unsupported", why)
		c.canCut = fmt.Errorf("%w: no namespaces: %w", ErrCutUnsupported, why)
		err = c.setUpLoopback()
	}
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.hosts))
	for i, h := range c.hosts {
		wg.Go(func() { errs[i] = h.Start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return c
}

func (cfg *Config) validate() error {
	if cfg.Hosts < 1 || cfg.Hosts > maxHosts {
		return fmt.Errorf("cluster: Config.Hosts = %d, want 1 to %d", cfg.Hosts, maxHosts)
	}
	if cfg.Binary == "" {
		return errors.New("cluster: Config.Binary is empty (use testenv.CloudfsBinary)")
	}
	if cfg.StoreSize == "" {
		cfg.StoreSize = "256M"
	}
	if cfg.SegmentSize == "" {
		cfg.SegmentSize = "4M"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	return nil
}

// newSecret returns a random cluster secret: 256 bits as hex, the form
// cloudfs itself generates.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// setUpNamespaces sweeps leftovers, claims an id, and builds the switch,
// the client namespace and one namespace per host.
func (c *Cluster) setUpNamespaces() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	removed, err := sweep(ctx)
	if len(removed) > 0 {
		c.t.Logf("cluster: removed the leftovers of crashed runs: clusters %v", removed)
	}
	if err != nil {
		c.t.Logf("cluster: sweeping leftovers: %v", err) // a race with another sweeper; not fatal
	}
	id, lock, err := claimID()
	if err != nil {
		return err
	}
	c.id, c.lock = id, lock
	random, _ := strconv.ParseUint(id, 16, 32)
	if c.subnet, err = claimSubnet(ctx, uint32(random), c.lock); err != nil {
		return err
	}
	c.canCut = cutPossible()
	sw := c.nsName(switchSuffix)
	if err := addSwitch(ctx, sw); err != nil {
		return err
	}
	client := netip.PrefixFrom(hostAddr(c.subnet, clientHost), 24)
	if err := addNode(ctx, c.nsName(clientSuffix), sw, "pc", client); err != nil {
		return err
	}
	for i := range c.cfg.Hosts {
		ns := c.nsName(strconv.Itoa(i))
		addr := netip.PrefixFrom(hostAddr(c.subnet, i+1), 24)
		if err := addNode(ctx, ns, sw, "p"+strconv.Itoa(i), addr); err != nil {
			return err
		}
		if err := c.addHost(i, ns, addr.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// setUpLoopback places the hosts on 127.77.n.x for an n whose port apiPort
// is free on every host address.
func (c *Cluster) setUpLoopback() error {
	for range 50 { // each try collides only with a live cluster on the same n
		n := 1 + mrand.N(254)
		c.subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 77, byte(n), 0}), 24)
		if c.loopbackFree() {
			for i := range c.cfg.Hosts {
				if err := c.addHost(i, "", hostAddr(c.subnet, i+1)); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return errors.New("no 127.77.n.0/24 with port 8090 free on every host address")
}

// loopbackFree reports whether the hosts' addresses in c.subnet are free.
func (c *Cluster) loopbackFree() bool {
	for i := range c.cfg.Hosts {
		l, err := net.Listen("tcp", netip.AddrPortFrom(hostAddr(c.subnet, i+1), apiPort).String())
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// addHost makes host i's data directory with the cluster secret and adds it.
func (c *Cluster) addHost(i int, ns string, addr netip.Addr) error {
	dir := filepath.Join(c.root, fmt.Sprintf("host%d", i))
	if err := os.MkdirAll(filepath.Join(dir, "dev"), 0o755); err != nil {
		return err
	}
	// The same secret on every host, written before the first start, which
	// would otherwise create a different one per host.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(c.secret+"\n"), 0o600); err != nil {
		return err
	}
	h := &Host{c: c, index: i, ns: ns, addr: netip.AddrPortFrom(addr, apiPort), dataDir: dir}
	c.mu.Lock()
	c.hosts = append(c.hosts, h)
	c.mu.Unlock()
	return nil
}

// nsName returns the name of one of the cluster's namespaces.
func (c *Cluster) nsName(which string) string { return prefix + c.id + "-" + which }

// cleanup kills every daemon, removes every namespace and releases the id.
// Errors fail the test; the logs of every host are printed if it failed.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	hosts := c.hosts
	c.mu.Unlock()
	for _, h := range hosts {
		h.kill()
	}
	c.dropIdle()
	if c.t.Failed() {
		for _, h := range hosts {
			c.t.Logf("cluster: logs of host %d (%s):\n%s", h.index, h.Name(), h.Logs())
		}
	}
	if c.id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	names := []string{c.nsName(clientSuffix)}
	for i := range c.cfg.Hosts {
		names = append(names, c.nsName(strconv.Itoa(i)))
	}
	names = append(names, c.nsName(switchSuffix))
	for _, ns := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
			continue // never created
		}
		if err := deleteNamespace(ctx, ns); err != nil {
			c.t.Errorf("cluster: cleanup: %v", err)
		}
	}
	if c.subnet.IsValid() {
		if err := deleteGuard(ctx, c.subnet); err != nil {
			c.t.Errorf("cluster: cleanup: %v", err)
		} else if err := forgetSubnet(c.lock); err != nil {
			c.t.Errorf("cluster: cleanup: %v", err)
		}
	}
	releaseID(c.id, c.lock)
}

// Hosts returns the hosts, in index order.
func (c *Cluster) Hosts() []*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Host(nil), c.hosts...)
}

// URLs returns every host's URL, in index order. The addresses are fixed
// before the first start, so Config.Args may use them (peer lists).
func (c *Cluster) URLs() []string {
	var urls []string
	for _, h := range c.Hosts() {
		urls = append(urls, h.URL())
	}
	return urls
}

// Host returns host i.
func (c *Cluster) Host(i int) *Host { return c.Hosts()[i] }

// ID returns the 6 hex digits in the names of the cluster's namespaces
// (cfs-<id>-<i>, cfs-<id>-sw, cfs-<id>-c), or "" without namespaces.
func (c *Cluster) ID() string { return c.id }

// Namespaced reports whether the hosts run in network namespaces (false in
// the loopback fallback).
func (c *Cluster) Namespaced() bool { return c.id != "" }

// Subnet returns the hosts' network: 10.77.n.0/24, or 127.77.n.0/24 in the
// loopback fallback.
func (c *Cluster) Subnet() netip.Prefix { return c.subnet }

// Secret returns the cluster secret, the content of every host's
// <data dir>/secret.
func (c *Cluster) Secret() string { return c.secret }

// RequireCut skips the test unless the cluster can cut links: it needs
// network namespaces and iptables.
func (c *Cluster) RequireCut(t testing.TB) {
	t.Helper()
	if c.canCut != nil {
		t.Skip(c.canCut)
	}
}

// HTTPClient returns a client whose connections start in the client
// namespace, a machine on the cluster's switch that is none of the hosts:
// a cut host is out of its reach. In the loopback fallback it dials from
// the test process. Dial addresses must be IP literals. Requests have no
// timeout of their own: give them a context.
func (c *Cluster) HTTPClient() *http.Client {
	if c.id == "" {
		return c.httpClient("")
	}
	return c.httpClient(c.nsName(clientSuffix))
}

// httpClient returns the cached client dialing from ns.
func (c *Cluster) httpClient(ns string) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[ns]; ok {
		return cl
	}
	d := nsDialer{ns: ns, timeout: c.cfg.Timeout}
	cl := &http.Client{Transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 16, // load loops reuse connections instead of exhausting ports
	}}
	c.clients[ns] = cl
	return cl
}

// dropIdle closes the idle connections of every client: after a kill, cut
// or heal they would hang or fail the next request.
func (c *Cluster) dropIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.clients {
		cl.CloseIdleConnections()
	}
}

// command returns a command that runs name inside ns, or directly when ns
// is "". The child gets SIGKILL if the test process dies.
func (c *Cluster) command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if ns == "" {
		cmd = exec.CommandContext(ctx, name, args...)
	} else {
		// ip netns exec execs name in place: the pid is name's own, so
		// signals reach it directly.
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	}
	cmd.SysProcAttr = sysProcAttr()
	// No HTTP proxy: a CLI would send its requests for 10.77.n.x to one,
	// which no namespace can reach (and which is no test address).
	cmd.Env = append(os.Environ(), "NO_PROXY=*", "no_proxy=*")
	return cmd
}
