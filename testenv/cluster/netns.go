package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where ip netns keeps its named namespaces (bind mounts of
// /proc/<pid>/ns/net).
const netnsDir = "/run/netns"

// prefix starts every name this package gives a namespace, so leftovers of
// a crashed run can be found. A cluster's namespaces are prefix + id + "-"
// + (host index | switchSuffix | clientSuffix).
const prefix = "cfs-"

const (
	switchSuffix = "sw" // the namespace that holds the bridge
	clientSuffix = "c"  // the namespace the test process dials from
)

// nsNameRE matches the namespaces of this package: id, then which.
var nsNameRE = regexp.MustCompile(`^` + prefix + `([0-9a-f]{6})-(sw|c|[0-9]+)$`)

// Addresses. Namespaced hosts live in netRange: cluster n (chosen at
// random per cluster) is 10.77.<n>.0/24, host i is .<i+1>, the client
// namespace .254. Each cluster's bridge is its own broadcast domain with no
// route out, so two clusters may even share a subnet; n differs only to
// keep logs unambiguous and must not overlap a network the root namespace
// uses. The loopback fallback puts host i on 127.77.<n>.<i+1>, which Linux
// routes to lo (all of 127.0.0.0/8 is loopback).
var netRange = netip.MustParsePrefix("10.77.0.0/16")

// clientHost is the last octet of the client namespace's address.
const clientHost = 254

// maxHosts keeps host addresses (.1 to .maxHosts) below the client's.
const maxHosts = 200

// apiPort is the port every daemon listens on: each namespace has its own
// ports, so all use the daemon's default.
const apiPort = 8090

// ip runs ip(8) with args and returns its error with its stderr.
func ip(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "ip", args...)
}

// run runs a short command and returns its stdout, or an error holding its
// stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// namespacesPossible reports why namespaces cannot be used, or nil.
func namespacesPossible() error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("no ip (Debian package iproute2): %w", err)
	}
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		return fmt.Errorf("no network namespaces: %w", err)
	}
	return nil
}

