package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"cloudfs/replicator/cluster"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// newCatalog follows c until cleanup.
func newCatalog(t *testing.T, c *clientv3.Client) *cluster.Catalog {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cat, err := cluster.NewCatalog(ctx, c, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cat.Close)
	return cat
}

// waitFor waits, one change of cat at a time, until cond holds (at most
// 10 s).
func waitFor(t *testing.T, cat *cluster.Catalog, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		ch := cat.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%s: not within 10 s; volumes %+v, hosts %+v", what, cat.Volumes(), cat.Hosts())
		}
	}
}

// ids returns the ids of vs.
func ids(vs []cluster.Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.ID)
	}
	return out
}

// TestCatalogFollows: the catalog sees volumes and hosts come, change and
// go, each change waking Changed.
func TestCatalogFollows(t *testing.T) {
	_, c := startEtcd(t, filepath.Join(t.TempDir(), "etcd"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v1", Primary: "a", Replicas: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	cat := newCatalog(t, c)
	if v, ok := cat.Volume("v1"); !ok || v.Primary != "a" || v.Epoch == 0 {
		t.Fatalf("loaded Volume(v1) = %+v, %v", v, ok)
	}

	ch := cat.Changed()
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v2", Primary: "b", Replicas: []string{"b", "c"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed did not fire on a put")
	}
	waitFor(t, cat, "v2 put", func() bool { _, ok := cat.Volume("v2"); return ok })
	if got := ids(cat.Volumes()); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("Volumes = %v, want [v1 v2]", got)
	}
	if got := ids(cat.VolumesOf("b")); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("VolumesOf(b) = %v, want [v1 v2]", got)
	}

	rev, err := cluster.UpdateVolume(ctx, c, "v1", func(v *cluster.Volume) error {
		v.Replicas = []string{"a", "c"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if got := ids(cat.VolumesOf("b")); !slices.Equal(got, []string{"v2"}) {
		t.Errorf("VolumesOf(b) after v1 left b = %v, want [v2]", got)
	}
	if got := ids(cat.VolumesOf("c")); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("VolumesOf(c) = %v, want [v1 v2]", got)
	}

	if err := cluster.DeleteVolume(ctx, c, "v1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cat, "v1 deleted", func() bool { _, ok := cat.Volume("v1"); return !ok })

	m, err := cluster.Join(ctx, c, cluster.Host{ID: "h1", URL: "http://10.0.0.1:8090"}, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, cat, "h1 joined", func() bool { h, ok := cat.Host("h1"); return ok && h.URL == "http://10.0.0.1:8090" })
	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cat, "h1 left", func() bool { return len(cat.Hosts()) == 0 })

	// what the catalog returns is the caller's
	v, _ := cat.Volume("v2")
	v.Replicas[0] = "x"
	if v, _ := cat.Volume("v2"); v.Replicas[0] != "b" {
		t.Errorf("a change to a returned volume changed the catalog: %+v", v)
	}
	if cat.Reloads() != 0 {
		t.Errorf("Reloads = %d, want 0", cat.Reloads())
	}
	cat.Close()
	if err := cat.WaitRevision(ctx, cat.Revision()+1); !errors.Is(err, cluster.ErrClosed) {
		t.Errorf("WaitRevision after Close = %v, want ErrClosed", err)
	}
}

// TestCatalogReload: a watch that ends resumes after the last revision it
// applied; when etcd has compacted that meanwhile, the catalog reloads and
// sees the puts and deletes it missed.
func TestCatalogReload(t *testing.T) {
	_, c := startEtcd(t, filepath.Join(t.TempDir(), "etcd"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v1", Primary: "a"}); err != nil {
		t.Fatal(err)
	}
	started := make(chan int64, 10)
	paused, resume := make(chan int64), make(chan struct{})
	var pausing atomic.Bool
	hook := func(rev int64) {
		if pausing.CompareAndSwap(true, false) {
			paused <- rev
			<-resume
		}
		select {
		case started <- rev:
		default: // nobody counts watches any more
		}
	}
	cat, err := cluster.NewCatalogWithHook(ctx, c, slog.New(slog.NewTextHandler(t.Output(), nil)), hook)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cat.Close)
	waitStart := func(what string) {
		t.Helper()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no watch started within 10 s", what)
		}
	}
	waitStart("first watch")

	// a broken watch resumes without a reload
	cat.BreakWatch()
	waitStart("watch after a break")
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v2", Primary: "a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cat, "v2 put after a broken watch", func() bool { _, ok := cat.Volume("v2"); return ok })
	if cat.Reloads() != 0 {
		t.Errorf("Reloads after a resumed watch = %d, want 0", cat.Reloads())
	}

	// a watch that would resume at a compacted revision reloads instead
	pausing.Store(true)
	cat.BreakWatch()
	select {
	case <-paused:
	case <-time.After(10 * time.Second):
		t.Fatal("the catalog did not restart its watch")
	}
	if err := cluster.DeleteVolume(ctx, c, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v3", Primary: "b"}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	// compact up to now: past the revision the watch resumes at
	if _, err := c.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	close(resume)
	waitFor(t, cat, "reload after a compaction", func() bool {
		_, v1 := cat.Volume("v1")
		_, v3 := cat.Volume("v3")
		return !v1 && v3
	})
	if got := ids(cat.Volumes()); !slices.Equal(got, []string{"v2", "v3"}) {
		t.Errorf("Volumes after the reload = %v, want [v2 v3]", got)
	}
	if cat.Reloads() != 1 {
		t.Errorf("Reloads = %d, want 1", cat.Reloads())
	}
	if cat.Revision() < resp.Header.Revision {
		t.Errorf("Revision after the reload = %d, want >= %d", cat.Revision(), resp.Header.Revision)
	}
}
