//go:build e2e

package cluster_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cloudfs/testenv"
	"cloudfs/testenv/cluster"
)

// short bounds the requests that must fail (to a cut or paused host) and
// the wait for a cut to show; long bounds those that must succeed.
const (
	short = time.Second
	long  = time.Minute
)

// requireNamespaces skips unless New will use namespaces: root and ip.
func requireNamespaces(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip (Debian package iproute2)")
	}
}

// TestCluster starts three namespaced hosts, puts them through every state
// change, and checks that nothing is left afterwards.
func TestCluster(t *testing.T) {
	requireNamespaces(t)
	bin := testenv.CloudfsBinary(t)
	linksBefore := rootLinks(t)
	var id, root, subnet string
	t.Run("3-hosts", func(t *testing.T) {
		start := time.Now()
		c := cluster.New(t, cluster.Config{Hosts: 3, Binary: bin})
		t.Logf("3 hosts serving after %v, subnet %v, namespaces cfs-%s-*", time.Since(start).Round(time.Millisecond), c.Subnet(), c.ID())
		if !c.Namespaced() {
			t.Fatal("root and ip, but the cluster fell back to loopback")
		}
		id, root, subnet = c.ID(), filepath.Dir(c.Host(0).DataDir()), c.Subnet().String()
		t.Run("reach", func(t *testing.T) { testReach(t, c) })
		t.Run("isolated", func(t *testing.T) { testIsolated(t, c) })
		t.Run("stream-apply", func(t *testing.T) { testStreamApply(t, c) })
		t.Run("load", func(t *testing.T) { testLoad(t, c) })
		t.Run("cut-heal", func(t *testing.T) { testCutHeal(t, c) })
		t.Run("cut-from", func(t *testing.T) { testCutFrom(t, c) })
		t.Run("kill-start", func(t *testing.T) { testKillStart(t, c) })
		t.Run("pause-resume", func(t *testing.T) { testPauseResume(t, c) })
		t.Run("stop-start", func(t *testing.T) { testStopStart(t, c) })
	})
	if id == "" {
		return
	}
	checkGone(t, id, root, subnet, linksBefore)
}

// testReach: every host answers /heads from the client namespace and from
// every other host, and its CLI works inside its namespace.
func testReach(t *testing.T, c *cluster.Cluster) {
	for _, h := range c.Hosts() {
		if code := get(t, c.HTTPClient(), h.URL()+"/heads", long); code != http.StatusOK {
			t.Errorf("GET %s/heads from the client namespace: %d", h.URL(), code)
		}
		for _, from := range c.Hosts() {
			ctx, cancel := context.WithTimeout(t.Context(), long)
			if _, err := h.ClientFrom(from).Heads(ctx); err != nil {
				t.Errorf("heads of %s from %s: %v", h.Name(), from.Name(), err)
			}
			cancel()
		}
		if _, err := h.CLI("heads"); err != nil {
			t.Error(err)
		}
	}
}

// testIsolated: the test process's own namespace has no way to the hosts:
// the guard route refuses at once instead of sending the packets out.
func testIsolated(t *testing.T, c *cluster.Cluster) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", c.Host(0).Addr().String(), short)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %v from the root namespace succeeded", c.Host(0).Addr())
	}
	if d := time.Since(start); d > short/2 {
		t.Errorf("dial %v from the root namespace failed after %v (%v), want at once", c.Host(0).Addr(), d, err)
	}
	t.Logf("dial from the root namespace: %v", err)
}