// listNamespaces returns the names ip netns knows.
func listNamespaces(ctx context.Context) ([]string, error) {
	out, err := ip(ctx, "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(out) {
		// Lines read "name" or "name (id: 3)".
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// addNode creates the namespace ns with lo up and IPv6 off, and links it to
// the bridge of the switch namespace sw through a veth pair: eth0 with addr
// in ns, port in sw.
func addNode(ctx context.Context, ns, sw, port string, addr netip.Prefix) error {
	if _, err := ip(ctx, "netns", "add", ns); err != nil {
		return err
	}
	// IPv6 off: the cut rules are IPv4 only, and a link-local address
	// would be a way around them.
	if err := disableIPv6(ns); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", sw},
		{"-n", sw, "link", "set", port, "master", "br0", "up"},
		{"-n", ns, "addr", "add", addr.String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// addSwitch creates the namespace sw holding the bridge br0, up.
func addSwitch(ctx context.Context, sw string) error {
	if _, err := ip(ctx, "netns", "add", sw); err != nil {
		return err
	}
	if err := disableIPv6(sw); err != nil {
		return err
	}
	for _, s := range [][]string{
		{"-n", sw, "link", "set", "lo", "up"},
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
	} {
		if _, err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// disableIPv6 turns IPv6 off in ns for existing and new interfaces. A kernel
// without IPv6 has nothing to turn off.
func disableIPv6(ns string) error {
	return inNetns(ns, func() error {
		for _, which := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv6/conf/" + which + "/disable_ipv6"
			err := os.WriteFile(p, []byte("1\n"), 0o644)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("netns %s: %w", ns, err)
			}
		}
		return nil
	})
}

// deleteNamespace kills every process left in ns and deletes it; its veth
// ends and bridge go with it.
func deleteNamespace(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(err, os.ErrNotExist) {
		return nil // gone already: another sweeper, or its owner's cleanup
	}
	killNamespacePids(ctx, ns)
	_, err := ip(ctx, "netns", "del", ns)
	return err
}

// killNamespacePids sends SIGKILL to every process in ns and waits, bounded
// by ctx, until none is left.
func killNamespacePids(ctx context.Context, ns string) {
	for ctx.Err() == nil {
		out, err := ip(ctx, "netns", "pids", ns)
		if err != nil || strings.TrimSpace(out) == "" {
			return
		}
		for _, f := range strings.Fields(out) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				_ = unix.Kill(pid, unix.SIGKILL) // it may have exited already
			}
		}
		time.Sleep(20 * time.Millisecond) // let the kernel reap them
	}
}

// inNetns runs f on an OS thread that has entered the network namespace ns
// (a name under netnsDir) and waits for it. Sockets f opens, and /proc/sys/net
// files it opens, belong to ns, and stay there afterwards. f must not start
// goroutines that open sockets: they run on other threads.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in its own namespace:
		// a goroutine that exits locked takes its thread with it, so a thread
		// that cannot go back is never reused.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back from %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// nsDialer dials TCP from inside a network namespace, or from the test
// process's own namespace when ns is "".
type nsDialer struct {
	ns      string
	timeout time.Duration
}

// DialContext dials addr, which must be an IP literal and port: a name could
// resolve to several addresses, which the net package dials from other
// goroutines, and so from other namespaces.
func (d nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("cluster: dial %s: want an IP address, not a name", addr)
	}
	dialer := net.Dialer{Timeout: d.timeout}
	if d.ns == "" {
		return dialer.DialContext(ctx, network, addr)
	}
	var conn net.Conn
	err = inNetns(d.ns, func() error {
		var err error
		conn, err = dialer.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// guardProto tags the guard routes (ip route ... proto 77) so that the
// leftovers of crashed runs can be told from the machine's own routes.
const guardProto = "77"

// claimSubnet picks 10.77.<n>.0/24, starting from n = random, that overlaps
// no address or route of the test process's namespace, records it in the
// cluster's lock file, and adds its guard route there: "unreachable
// 10.77.n.0/24 proto 77". The guard keeps a mistaken dial from the test
// process (an http.Client that does not dial through a namespace) from
// following the machine's default route out of the machine; it fails at
// once with "no route to host" instead. Adding the route is also what makes
// n this cluster's: another cluster's guard overlaps it.
func claimSubnet(ctx context.Context, random uint32, lock *os.File) (netip.Prefix, error) {
	for try := range uint32(254) {
		used, err := rootPrefixes(ctx)
		if err != nil {
			return netip.Prefix{}, err
		}
		n := 1 + (random+try)%254
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(n), 0}), 24)
		if overlapsAny(p, used) {
			continue
		}
		if err := recordSubnet(lock, p); err != nil {
			return netip.Prefix{}, err
		}
		if _, err := ip(ctx, "route", "add", "unreachable", p.String(), "proto", guardProto); err != nil {
			if strings.Contains(err.Error(), "File exists") {
				continue // another cluster took it since rootPrefixes
			}
			return netip.Prefix{}, err
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("every /24 of %s overlaps a network of the root namespace", netRange)
}

// deleteGuard removes the guard route of subnet p.
func deleteGuard(ctx context.Context, p netip.Prefix) error {
	_, err := ip(ctx, "route", "del", "unreachable", p.String(), "proto", guardProto)
	return err
}

// rootPrefixes returns the IPv4 addresses and routes of the test process's
// namespace.
func rootPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := ip(ctx, args...)
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil {
				prefixes = append(prefixes, p)
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				prefixes = append(prefixes, netip.PrefixFrom(a, 32))
			}
		}
	}
	return prefixes, nil
}

// overlapsAny reports whether p overlaps one of ps, ignoring default routes.
func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if q.Bits() > 0 && p.Overlaps(q) {
			return true
		}
	}
	return false
}

// hostAddr returns the address of the host with last octet i in subnet.
func hostAddr(subnet netip.Prefix, i int) netip.Addr {
	b := subnet.Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b)
}
