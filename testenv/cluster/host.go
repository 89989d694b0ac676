package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloudfs/replicator"
)

// Host is one cloudfs host of a cluster: a data directory with its store,
// an address, and at most one running `cloudfs serve`. Its methods are safe
// for concurrent use; those that change the daemon's state (Start, Stop,
// Kill, Pause, Resume) run one at a time.
type Host struct {
	c       *Cluster
	index   int
	ns      string // network namespace, "" in the loopback fallback
	addr    netip.AddrPort
	dataDir string
	logs    logBuffer

	mu     sync.Mutex // serializes state changes
	proc   *process   // the last daemon started, nil before the first
	starts int
	paused bool

	cutMu sync.Mutex // serializes iptables changes
}

// process is one run of the daemon.
type process struct {
	pid  int
	done chan struct{} // closed when it has exited and err is set
	err  error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Cluster returns the host's cluster.
func (h *Host) Cluster() *Cluster { return h.c }

// Index returns the host's index in the cluster, from 0.
func (h *Host) Index() int { return h.index }

// Name returns the host's network namespace (cfs-<id>-<index>), or
// "host<index>" in the loopback fallback.
func (h *Host) Name() string {
	if h.ns == "" {
		return "host" + strconv.Itoa(h.index)
	}
	return h.ns
}

// Addr returns the address the daemon listens on: 10.77.n.<index+1>:8090,
// or 127.77.n.<index+1>:8090 in the loopback fallback.
func (h *Host) Addr() netip.AddrPort { return h.addr }

// URL returns the daemon's API, "http://" + Addr().
func (h *Host) URL() string { return "http://" + h.addr.String() }

// DataDir returns the host's data directory: the cluster secret (secret),
// the store (store), the device links (dev/). It survives restarts.
func (h *Host) DataDir() string { return h.dataDir }

// Logs returns everything the host's daemons wrote to stdout and stderr,
// every start opening with a "=== start N" line.
func (h *Host) Logs() string { return h.logs.String() }

// servingRE matches the line the daemon logs once it serves.
var servingRE = regexp.MustCompile(`msg=serving addr=(\S+)`)

// Start starts the daemon on the host's data directory and waits, at most
// Config.Timeout, until it logs "msg=serving". It runs
//
//	cloudfs serve --data-dir DataDir() --listen Addr() --store-size S
//		--segment-size G --device-dir DataDir()/dev --log-level L
//		[--host-id host<index>] [fallback: --etcd-client-url, --etcd-peer-url]
//		Config.Args(h)...
//
// inside the host's namespace. It returns ErrRunning if a daemon runs.
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc != nil && !h.proc.exited() {
		return ErrRunning
	}
	cfg := h.c.cfg
	args := []string{"serve", "--data-dir", h.dataDir, "--listen", h.addr.String(),
		"--store-size", cfg.StoreSize, "--segment-size", cfg.SegmentSize,
		"--device-dir", filepath.Join(h.dataDir, "dev"), "--log-level", cfg.LogLevel}
	args = append(args, h.defaultArgs()...)
	if cfg.Args != nil {
		args = append(args, cfg.Args(h)...)
	}
	h.starts++
	fmt.Fprintf(&h.logs, "=== start %d: %s %s\n", h.starts, cfg.Binary, strings.Join(args, " "))
	// No context: the daemon outlives this call; Stop, Kill and the cleanup
	// end it.
	cmd := h.c.command(context.Background(), h.ns, cfg.Binary, args...)
	w := &lineWriter{buf: &h.logs, match: servingRE, matched: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &h.logs, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %d: %w", h.index, err)
	}
	p := &process{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	h.proc, h.paused = p, false
	h.c.dropIdle()
	select {
	case <-w.matched:
		return nil
	case <-p.done:
		return fmt.Errorf("host %d: cloudfs serve exited at start: %w\n%s", h.index, p.err, lastLines(h.Logs(), 20))
	case <-time.After(cfg.Timeout):
		h.signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(cfg.Timeout): // Running and Start tell
		}
		return fmt.Errorf("host %d: cloudfs serve did not serve within %v\n%s", h.index, cfg.Timeout, lastLines(h.Logs(), 20))
	}
}

