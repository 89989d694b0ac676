//go:build e2e

package replicator_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloudfs/replicator"
	"cloudfs/testenv"
	"cloudfs/testenv/cluster"
)

// etcdOnHost0 makes host 0's embedded etcd the cluster's: it listens on
// host 0's address, and the other hosts use it as an external etcd.
func etcdOnHost0(h *cluster.Host) []string {
	ip0 := h.Cluster().Host(0).Addr().Addr().String()
	ack := []string{"--ack-timeout", "2s"}
	if h.Index() == 0 {
		return append(ack, "--etcd-client-url", "http://"+ip0+":2379", "--etcd-peer-url", "http://"+ip0+":2380")
	}
	return append(ack, "--etcd", "http://"+ip0+":2379")
}

// TestReplication: a 3-host cluster in network namespaces; newdisk 3 on
// host 0 places the volume on all three (quorum mode); writes through the
// primary reach every replica (same head), so do writes through a replica
// (redirected to the primary); a replica killed while writes go on catches
// up after its restart, by delta; with one replica cut off writes go on,
// with both they fail clearly, and no acknowledged write is ever lost.
func TestReplication(t *testing.T) {
	testenv.RequireRoot(t)
	c := cluster.New(t, cluster.Config{Hosts: 3, Binary: testenv.CloudfsBinary(t), Args: etcdOnHost0})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := c.Host(0)
	// every host has joined the one etcd
	deadline := time.Now().Add(time.Minute)
	for {
		hosts, err := p.Client().Hosts(ctx)
		if err == nil && len(hosts) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts on host 0: %v, %v; want 3", hosts, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	vi, err := p.Client().CreateReplicated(ctx, 64<<20, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(vi.Hosts) != 3 || vi.Hosts[0] != "host0" {
		t.Fatalf("newdisk 3 placed the volume on %v, want host0 first of 3", vi.Hosts)
	}
	m := newMirror(vi.ID, 1, 1)
	writeVia := func(h *cluster.Host, n int) (failed int) {
		t.Helper()
		for range n {
			if err := m.write(ctx, h); err != nil {
				if !replicator.IsStatus(err, 503) {
					t.Fatalf("write through %s: %v", h.Name(), err)
				}
				failed++
			}
		}
		return failed
	}
	write := func(n int) {
		t.Helper()
		if f := writeVia(p, n); f > 0 {
			t.Fatalf("%d of %d writes failed with every replica up", f, n)
		}
	}
	// every acknowledged write reads back from h
	verify := func(what string, h *cluster.Host) { t.Helper(); m.verify(ctx, t, what, h) }
	sameHeads := func(what string, hosts ...*cluster.Host) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			want, err := p.Client().Info(ctx, vi.ID)
			if err != nil {
				t.Fatal(err)
			}
			ok := true
			var got []string
			for _, h := range hosts {
				in, err := h.Client().Info(ctx, vi.ID)
				got = append(got, fmt.Sprintf("%s: %s lsn %d %v", h.Name(), in.Version, in.LSN, err))
				ok = ok && err == nil && in.Version == want.Version
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: replicas did not reach %s (lsn %d) in 2 minutes: %s", what, want.Version, want.LSN,
					strings.Join(got, "; "))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	write(50)
	sameHeads("live", c.Host(1), c.Host(2))
	in, err := p.Client().Info(ctx, vi.ID)
	if err != nil || in.Mode != "quorum" || in.Primary != "host0" || len(in.Replicas) != 3 {
		t.Fatalf("info on the primary: %+v, %v", in, err)
	}
	for _, r := range in.Replicas {
		if r.Err != "" || r.LagEntries != 0 || r.Version != in.Version || r.LagBytes != 0 || !r.InSync {
			t.Errorf("replica %+v after convergence, want %s with no lag, in sync", r, in.Version)
		}
	}
	// writes through a replica go to the primary and reach every host
	if f := writeVia(c.Host(1), 20); f > 0 {
		t.Fatalf("%d writes through host1 failed", f)
	}
	sameHeads("writes through host1", c.Host(1), c.Host(2))
	verify("writes through host1", c.Host(2))
	for _, h := range []*cluster.Host{c.Host(1), c.Host(2)} {
		if in, _ := h.Client().Info(ctx, vi.ID); in.Role != "replica" {
			t.Errorf("%s role %q, want replica", h.Name(), in.Role)
		}
	}
	// the data reads back on a replica
	want := make([]byte, 1<<20)
	got := make([]byte, 1<<20)
	if err := p.Client().ReadAt(ctx, vi.ID, want, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Host(1).Client().ReadAt(ctx, vi.ID, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("replica reads %v, equal %v", err, bytes.Equal(got, want))
	}
	// a replica killed under load catches up after its restart, by delta
	var mu sync.Mutex // writeVia's state, shared with the load
	var written int64 // data acknowledged since the kill
	stop := make(chan struct{})
	loadDone := make(chan int)
	go func() {
		failed := 0
		for {
			select {
			case <-stop:
				loadDone <- failed
				return
			default:
			}
			mu.Lock()
			failed += writeVia(p, 1)
			written += 4096
			mu.Unlock()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	r := c.Host(2)
	mu.Lock()
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	written = 0
	mu.Unlock()
	time.Sleep(time.Second)
	mu.Lock()
	down := written // acknowledged while host2 was surely down
	mu.Unlock()
	if in, err := p.Client().Info(ctx, vi.ID); err != nil || len(in.Replicas) != 3 || in.Replicas[2].Err == "" {
		t.Errorf("info with host2 down: %+v, %v; want host2 reported unreachable", in.Replicas, err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if failed := <-loadDone; failed > 0 {
		t.Errorf("%d writes failed while one replica of three was down", failed)
	}
	mu.Lock()
	total := written // acknowledged from the kill to the end of the load
	mu.Unlock()
	sameHeads("after the restart of host2", c.Host(1), r)
	// it caught up by delta: its stream began at the lsn it had, and what
	// the primary had to send was what it missed (at least the writes while
	// it was down, at most those since the kill), not the volume
	opens := regexp.MustCompile(`msg="stream open".*from_lsn=([0-9]+) head_lsn=([0-9]+) lag_bytes=(-?[0-9]+)`).
		FindAllStringSubmatch(r.Logs(), -1)
	if len(opens) < 2 || opens[len(opens)-1][1] == "0" {
		t.Fatalf("host2's catch-up after the restart: %v; want a stream from its own lsn", opens)
	}
	lag, _ := strconv.ParseInt(opens[len(opens)-1][3], 10, 64)
	const behind = 64 * 4096 // quorum lets host2 trail a little before the kill
	if lag < down || lag > total+behind {
		t.Errorf("host2 caught up %d bytes; it missed between %d and %d (+%d it may have trailed by)", lag, down,
			total, behind)
	}
	t.Logf("host2 caught up %d bytes by delta (%d written while it was down, %d from the kill to the end of the load)",
		lag, down, total)
	verify("after the catch-up", r)

	// quorum: with one replica cut off, writes go on
	if err := c.Host(2).Cut(); err != nil {
		t.Fatal(err)
	}
	write(30)
	// with both cut off, every write fails (503, no quorum), none hangs
	if err := c.Host(1).Cut(); err != nil {
		t.Fatal(err)
	}
	if f := writeVia(p, 5); f != 5 {
		t.Errorf("%d of 5 writes failed with both replicas cut off, want all", f)
	}
	if err := c.Host(1).Heal(); err != nil {
		t.Fatal(err)
	}
	if err := c.Host(2).Heal(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Minute)
	for writeVia(p, 1) > 0 { // the replicas reconnect
		if time.Now().After(deadline) {
			t.Fatal("writes still fail a minute after the replicas' network healed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	write(20)
	sameHeads("after the heal", c.Host(1), c.Host(2))
	for _, h := range c.Hosts() {
		verify("after the heal", h)
	}
}

// embeddedMembers makes every host run an embedded etcd member of one
// 3-member cluster (--etcd-peers), as a few hosts do without an external
// etcd.
func embeddedMembers(h *cluster.Host) []string {
	var peers []string
	for _, o := range h.Cluster().Hosts() {
		peers = append(peers, fmt.Sprintf("host%d=http://%s:2380", o.Index(), o.Addr().Addr()))
	}
	ip := h.Addr().Addr().String()
	return []string{"--ack-timeout", "2s", "--etcd-client-url", "http://" + ip + ":2379",
		"--etcd-peer-url", "http://" + ip + ":2380", "--etcd-peers", strings.Join(peers, ",")}
}

// TestEmbeddedMembers: three hosts, each running a member of one embedded
// etcd cluster. A volume on all three replicates; with one host (a member
// and a replica) killed, the cluster keeps its catalog (2 of 3 members) and
// the volume keeps taking writes (2 of 3 hosts); the host restarted rejoins
// both and catches up.
func TestEmbeddedMembers(t *testing.T) {
	testenv.RequireRoot(t)
	c := cluster.New(t, cluster.Config{Hosts: 3, Binary: testenv.CloudfsBinary(t), Args: embeddedMembers})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitHosts := func(h *cluster.Host, n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			hosts, err := h.Client().Hosts(ctx)
			if err == nil && len(hosts) == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("hosts on %s: %v, %v; want %d", h.Name(), hosts, err, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, h := range c.Hosts() {
		waitHosts(h, 3)
	}
	vi, err := c.Host(0).Client().CreateReplicated(ctx, 16<<20, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Repeat([]byte{7}, 4096)
	for i := range 20 {
		if err := c.Host(0).Client().WriteAt(ctx, vi.ID, b, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Host(2).Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := c.Host(0).Client().WriteAt(ctx, vi.ID, b, int64(20+i)*4096); err != nil {
			t.Fatalf("write with host2 down: %v", err)
		}
	}
	// the catalog still takes changes: a new volume on the two hosts left
	vi2, err := c.Host(1).Client().CreateReplicated(ctx, 16<<20, 2, "")
	if err != nil {
		t.Fatalf("newdisk 2 with one of three members down: %v", err)
	}
	if len(vi2.Hosts) != 2 {
		t.Errorf("the second volume is on %v", vi2.Hosts)
	}
	if err := c.Host(2).Start(); err != nil {
		t.Fatal(err)
	}
	waitHosts(c.Host(0), 3)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		want, err1 := c.Host(0).Client().Info(ctx, vi.ID)
		got, err2 := c.Host(2).Client().LocalInfo(ctx, vi.ID)
		if err1 == nil && err2 == nil && got.Version == want.Version {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host2 did not catch up: %+v %v / %+v %v", got, err2, want, err1)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