// testStreamApply: a volume made and written on host 0 is streamed by a CLI
// on host 1 from host 0's address and applied to host 1: equal heads.
func testStreamApply(t *testing.T, c *cluster.Cluster) {
	h0, h1 := c.Host(0), c.Host(1)
	id := newVolume(t, h0)
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	if err := h0.Client().WriteAt(ctx, id, make([]byte, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	stream := h1.Command(ctx, "--server", h0.URL(), "stream", id)
	apply := h1.Command(ctx, "apply")
	pr, pw := io.Pipe()
	stream.Stdout, apply.Stdin = pw, pr
	var applyOut, errs strings.Builder
	apply.Stdout, apply.Stderr, stream.Stderr = &applyOut, &errs, &errs
	if err := apply.Start(); err != nil {
		t.Fatal(err)
	}
	serr := stream.Run()
	pw.CloseWithError(serr)
	if aerr := apply.Wait(); serr != nil || aerr != nil {
		t.Fatalf("stream | apply: %v, %v\n%s", serr, aerr, errs.String())
	}
	t.Logf("apply: %s", strings.TrimSpace(applyOut.String()))
	head0 := headOf(t, h0, id)
	if head1 := headOf(t, h1, id); head0 == "" || head1 != head0 {
		t.Errorf("heads of %s: %q on host 0, %q on host 1", id, head0, head1)
	}
}

// testLoad: writers in parallel, from host 1's namespace to host 0 and
// from the client namespace, while host 2 is killed and restarted; every
// write lands. Bounded: loadWriters x loadWrites writes within long.
func testLoad(t *testing.T, c *cluster.Cluster) {
	const loadWriters, loadWrites, size = 8, 50, 4096
	h0 := c.Host(0)
	id := newVolume(t, h0)
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*loadWriters)
	for w := range 2 * loadWriters {
		cl := h0.Client()
		if w%2 == 1 {
			cl = h0.ClientFrom(c.Host(1))
		}
		wg.Go(func() {
			buf := make([]byte, size)
			for i := range loadWrites {
				buf[0], buf[1] = byte(w), byte(i)
				if err := cl.WriteAt(ctx, id, buf, int64(w*loadWrites+i)*size); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		if err := c.Host(2).Kill(); err != nil {
			errs <- err
		} else if err := c.Host(2).Start(); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 2 * loadWriters * loadWrites
	t.Logf("%d writes of %d bytes in %v", n, size, time.Since(start).Round(time.Millisecond))
	got := make([]byte, n*size)
	if err := h0.Client().ReadAt(ctx, id, got, 0); err != nil {
		t.Fatal(err)
	}
	for k := range n {
		if w, i := got[k*size], got[k*size+1]; int(w) != k/loadWrites || int(i) != k%loadWrites {
			t.Fatalf("block %d holds writer %d write %d", k, w, i)
		}
	}
}

// testCutHeal: a cut host is unreachable from the others and the client
// within short, reaches itself, and is back after Heal.
func testCutHeal(t *testing.T, c *cluster.Cluster) {
	c.RequireCut(t)
	h0, h2 := c.Host(0), c.Host(2)
	if err := h2.Cut(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := headsWithin(h2.ClientFrom(h0), short); err == nil {
		t.Error("heads of the cut host 2 from host 0 succeeded")
	}
	if err := headsWithin(h2.Client(), short); err == nil {
		t.Error("heads of the cut host 2 from the client namespace succeeded")
	}
	if err := headsWithin(h0.ClientFrom(h2), short); err == nil {
		t.Error("heads of host 0 from the cut host 2 succeeded")
	}
	if d := time.Since(start); d > 4*short {
		t.Errorf("the failures took %v, want each within %v", d, short)
	}
	if err := headsWithin(h2.ClientFrom(h2), long); err != nil {
		t.Errorf("the cut host 2 cannot reach itself: %v", err)
	}
	if _, err := h2.CLI("heads"); err != nil {
		t.Errorf("CLI on the cut host: %v", err)
	}
	if err := headsWithin(h0.ClientFrom(c.Host(1)), long); err != nil {
		t.Errorf("heads of host 0 from host 1 while 2 is cut: %v", err)
	}
	if err := h2.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h2.ClientFrom(h0), long); err != nil {
		t.Errorf("heads of host 2 from host 0 after Heal: %v", err)
	}
	if err := headsWithin(h0.ClientFrom(h2), long); err != nil {
		t.Errorf("heads of host 0 from host 2 after Heal: %v", err)
	}
}

// testCutFrom: CutFrom cuts one link only.
func testCutFrom(t *testing.T, c *cluster.Cluster) {
	c.RequireCut(t)
	h0, h1, h2 := c.Host(0), c.Host(1), c.Host(2)
	if err := h0.CutFrom(h1); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h0.ClientFrom(h1), short); err == nil {
		t.Error("heads of host 0 from host 1 across the cut link succeeded")
	}
	if err := headsWithin(h1.ClientFrom(h0), short); err == nil {
		t.Error("heads of host 1 from host 0 across the cut link succeeded")
	}
	if err := headsWithin(h0.ClientFrom(h2), long); err != nil {
		t.Errorf("heads of host 0 from host 2: %v", err)
	}
	if err := h0.HealFrom(h1); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h0.ClientFrom(h1), long); err != nil {
		t.Errorf("heads of host 0 from host 1 after HealFrom: %v", err)
	}
}

// testKillStart: a killed host restarts on the same store; its volume is
// still there with the same head.
func testKillStart(t *testing.T, c *cluster.Cluster) {
	h := c.Host(1)
	id := newVolume(t, h)
	before := headOf(t, h, id)
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if h.Running() {
		t.Error("Running after Kill")
	}
	if err := h.Kill(); !errors.Is(err, cluster.ErrNotRunning) {
		t.Errorf("second Kill = %v, want ErrNotRunning", err)
	}
	if err := headsWithin(h.Client(), short); err == nil {
		t.Error("heads of a killed host succeeded")
	}
	start := time.Now()
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart after SIGKILL: %v", time.Since(start).Round(time.Millisecond))
	if err := h.Start(); !errors.Is(err, cluster.ErrRunning) {
		t.Errorf("second Start = %v, want ErrRunning", err)
	}
	if after := headOf(t, h, id); after != before {
		t.Errorf("head of %s after kill and start: %q, before %q", id, after, before)
	}
	if !strings.Contains(h.Logs(), "=== start 2") {
		t.Error("Logs lack the second start")
	}
}

// testPauseResume: requests to a paused host time out; after Resume they
// are answered, also the one that waited.
func testPauseResume(t *testing.T, c *cluster.Cluster) {
	h := c.Host(2)
	if err := h.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h.ClientFrom(c.Host(0)), short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("heads of a paused host: %v, want a timeout", err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- headsWithin(h.Client(), long) }()
	time.Sleep(100 * time.Millisecond) // let the request reach the paused daemon
	if err := h.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Errorf("a request sent while paused, after Resume: %v", err)
	}
	if err := headsWithin(h.Client(), long); err != nil {
		t.Errorf("heads after Resume: %v", err)
	}
}

// testStopStart: SIGTERM stops a host cleanly, also a paused one, and it
// starts again.
func testStopStart(t *testing.T, c *cluster.Cluster) {
	h := c.Host(0)
	if err := h.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	if err := h.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(); err != nil {
		t.Errorf("Stop of a paused host: %v", err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	if err := headsWithin(h.Client(), long); err != nil {
		t.Errorf("heads after stop and start: %v", err)
	}
}

// TestParallelClusters: clusters of concurrent tests get their own names,
// subnets and namespaces.
func TestParallelClusters(t *testing.T) {
	requireNamespaces(t)
	bin := testenv.CloudfsBinary(t)
	var mu sync.Mutex
	ids, subnets := map[string]bool{}, map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for i := range 3 {
			t.Run(string(rune('a'+i)), func(t *testing.T) {
				t.Parallel()
				c := cluster.New(t, cluster.Config{Hosts: 2, Binary: bin})
				mu.Lock()
				if ids[c.ID()] || subnets[c.Subnet().String()] {
					t.Errorf("cluster %s on %v: id or subnet taken by a sibling", c.ID(), c.Subnet())
				}
				ids[c.ID()], subnets[c.Subnet().String()] = true, true
				mu.Unlock()
				if err := headsWithin(c.Host(1).ClientFrom(c.Host(0)), long); err != nil {
					t.Error(err)
				}
			})
		}
	})
	for id := range ids {
		if ns := namespacesOf(t, id); len(ns) > 0 {
			t.Errorf("namespaces left: %v", ns)
		}
	}
}

// childEnv makes a child test process run the child side of a test.
const childEnv = "CLUSTER_TEST_CHILD"

// startChild runs test name in a child test process with childEnv=1 and
// returns it with the id, subnet and root of the cluster it started.
func startChild(t *testing.T, ctx context.Context, name string) (child *exec.Cmd, id, subnet, root string) {
	t.Helper()
	child = exec.CommandContext(ctx, os.Args[0], "-test.run=^"+name+"$", "-test.v")
	child.Env = append(os.Environ(), childEnv+"=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	id, subnet, root = readCluster(t, out)
	return child, id, subnet, root
}

// childCluster is the child side: it starts a one-host cluster and prints
// its id, subnet and data directories' root.
func childCluster(t *testing.T, bin string) *cluster.Cluster {
	c := cluster.New(t, cluster.Config{Hosts: 1, Binary: bin})
	root := filepath.Dir(c.Host(0).DataDir())
	os.Stdout.WriteString("cluster " + c.ID() + " " + c.Subnet().String() + " " + root + "\n")
	return c
}

// TestSweep: the namespaces, route and processes of a cluster whose test
// process died are removed by the next New. The dead owner is a child test
// process killed with SIGKILL while its cluster runs.
func TestSweep(t *testing.T) {
	requireNamespaces(t)
	bin := testenv.CloudfsBinary(t)
	if os.Getenv(childEnv) == "1" {
		childCluster(t, bin)
		time.Sleep(long) // until the parent kills it
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	child, id, subnet, _ := startChild(t, ctx, "TestSweep")
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait() // killed
	// Pdeathsig kills the dead child's daemon; the namespaces stay until a
	// sweep.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pids := strings.TrimSpace(ipOut(t, "netns", "pids", "cfs-"+id+"-0"))
		if pids == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the dead child's daemon (pid %s) still runs after 10s", pids)
			break
		}
	}
	if len(namespacesOf(t, id)) == 0 {
		t.Fatalf("the killed child's cluster %s left no namespace to sweep", id)
	}
	c := cluster.New(t, cluster.Config{Hosts: 1, Binary: bin})
	if ns := namespacesOf(t, id); len(ns) > 0 {
		t.Errorf("after New: namespaces of the dead cluster %s left: %v", id, ns)
	}
	if out := ipOut(t, "-4", "route", "show", "table", "all", "proto", "77"); strings.Contains(out, subnet+" ") {
		t.Errorf("guard route %s of the dead cluster left:\n%s", subnet, out)
	}
	if _, err := os.Stat("/run/cfs-testenv/" + id + ".lock"); err == nil {
		t.Errorf("lock file of the dead cluster %s left", id)
	}
	if err := headsWithin(c.Host(0).Client(), long); err != nil {
		t.Error(err)
	}
}

// TestPanicCleanup: a test that panics still removes its cluster.
func TestPanicCleanup(t *testing.T) {
	requireNamespaces(t)
	bin := testenv.CloudfsBinary(t)
	if os.Getenv(childEnv) == "1" {
		childCluster(t, bin)
		panic("the child panics with a cluster running")
	}
	ctx, cancel := context.WithTimeout(t.Context(), long)
	defer cancel()
	child, id, subnet, root := startChild(t, ctx, "TestPanicCleanup")
	if err := child.Wait(); err == nil {
		t.Error("the panicking child passed")
	}
	checkGone(t, id, root, subnet, "")
}

// readCluster reads "cluster <id> <subnet> <root>" from the child's output.
func readCluster(t *testing.T, r io.Reader) (id, subnet, root string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^cluster ([0-9a-f]{6}) (\S+) (\S+)$`)
	var buf []byte
	b := make([]byte, 4096)
	for {
		n, err := r.Read(b)
		buf = append(buf, b[:n]...)
		if m := re.FindSubmatch(buf); m != nil {
			go func() { _, _ = io.Copy(io.Discard, r) }()
			return string(m[1]), string(m[2]), string(m[3])
		}
		if err != nil {
			t.Fatalf("child: %v\n%s", err, buf)
		}
	}
}

// newVolume creates a 64 MiB volume on h with the CLI and returns its id.
func newVolume(t *testing.T, h *cluster.Host) string {
	t.Helper()
	id, err := h.CLI("newdisk", "1", "--size", "64M")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(id) {
		t.Fatalf("newdisk printed %q, want a 40-hex id", id)
	}
	return id
}

// headOf returns the version of volume id in h's heads, or "".
func headOf(t *testing.T, h *cluster.Host, id string) string {
	t.Helper()
	out, err := h.CLI("heads")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), id+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// get returns the status of GET url, or 0 on error.
func get(t *testing.T, cl *http.Client, url string, d time.Duration) int {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Logf("GET %s: %v", url, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkGone checks that cluster id left no namespace, guard route, lock
// file, process whose command line holds root, or (unless linksBefore is
// "") change in the root namespace's links.
func checkGone(t *testing.T, id, root, subnet, linksBefore string) {
	t.Helper()
	if ns := namespacesOf(t, id); len(ns) > 0 {
		t.Errorf("namespaces left: %v", ns)
	}
	if after := rootLinks(t); linksBefore != "" && after != linksBefore {
		t.Errorf("links of the root namespace changed:\nbefore:\n%s\nafter:\n%s", linksBefore, after)
	}
	if out := ipOut(t, "-4", "route", "show", "table", "all", "proto", "77"); strings.Contains(out, subnet) {
		t.Errorf("guard route of %s left:\n%s", subnet, out)
	}
	if _, err := os.Stat("/run/cfs-testenv/" + id + ".lock"); err == nil {
		t.Errorf("lock file of %s left", id)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), root) {
			t.Errorf("process left: %s: %q", p, b)
		}
	}
}

// namespacesOf lists the namespaces of cluster id.
func namespacesOf(t *testing.T, id string) []string {
	t.Helper()
	var ns []string
	for line := range strings.Lines(ipOut(t, "netns", "list")) {
		if strings.HasPrefix(line, "cfs-"+id+"-") {
			ns = append(ns, strings.Fields(line)[0])
		}
	}
	return ns
}

// rootLinks lists the names of the root namespace's links.
func rootLinks(t *testing.T) string {
	t.Helper()
	var names []string
	for line := range strings.Lines(ipOut(t, "-o", "link", "show")) {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return strings.Join(names, " ")
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		t.Fatalf("ip %v: %v", args, err)
	}
	return string(out)
}
