package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cloudfs/replicator/cluster"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestEmbedConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	client := "http://127.0.0.1:1"
	peers := map[string]string{"h1": "http://127.0.0.1:2", "h2": "http://127.0.0.1:3"}
	for _, tc := range []struct {
		name string
		cfg  cluster.EmbedConfig
	}{
		{"no name", cluster.EmbedConfig{Dir: dir, ClientURL: client, PeerURL: "http://127.0.0.1:2"}},
		{"no dir", cluster.EmbedConfig{Name: "h1", ClientURL: client, PeerURL: "http://127.0.0.1:2"}},
		{"no peer url", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: client}},
		{"client url without port", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: "http://127.0.0.1", PeerURL: "http://127.0.0.1:2"}},
		{"peer url with path", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: client, PeerURL: "http://127.0.0.1:2/x"}},
		{"unix scheme", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: "unix://x:1", PeerURL: "http://127.0.0.1:2"}},
		{"self not among peers", cluster.EmbedConfig{Dir: dir, Name: "h3", ClientURL: client, Peers: peers}},
		{"peer url not the peers'", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: client, PeerURL: "http://127.0.0.1:9", Peers: peers}},
		{"two members on one peer url", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: client,
			Peers: map[string]string{"h1": "http://127.0.0.1:2", "h2": "http://127.0.0.1:2"}}},
		{"a bad peer", cluster.EmbedConfig{Dir: dir, Name: "h1", ClientURL: client,
			Peers: map[string]string{"h1": "http://127.0.0.1:2", "h2": "127.0.0.1:3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := cluster.StartEmbedded(t.Context(), tc.cfg)
			if err == nil {
				e.Close()
			}
			if !errors.Is(err, cluster.ErrInvalidConfig) {
				t.Errorf("StartEmbedded(%+v) = %v, want ErrInvalidConfig", tc.cfg, err)
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		items []string
		want  map[string]string // nil: ErrInvalidConfig
	}{
		{"flags", []string{"a=http://10.0.0.1:2380", "b=https://h2:2380"},
			map[string]string{"a": "http://10.0.0.1:2380", "b": "https://h2:2380"}},
		{"commas", []string{"a=http://10.0.0.1:2380, b=http://10.0.0.2:2380"},
			map[string]string{"a": "http://10.0.0.1:2380", "b": "http://10.0.0.2:2380"}},
		{"none", nil, map[string]string{}},
		{"name twice", []string{"a=http://10.0.0.1:2380", "a=http://10.0.0.2:2380"}, nil},
		{"no name", []string{"=http://10.0.0.1:2380"}, nil},
		{"no =", []string{"http://10.0.0.1:2380"}, nil},
		{"no port", []string{"a=http://10.0.0.1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cluster.ParsePeers(tc.items)
			if tc.want == nil {
				if !errors.Is(err, cluster.ErrInvalidConfig) {
					t.Errorf("ParsePeers(%q) = %v, %v, want ErrInvalidConfig", tc.items, got, err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Errorf("ParsePeers(%q) = %v, %v, want %v", tc.items, got, err, tc.want)
			}
		})
	}
}

// threeMembers makes the configs of a three-member cluster on 127.0.0.1,
// each member in its own directory; PeerURL is left to Peers.
func threeMembers(t *testing.T) []cluster.EmbedConfig {
	peers := map[string]string{}
	var cfgs []cluster.EmbedConfig
	for _, name := range []string{"h1", "h2", "h3"} {
		peers[name] = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		cfgs = append(cfgs, cluster.EmbedConfig{Dir: filepath.Join(t.TempDir(), "etcd"), Name: name,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), Peers: peers, ReadyTimeout: 30 * time.Second})
	}
	return cfgs
}

// startMembers starts the members of cfgs at once (a new member of a
// multi-member cluster is ready only with a majority) and stops them at
// cleanup.
func startMembers(t *testing.T, cfgs ...cluster.EmbedConfig) []*cluster.Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	es := make([]*cluster.Embedded, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { es[i], errs[i] = cluster.StartEmbedded(ctx, cfg) })
	}
	wg.Wait()
	for _, e := range es {
		if e != nil {
			t.Cleanup(e.Close)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return es
}

// newClient returns a client of endpoints, closed at cleanup.
func newClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually retries op (each try bounded by 3 s) until it succeeds or
// ctx ends: a request may fail while a cluster elects a leader.
func eventually(ctx context.Context, t *testing.T, what string, op func(context.Context) error) {
	t.Helper()
	for {
		tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := op(tctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// getIs returns an op that reads k and wants v.
func getIs(c *clientv3.Client, k, v string) func(context.Context) error {
	return func(ctx context.Context) error {
		resp, err := c.Get(ctx, k)
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v {
			return fmt.Errorf("get %s = %v, want %s", k, resp.Kvs, v)
		}
		return nil
	}
}

func putOp(c *clientv3.Client, k, v string) func(context.Context) error {
	return func(ctx context.Context) error { _, err := c.Put(ctx, k, v); return err }
}

// TestEmbeddedThreeMembers: three embedded members form one cluster; with
// one stopped the other two still serve writes (a majority), and the
// stopped one, restarted from its directory, catches up.
func TestEmbeddedThreeMembers(t *testing.T) {
	cfgs := threeMembers(t)
	es := startMembers(t, cfgs...)
	c1, c2, c3 := newClient(t, es[0].Endpoints()), newClient(t, es[1].Endpoints()), newClient(t, es[2].Endpoints())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	eventually(ctx, t, "put k1 through h1", putOp(c1, "k1", "v1"))
	eventually(ctx, t, "get k1 through h3", getIs(c3, "k1", "v1"))

	es[2].Close()
	eventually(ctx, t, "put k2 through h1 with h3 down", putOp(c1, "k2", "v2"))
	eventually(ctx, t, "put k3 through h2 with h3 down", putOp(c2, "k3", "v3"))
	eventually(ctx, t, "get k3 through h1 with h3 down", getIs(c1, "k3", "v3"))

	startMembers(t, cfgs[2]) // the same directory and ports: it rejoins
	eventually(ctx, t, "get k2 through the restarted h3", getIs(c3, "k2", "v2"))
	eventually(ctx, t, "get k3 through the restarted h3", getIs(c3, "k3", "v3"))
	eventually(ctx, t, "put k4 through the restarted h3", putOp(c3, "k4", "v4"))
	eventually(ctx, t, "get k4 through h2", getIs(c2, "k4", "v4"))
}
