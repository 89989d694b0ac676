//go:build e2e

package replicator_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloudfs/testenv"
	"cloudfs/testenv/cluster"
)

// etcdOnHost0 makes host 0's embedded etcd the cluster's: it listens on
// host 0's address, and the other hosts use it as an external etcd.
func etcdOnHost0(h *cluster.Host) []string {
	ip0 := h.Cluster().Host(0).Addr().Addr().String()
	if h.Index() == 0 {
		return []string{"--etcd-client-url", "http://" + ip0 + ":2379", "--etcd-peer-url", "http://" + ip0 + ":2380"}
	}
	return []string{"--etcd", "http://" + ip0 + ":2379"}
}

// TestReplication: a 3-host cluster in network namespaces; newdisk 3 on
// host 0 places the volume on all three; writes through the primary reach
// every replica (same head); a replica killed while writes go on catches up
// after its restart, by delta.
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
	vi, err := p.Client().CreateReplicated(ctx, 64<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(vi.Hosts) != 3 || vi.Hosts[0] != "host0" {
		t.Fatalf("newdisk 3 placed the volume on %v, want host0 first of 3", vi.Hosts)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	write := func(n int) {
		t.Helper()
		for range n {
			b := make([]byte, 4096)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if err := p.Client().WriteAt(ctx, vi.ID, b, int64(rng.IntN(16<<8))*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
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
	if err != nil || in.Mode != "async" || in.Primary != "host0" || len(in.Replicas) != 3 {
		t.Fatalf("info on the primary: %+v, %v", in, err)
	}
	for _, r := range in.Replicas {
		if r.Err != "" || r.LagEntries != 0 || r.Version != in.Version {
			t.Errorf("replica %+v after convergence, want %s with no lag", r, in.Version)
		}
	}
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
	// a replica down while writes go on catches up after its restart
	r := c.Host(2)
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	write(100)
	if in, err := p.Client().Info(ctx, vi.ID); err != nil || len(in.Replicas) != 3 || in.Replicas[2].Err == "" {
		t.Errorf("info with host2 down: %+v, %v; want host2 reported unreachable", in.Replicas, err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	sameHeads("after the restart of host2", c.Host(1), r)
	// it caught up by delta: its follower started from the lsn it had
	if m := regexp.MustCompile(`msg=following .*from_lsn=([0-9]+)`).FindAllStringSubmatch(r.Logs(), -1); len(m) < 2 ||
		m[len(m)-1][1] == "0" {
		t.Errorf("host2's follower after the restart did not start from its own version: %v", m)
	}
}
