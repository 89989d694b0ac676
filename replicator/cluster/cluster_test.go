package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cloudfs/replicator/cluster"

	clientv3 "go.etcd.io/etcd/client/v3"
)

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

// startEtcd starts a member in dir and a client of it; stop (also run at
// cleanup) stops both, once.
func startEtcd(t *testing.T, dir string) (stop func(), c *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: dir, Name: "h1",
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	c, err = clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { c.Close(); e.Close() }) }
	t.Cleanup(stop)
	return stop, c
}

// TestMembership: a host joins, is listed, a second host with the same id
// is refused, Leave removes it at once, and a host that stops renewing its
// lease disappears when the lease expires.
func TestMembership(t *testing.T) {
	_, c := startEtcd(t, filepath.Join(t.TempDir(), "etcd"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := cluster.Join(ctx, c, cluster.Host{ID: "a", URL: "http://10.0.0.1:8090", Store: "s1"}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Join(ctx, c, cluster.Host{ID: "a", Store: "s2"}, 5*time.Second, nil); !errors.Is(err, cluster.ErrHostIDInUse) {
		t.Errorf("second Join of id a with another store = %v, want ErrHostIDInUse", err)
	}
	b, err := cluster.Join(ctx, c, cluster.Host{ID: "b"}, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := cluster.Hosts(ctx, c)
	if err != nil || len(hosts) != 2 || hosts[0].ID != "a" || hosts[0].URL != "http://10.0.0.1:8090" || hosts[1].ID != "b" {
		t.Fatalf("Hosts = %+v, %v", hosts, err)
	}
	// a restart of a after a crash (same store) takes its key over at once
	m.Stop()
	m, err = cluster.Join(ctx, c, cluster.Host{ID: "a", URL: "http://10.0.0.1:8091", Store: "s1"}, 5*time.Second, nil)
	if err != nil {
		t.Fatalf("Join after a crash, same store: %v", err)
	}
	if hosts, _ := cluster.Hosts(ctx, c); len(hosts) != 2 || hosts[0].URL != "http://10.0.0.1:8091" {
		t.Errorf("after the restart of a: %+v", hosts)
	}
	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if hosts, _ := cluster.Hosts(ctx, c); len(hosts) != 1 || hosts[0].ID != "b" {
		t.Errorf("after a leaves: %+v", hosts)
	}
	// b stops renewing without leaving (a crashed host): its lease expires
	b.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		hosts, _ := cluster.Hosts(ctx, c)
		if len(hosts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b still listed 30 s after its 2 s lease stopped being renewed: %+v", hosts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEmbeddedRestart: the embedded member keeps its data across a restart.
func TestEmbeddedRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	stop, c := startEtcd(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	stop()
	_, c2 := startEtcd(t, dir)
	resp, err := c2.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("after restart Get(k) = %v, %v", resp, err)
	}
}