// Stop sends SIGTERM (and SIGCONT, should the daemon be paused) and waits
// at most Config.Timeout for the daemon to exit, then kills it. It returns
// the daemon's exit error, if any, or ErrNotRunning.
func (h *Host) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.running()
	if err != nil {
		return err
	}
	h.signal(syscall.SIGTERM)
	if h.paused {
		h.signal(syscall.SIGCONT) // a stopped process acts on SIGTERM only once continued
	}
	defer h.c.dropIdle()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("host %d: cloudfs serve: %w", h.index, p.err)
		}
		return nil
	case <-time.After(h.c.cfg.Timeout):
		h.signal(syscall.SIGKILL)
		return fmt.Errorf("host %d: cloudfs serve did not stop within %v of SIGTERM; killed", h.index, h.c.cfg.Timeout)
	}
}

// Kill sends SIGKILL and waits at most Config.Timeout for the daemon to
// exit. It returns ErrNotRunning if no daemon runs.
func (h *Host) Kill() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.running()
	if err != nil {
		return err
	}
	h.signal(syscall.SIGKILL)
	defer h.c.dropIdle()
	select {
	case <-p.done:
		return nil
	case <-time.After(h.c.cfg.Timeout):
		return fmt.Errorf("host %d: cloudfs serve (pid %d) did not exit within %v of SIGKILL", h.index, p.pid, h.c.cfg.Timeout)
	}
}

// kill is Kill for the cleanup: it ignores a host that does not run.
func (h *Host) kill() {
	if err := h.Kill(); err != nil && !errors.Is(err, ErrNotRunning) {
		h.c.t.Errorf("cluster: cleanup: %v", err)
	}
}

// Pause stops the daemon with SIGSTOP and waits, at most Config.Timeout,
// until the kernel reports it stopped: from then on its requests hang (the
// kernel still accepts connections). It returns ErrNotRunning if no daemon
// runs.
func (h *Host) Pause() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.running()
	if err != nil {
		return err
	}
	h.signal(syscall.SIGSTOP)
	h.paused = true
	deadline := time.Now().Add(h.c.cfg.Timeout)
	for time.Now().Before(deadline) {
		if st, err := procState(p.pid); err != nil || st == 'T' {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("host %d: cloudfs serve (pid %d) not stopped within %v of SIGSTOP", h.index, p.pid, h.c.cfg.Timeout)
}

// Resume continues a paused daemon with SIGCONT. It returns ErrNotRunning if
// no daemon runs.
func (h *Host) Resume() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := h.running(); err != nil {
		return err
	}
	h.signal(syscall.SIGCONT)
	h.paused = false
	return nil
}

// Running reports whether a daemon runs (paused or not).
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.running()
	return err == nil
}

// running returns the running daemon or ErrNotRunning. h.mu is held.
func (h *Host) running() (*process, error) {
	if h.proc == nil || h.proc.exited() {
		return nil, fmt.Errorf("host %d: %w", h.index, ErrNotRunning)
	}
	return h.proc, nil
}

// signal sends sig to the daemon; an exited one is ignored (Wait has not
// reaped it yet or it is gone). h.mu is held.
func (h *Host) signal(sig syscall.Signal) {
	if h.proc != nil && !h.proc.exited() {
		_ = syscall.Kill(h.proc.pid, sig) // it may have exited since
	}
}

// procState returns the state letter of /proc/<pid>/stat: R, S, D, T, Z...
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses, the state
	// follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return s[i+2], nil
}

// HTTPClient returns a client whose connections start in the host's
// namespace, as a program on the host would dial: its own address goes over
// loopback, the others' over the switch. Dial addresses must be IP
// literals. In the loopback fallback it dials from the test process.
func (h *Host) HTTPClient() *http.Client { return h.c.httpClient(h.ns) }

// Client returns an API client of the host that dials from the cluster's
// client namespace (Cluster.HTTPClient): the view of a machine outside the
// cluster, cut off from a cut host.
func (h *Host) Client() *replicator.Client {
	return &replicator.Client{URL: h.URL(), Secret: h.c.secret, HTTP: h.c.HTTPClient()}
}

// ClientFrom returns an API client of h that dials from host from's
// namespace: what from sees of h.
func (h *Host) ClientFrom(from *Host) *replicator.Client {
	return &replicator.Client{URL: h.URL(), Secret: h.c.secret, HTTP: from.HTTPClient()}
}
