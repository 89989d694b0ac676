package main_test

// End-to-end tests of the cloudfs binary: they start real `cloudfs serve`
// processes on file stores and drive them with the CLI, Go's HTTP client and
// curl, as a user would.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloudfs/replicator"
)

// binary is the cloudfs binary under test: $CLOUDFS_BIN, or built once.
var binary string

func TestMain(m *testing.M) {
	code := func() int {
		if binary = os.Getenv("CLOUDFS_BIN"); binary != "" {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "cloudfs-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "cloudfs")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// daemon is one running `cloudfs serve`.
type daemon struct {
	t       *testing.T
	dataDir string
	args    []string
	cmd     *exec.Cmd
	url     string
	logs    *syncBuffer
	exited  chan error
	// etcdArgs give its embedded etcd free ports of 127.0.0.1
	etcdArgs []string
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingRE = regexp.MustCompile(`msg=serving addr=(\S+)`)

// startDaemon runs cloudfs serve with a data directory and extra flags, on a
// free port of 127.0.0.1, and waits until it serves.
func startDaemon(t *testing.T, dataDir string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, dataDir: dataDir, args: args}
	d.start()
	t.Cleanup(func() {
		_ = d.stop(syscall.SIGKILL) // a killed daemon's exit status is an error
		if t.Failed() {
			t.Logf("daemon %s log:\n%s", dataDir, d.logs.String())
		}
	})
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	pr, pw := io.Pipe()
	d.logs = &syncBuffer{}
	if d.etcdArgs == nil { // the same ports across restarts: the member's data says where it was
		d.etcdArgs = []string{"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(d.t)),
			"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(d.t))}
	}
	args := append([]string{"serve", "--data-dir", d.dataDir, "--listen", "127.0.0.1:0", "--log-level", "debug"}, d.etcdArgs...)
	args = append(args, d.args...)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Stderr = io.MultiWriter(pw, d.logs)
	d.cmd.Stdout = d.logs
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait(); pw.Close() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr) // keep draining so the daemon never blocks on stderr
	}()
	select {
	case a := <-addr:
		d.url = "http://" + a
	case err := <-d.exited:
		d.t.Fatalf("cloudfs serve exited at start: %v\n%s", err, d.logs.String())
	case <-time.After(time.Minute):
		d.t.Fatalf("cloudfs serve did not serve within a minute\n%s", d.logs.String())
	}
}

// stop sends sig and waits for the process to exit.
func (d *daemon) stop(sig syscall.Signal) error {
	if d.cmd.ProcessState != nil {
		return nil
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Errorf("signal %v: %v", sig, err)
	}
	select {
	case err := <-d.exited:
		return err
	case <-time.After(time.Minute):
		_ = d.cmd.Process.Kill() // best effort: the test fails anyway
		d.t.Errorf("cloudfs serve did not stop within a minute of %v", sig)
		return <-d.exited
	}
}

func (d *daemon) client() *replicator.Client {
	secret, err := replicator.LoadSecret(filepath.Join(d.dataDir, "secret"))
	if err != nil {
		d.t.Fatal(err)
	}
	return &replicator.Client{URL: d.url, Secret: secret}
}

func (d *daemon) secret() string { return d.client().Secret }

// cli runs a cloudfs verb against d and returns stdout; it fails the test
// unless the exit code is want.
func (d *daemon) cli(want int, stdin io.Reader, args ...string) string {
	d.t.Helper()
	out, code := run(d.t, stdin, append([]string{"--server", d.url, "--data-dir", d.dataDir}, args...)...)
	if code != want {
		d.t.Fatalf("cloudfs %s: exit %d, want %d; output:\n%s", strings.Join(args, " "), code, want, out)
	}
	return strings.TrimSpace(out)
}

// run runs the binary and returns its stdout (stderr too on failure) and
// exit code.
func run(t *testing.T, stdin io.Reader, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("cloudfs %v: %v", args, err)
	}
	if code != 0 {
		return stdout.String() + stderr.String(), code
	}
	return stdout.String(), code
}

func curl(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	out, err := exec.Command("curl", append([]string{"-sS"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	return string(out)
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestWalkthrough is README.md's walk-through: nuke a store, serve it,
// newdisk, write through the API with curl, heads, branch, stream to a
// second host and apply there, compare heads.
func TestWalkthrough(t *testing.T) {
	dir := t.TempDir()
	storeA := filepath.Join(dir, "a.store")
	if out, code := run(t, nil, "nuke", "--size", "256M", "--segment-size", "4M", storeA); code != 0 {
		t.Fatalf("nuke: %d %s", code, out)
	}
	a := startDaemon(t, filepath.Join(dir, "a"), "--store", storeA)
	b := startDaemon(t, filepath.Join(dir, "b"), "--store-size", "256M", "--segment-size", "4M")
	id := a.cli(0, nil, "newdisk", "1", "--size", "64M")
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(id) {
		t.Fatalf("newdisk printed %q, want a 40-hex id", id)
	}
	data := randBytes(rand.New(rand.NewPCG(1, 1)), 1<<20)
	blk := filepath.Join(dir, "blk")
	if err := os.WriteFile(blk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", "Authorization: Bearer "+a.secret(),
		"-H", "Content-Range: bytes 0-1048575/*", "--data-binary", "@"+blk, a.url+"/v1/volumes/"+id+"/blocks")
	if code != "204" {
		t.Fatalf("curl PUT = %s, want 204", code)
	}
	got := curl(t, "-H", "Authorization: Bearer "+a.secret(), "-H", "Range: bytes=4096-8191", a.url+"/v1/volumes/"+id+"/blocks")
	if got != string(data[4096:8192]) {
		t.Errorf("curl GET range returned %d bytes, not the data written", len(got))
	}
	heads := curl(t, a.url+"/heads")
	version := strings.TrimSpace(strings.SplitN(heads, ":", 2)[1])
	if heads != a.cli(0, nil, "heads")+"\n" {
		t.Errorf("curl /heads %q != cloudfs heads", heads)
	}
	branch := a.cli(0, nil, "branch", version)
	info := a.cli(0, nil, "info", branch)
	if !strings.Contains(info, "parent:   "+version) || !strings.Contains(info, "role:     primary") {
		t.Errorf("info of the branch:\n%s", info)
	}
	stream := a.cli(0, nil, "stream", id)
	out := b.cli(0, strings.NewReader(stream), "apply")
	if !strings.Contains(out, id+":"+version) || !strings.Contains(out, "2 entries applied") {
		t.Errorf("apply printed %q", out)
	}
	if hb := b.cli(0, nil, "heads"); hb != strings.TrimSpace(heads) {
		t.Errorf("heads on b %q, on a %q", hb, heads)
	}
	// the replica's data is the primary's
	rb := make([]byte, len(data))
	if err := b.client().ReadAt(ctx(t), id, rb, 0); err != nil || !bytes.Equal(rb, data) {
		t.Errorf("read on b: %v, equal %v", err, bytes.Equal(rb, data))
	}
	// an incremental stream from b's version
	more := randBytes(rand.New(rand.NewPCG(2, 2)), 8192)
	if err := a.client().WriteAt(ctx(t), id, more, 1<<20); err != nil {
		t.Fatal(err)
	}
	delta := a.cli(0, nil, "stream", id, "--from", version)
	if out := b.cli(0, strings.NewReader(delta), "apply", "--json"); !strings.Contains(out, `"entries": 1`) {
		t.Errorf("incremental apply: %s", out)
	}
	if ha, hb := a.cli(0, nil, "heads"), b.cli(0, nil, "heads"); !strings.Contains(ha, hb) {
		t.Errorf("after the delta: heads on a %q, on b %q", ha, hb)
	}
	// each daemon runs its own embedded etcd, in which it is the one live host
	if hosts := a.cli(0, nil, "hosts"); !strings.Contains(hosts, a.url) {
		t.Errorf("hosts on a:\n%s\nwant a line with %s", hosts, a.url)
	}
	a.cli(0, nil, "delete", branch)
	a.cli(4, nil, "info", branch) // exit 4: not found
	// both stop cleanly and their stores check clean
	for _, d := range []*daemon{a, b} {
		if err := d.stop(syscall.SIGTERM); err != nil {
			t.Errorf("serve exit after SIGTERM: %v", err)
		}
	}
	for _, st := range []string{storeA, filepath.Join(dir, "b", "store")} {
		if out, code := run(t, nil, "check", st); code != 0 {
			t.Errorf("check %s: %d\n%s", st, code, out)
		}
	}
}

// TestStoreLock: a second serve of the same store, a check or a nuke of a
// served store are refused, and the store is unharmed.
func TestStoreLock(t *testing.T) {
	dir := t.TempDir()
	a := startDaemon(t, dir, "--store-size", "128M", "--segment-size", "4M")
	id := a.cli(0, nil, "newdisk", "--size", "1M")
	store := filepath.Join(dir, "store")
	out, code := run(t, nil, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(out, "in use") {
		t.Errorf("second serve: %d %q, want an in-use refusal", code, out)
	}
	if out, code := run(t, nil, "check", store); code != 1 || !strings.Contains(out, "in use") {
		t.Errorf("check of a served store: %d %q", code, out)
	}
	if out, code := run(t, nil, "nuke", "--force", store); code != 1 || !strings.Contains(out, "in use") {
		t.Errorf("nuke of a served store: %d %q", code, out)
	}
	if h := a.cli(0, nil, "heads"); !strings.HasPrefix(h, id+":") {
		t.Errorf("heads after the refusals: %q", h)
	}
}

// TestKillDuringWrites kills the daemon with SIGKILL while a client writes
// and flushes; after a restart every write acknowledged before the last
// completed flush reads back, and the store checks clean.
func TestKillDuringWrites(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "--store-size", "256M", "--segment-size", "4M")
	id := d.cli(0, nil, "newdisk", "--size", "64M")
	cl := d.client()
	const blocks = 4096 // 16 MiB of 4 KiB blocks, each written once
	rng := rand.New(rand.NewPCG(7, 7))
	data := make([][]byte, blocks)
	var mu sync.Mutex
	acked, durable := 0, 0 // blocks acknowledged; blocks covered by a completed flush
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; i < blocks; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data[i] = randBytes(rng, 4096)
			if err := cl.WriteAt(context.Background(), id, data[i], int64(i)*4096); err != nil {
				return
			}
			mu.Lock()
			acked = i + 1
			mu.Unlock()
			if i%16 == 15 {
				n := i + 1
				if err := cl.Flush(context.Background(), id); err != nil {
					return
				}
				mu.Lock()
				durable = n
				mu.Unlock()
			}
		}
	}()
	// kill once some flushes went through, bounded in time
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := durable
		mu.Unlock()
		if n >= 256 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = d.stop(syscall.SIGKILL) // the exit status of a killed process is an error
	close(stop)
	<-writerDone
	mu.Lock()
	t.Logf("killed with %d writes acknowledged, %d flushed", acked, durable)
	n := durable
	mu.Unlock()
	if n == 0 {
		t.Fatal("no flush completed before the kill")
	}
	d.start()
	if hosts := d.cli(0, nil, "hosts", "--json"); !strings.Contains(hosts, d.url) {
		t.Errorf("after kill -9 and restart the host is not listed at its new address: %s", hosts)
	}
	cl = d.client()
	got := make([]byte, 4096)
	for i := 0; i < n; i++ {
		if err := cl.ReadAt(ctx(t), id, got, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[i]) {
			t.Fatalf("block %d of %d flushed writes does not read back after kill -9 and restart", i, n)
		}
	}
	if err := d.stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve exit: %v", err)
	}
	if out, code := run(t, nil, "check", filepath.Join(dir, "store")); code != 0 {
		t.Errorf("check after kill and restart: %d\n%s", code, out)
	}
}

// TestBadRequests: a wrong secret, malformed ranges, a huge body and a
// stream with a flipped byte get the right 4xx; the store is unchanged and
// checks clean.
func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "--store-size", "256M", "--segment-size", "4M")
	id := d.cli(0, nil, "newdisk", "--size", "64M")
	cl := d.client()
	if err := cl.WriteAt(ctx(t), id, make([]byte, 8192), 0); err != nil {
		t.Fatal(err)
	}
	heads := d.cli(0, nil, "heads")
	stream := []byte(d.cli(0, nil, "stream", id))
	put := func(path string, body io.Reader, hdr ...string) int {
		req, _ := http.NewRequestWithContext(ctx(t), "PUT", d.url+path, body)
		req.Header.Set("Authorization", "Bearer "+d.secret())
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	blocks := "/v1/volumes/" + id + "/blocks"
	for _, tc := range []struct {
		name string
		code int
		got  func() int
	}{
		{"wrong secret (curl)", 401, func() int {
			var c int
			_, _ = fmt.Sscan(curl(t, "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", "Authorization: Bearer nope", d.url+"/v1/volumes/"+id), &c) // a non-number leaves 0, which fails the check
			return c
		}},
		{"no secret", 401, func() int {
			resp, err := http.Post(d.url+"/v1/volumes?size=4096", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}},
		{"exclusive end", 400, func() int { return put(blocks, bytes.NewReader(make([]byte, 512)), "Content-Range", "bytes 0-512/*") }},
		{"no range", 400, func() int { return put(blocks, bytes.NewReader(make([]byte, 512))) }},
		{"huge body", 413, func() int {
			return put(blocks, io.LimitReader(zeros{}, 128<<20), "Content-Range", fmt.Sprintf("bytes 0-%d/*", 128<<20-1))
		}},
		{"flipped byte", 422, func() int {
			bad := bytes.Clone(stream)
			bad[len(bad)-1000] ^= 0x40
			return put("/v1/log", bytes.NewReader(bad))
		}},
		{"truncated stream", 422, func() int { return put("/v1/log", bytes.NewReader(stream[:len(stream)-10])) }},
	} {
		if got := tc.got(); got != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.code)
		}
	}
	if h := d.cli(0, nil, "heads"); h != heads {
		t.Errorf("heads changed by bad requests: %q, was %q", h, heads)
	}
	d.cli(2, nil, "newdisk", "x")                                             // usage
	d.cli(2, nil, "info", "nothex")                                           // a 400 is a usage error
	d.cli(4, nil, "info", strings.Repeat("ab", 20))                           // not found
	run(t, nil, "--server", "http://127.0.0.1:1", "--data-dir", dir, "heads") // unreachable: below
	if _, code := run(t, nil, "--server", "http://127.0.0.1:1", "--data-dir", dir, "heads"); code != 5 {
		t.Errorf("heads with no daemon: exit %d, want 5", code)
	}
	if err := d.stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve exit: %v", err)
	}
	if out, code := run(t, nil, "check", filepath.Join(dir, "store")); code != 0 {
		t.Errorf("check: %d\n%s", code, out)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestMetricsDocumented scrapes a running daemon: every cloudfs_ family it
// exports is listed in docs/METRICS.md.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Skipf("docs/METRICS.md not found (not run from the source tree): %v", err)
	}
	d := startDaemon(t, t.TempDir(), "--store-size", "128M", "--segment-size", "4M")
	id := d.cli(0, nil, "newdisk", "--size", "1M")
	d.cli(0, nil, "info", id)
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		name, ok := strings.CutPrefix(sc.Text(), "# TYPE ")
		if !ok || !strings.HasPrefix(name, "cloudfs_") {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		n++
		if !bytes.Contains(doc, []byte("`"+name+"`")) && !bytes.Contains(doc, []byte("`"+name+"{")) {
			t.Errorf("metric %s is not in docs/METRICS.md", name)
		}
	}
	if n < 20 {
		t.Errorf("only %d cloudfs_ metric families scraped", n)
	}
}
