// Package cluster starts a cluster of real `cloudfs serve` processes on one
// machine for multi-host tests: each host in its own network namespace with
// its own address, data directory and store, and a test can stop, kill,
// pause, restart and cut off any of them. It never touches the machine's
// own network beyond one guard route, and no test traffic leaves the
// cluster's addresses.
//
// It is a package of its own, not part of testenv, because it is one
// concept with its own types (Config, Cluster, Host) and its own
// dependencies (the API client of replicator, iproute2, iptables), which
// the ublk tests and the VM runner, testenv's other users, do not need.
// The rules of testenv hold: only _test.go files and bench import it.
//
// # Usage
//
//	//go:build e2e
//
//	func TestReplicaCatchesUp(t *testing.T) {
//		testenv.RequireRoot(t) // without root, New falls back to loopback: no Cut
//		c := cluster.New(t, cluster.Config{Hosts: 3, Binary: testenv.CloudfsBinary(t)})
//		a, b := c.Host(0), c.Host(1)
//		id, err := a.CLI("newdisk", "1", "--size", "64M") // the CLI inside a's namespace
//		...
//		err = a.Client().WriteAt(ctx, id, data, 0) // from the test process
//		c.RequireCut(t)
//		err = b.Cut()                       // b loses every link but loopback
//		_, err = b.ClientFrom(a).Heads(ctx) // what a sees of b: times out
//		err = b.Heal()
//		err = b.Kill() // SIGKILL; b.Start() restarts it on the same store
//	}
//
// New waits until every host serves and registers the cleanup; every other
// call is bounded by Config.Timeout (one minute by default). Nothing needs
// closing.
//
// # Network
//
// A cluster with id X (6 random hex digits) and subnet 10.77.n.0/24 (n
// random, 1 to 254) is:
//
//	namespace  interfaces          what
//	cfs-X-sw   br0, ports p0..pc   the switch: a Linux bridge
//	cfs-X-0    eth0 10.77.n.1/24   host 0: cloudfs serve --listen 10.77.n.1:8090
//	cfs-X-1    eth0 10.77.n.2/24   host 1: cloudfs serve --listen 10.77.n.2:8090
//	...
//	cfs-X-c    eth0 10.77.n.254/24 the client: where the test process dials from
//	(root)     none added          guard route: unreachable 10.77.n.0/24 proto 77
//
// Each eth0 is a veth whose peer, p<i> or pc, is a port of br0. Host
// addresses are .<i+1>, so at most 200 hosts.
//
// Every veth pair is created directly in its two namespaces, so the root
// namespace gets no interface. The namespaces have loopback up, IPv6 off
// (the cut rules are IPv4) and no default route: a daemon cannot reach
// anything but its cluster. n is chosen to overlap no address or route of
// the root namespace; the guard route reserves it among concurrent
// clusters (of parallel test packages too) and makes a mistaken dial from
// the test process, say with http.DefaultClient, fail at once with "no
// route to host" instead of leaving the machine by its default route.
// Host i's namespace is cfs-X-<i>; each namespace has its own loopback, so
// every host's embedded etcd keeps its default 127.0.0.1:2379 and :2380.
// Every host gets --host-id host<i> (namespaces share the hostname, the
// default id) when the binary knows the flag.
//
// # Reaching the hosts
//
// The test process stays in the root namespace and reaches hosts through
// clients that open their sockets inside a namespace (setns on a locked OS
// thread, for the dial only):
//
//   - Host.Client, Cluster.HTTPClient: from the client namespace, a machine
//     on the switch that is no host. A cut host is out of its reach.
//   - Host.ClientFrom(from), from.HTTPClient: from host from's namespace,
//     what from sees of the host.
//   - Host.CLI, Host.Command: the cloudfs CLI run with `ip netns exec`
//     inside the host's namespace against its own address (pass --server to
//     ask another host from there); Host.Exec runs any program there. A
//     CLI on a cut host still reaches its own daemon.
//
// These clients dial IP literals only. Never give a host's URL to a client
// of your own: it would dial from the root namespace and hit the guard.
//
// # Faults
//
// Stop sends SIGTERM and waits, Kill SIGKILL, Pause SIGSTOP (the kernel
// still accepts connections, requests hang), Resume SIGCONT; Start
// restarts on the same data directory. Cut adds iptables DROP rules in the
// host's namespace, in a chain CFS-CUT that INPUT and OUTPUT jump to for
// all but lo, so the host is cut off both ways and still reaches itself;
// CutFrom(other) drops one link, HealFrom(other) restores it, Heal removes
// every rule. DROP, not REJECT: peers see a pulled cable, with timeouts.
// The clients' idle connections are closed after every state change.
//
// # Clean-up
//
// The cleanup kills every daemon and every process left in the
// namespaces, deletes the namespaces (their veths and bridge go with
// them), the guard route and the lock file, also when the test fails or
// panics; on failure it logs every host's output. Each cluster holds a
// flock on /run/cfs-testenv/X.lock while it lives. If a test binary dies
// before its cleanups (SIGKILL, go test -timeout), its daemons die with it
// (Pdeathsig), and the next New removes the namespaces and the guard route
// of every cluster whose lock is no longer held; live clusters of other
// test processes are left alone.
//
// # Without namespaces
//
// When namespaces are impossible (not root, or no ip), or Config.Loopback
// asks for it, host i listens on 127.77.n.<i+1>:8090 (all of 127.0.0.0/8
// is loopback on Linux), with n chosen where port 8090 is free, and its
// embedded etcd on the same address (ports 2379, 2380) when the binary has
// those flags. Everything works but Cut, CutFrom, Heal and HealFrom, which
// return ErrCutUnsupported; tests that cut call Cluster.RequireCut, which
// skips.
//
// # Needs
//
// Root, a kernel with network namespaces, veth, bridge and netfilter
// (iptables' nft or legacy backend), and the Debian packages iproute2 (ip)
// and iptables (for Cut only; without it RequireCut skips). The binary is
// a static cloudfs (CGO_ENABLED=0 go build ./cmd/cloudfs), passed as
// CLOUDFS_BIN to testenv.CloudfsBinary; make test-e2e sets it. The tests
// that use a cluster are built with the e2e tag and must not call
// testenv.RequireUblk, so that make test-e2e runs them on the host, not in
// the VM.
package cluster
