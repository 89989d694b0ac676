package cluster_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"cloudfs/replicator/cluster"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// volume reads volume id from etcd now.
func volume(ctx context.Context, t *testing.T, c *clientv3.Client, id string) cluster.Volume {
	t.Helper()
	vols, err := cluster.Volumes(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(vols, func(v cluster.Volume) bool { return v.ID == id })
	if i < 0 {
		t.Fatalf("volume %s not in the catalog: %+v", id, vols)
	}
	return vols[i]
}

// TestUpdateVolume: the epoch is the revision of the creation, stays
// through changes that keep the primary, and becomes the revision of the
// change that moves it (or asks for a new one).
func TestUpdateVolume(t *testing.T) {
	_, c := startEtcd(t, filepath.Join(t.TempDir(), "etcd"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v", Primary: "a", Replicas: []string{"a", "b"}, Mode: "async", Epoch: 99}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, "/cloudfs/v1/volumes/v")
	if err != nil {
		t.Fatal(err)
	}
	created := uint64(resp.Kvs[0].ModRevision)
	if v := volume(ctx, t, c, "v"); v.Epoch != created {
		t.Fatalf("epoch after PutVolume = %d, want the creating revision %d", v.Epoch, created)
	}

	setMode := func(v *cluster.Volume) error { v.Mode = "sync"; return nil }
	rev, err := cluster.UpdateVolume(ctx, c, "v", setMode)
	if err != nil {
		t.Fatal(err)
	}
	if v := volume(ctx, t, c, "v"); v.Mode != "sync" || v.Epoch != created {
		t.Errorf("after a mode change: %+v, want mode sync, epoch %d", v, created)
	}
	if again, err := cluster.UpdateVolume(ctx, c, "v", setMode); err != nil || again != rev {
		t.Errorf("UpdateVolume without a change = %d, %v, want %d (no write)", again, err, rev)
	}

	rev, err = cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error { v.Primary = "b"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if v := volume(ctx, t, c, "v"); v.Primary != "b" || v.Epoch != uint64(rev) {
		t.Errorf("after a primary change: %+v, want primary b, epoch %d", v, rev)
	}
	// the epoch written down by the next change is still that revision
	if _, err := cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error { v.Mode = "quorum"; return nil }); err != nil {
		t.Fatal(err)
	}
	if v := volume(ctx, t, c, "v"); v.Epoch != uint64(rev) {
		t.Errorf("epoch after a later mode change = %d, want %d", v.Epoch, rev)
	}
	epoch0, err := cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error { v.Epoch = 0; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if v := volume(ctx, t, c, "v"); v.Epoch != uint64(epoch0) || epoch0 <= rev {
		t.Errorf("epoch after asking for a new one = %d, want %d (> %d)", v.Epoch, epoch0, rev)
	}

	for _, tc := range []struct {
		name string
		id   string
		fn   func(*cluster.Volume) error
		want error // nil: any error
	}{
		{"missing volume", "nope", setMode, cluster.ErrVolumeNotFound},
		{"fn fails", "v", func(*cluster.Volume) error { return context.Canceled }, context.Canceled},
		{"id changed", "v", func(v *cluster.Volume) error { v.ID = "w"; return nil }, nil},
		{"epoch set", "v", func(v *cluster.Volume) error { v.Epoch = 1; return nil }, nil},
	} {
		_, err := cluster.UpdateVolume(ctx, c, tc.id, tc.fn)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: UpdateVolume = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestUpdateVolumeConflict: a change that lands between UpdateVolume's
// read and its write makes it read again and retry, keeping both; one
// that lands every time makes it give up with ErrConflict.
func TestUpdateVolumeConflict(t *testing.T) {
	_, c := startEtcd(t, filepath.Join(t.TempDir(), "etcd"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := cluster.PutVolume(ctx, c, cluster.Volume{ID: "v", Primary: "a", Replicas: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	addReplica := func(id string) func(*cluster.Volume) error {
		return func(v *cluster.Volume) error { v.Replicas = append(v.Replicas, id); return nil }
	}
	calls := 0
	_, err := cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error {
		calls++
		if calls == 1 { // another writer gets in first
			if _, err := cluster.UpdateVolume(ctx, c, "v", addReplica("b")); err != nil {
				return err
			}
		}
		return addReplica("c")(v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := volume(ctx, t, c, "v"); calls != 2 || !slices.Equal(v.Replicas, []string{"a", "b", "c"}) {
		t.Errorf("after a conflict: %d calls, replicas %v; want 2 calls, [a b c]", calls, v.Replicas)
	}

	calls = 0
	_, err = cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error {
		calls++
		if _, err := cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error { v.Size++; return nil }); err != nil {
			return err
		}
		v.Mode = "sync"
		return nil
	})
	if !errors.Is(err, cluster.ErrConflict) || calls < 2 {
		t.Errorf("UpdateVolume under constant conflicts = %v after %d calls, want ErrConflict", err, calls)
	}
	if v := volume(ctx, t, c, "v"); v.Mode == "sync" {
		t.Errorf("the conflicting update landed: %+v", v)
	}
}

// TestVolumeWithoutEpoch: an entry written before epochs existed decodes,
// with the entry's mod revision as its epoch, and updates keep that.
func TestVolumeWithoutEpoch(t *testing.T) {
	_, c := startEtcd(t, filepath.Join(t.TempDir(), "etcd"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	old := `{"id":"v","size":4096,"primary":"a","replicas":["a","b"],"mode":"async","created":"2026-01-02T03:04:05Z"}`
	resp, err := c.Put(ctx, "/cloudfs/v1/volumes/v", old)
	if err != nil {
		t.Fatal(err)
	}
	v := volume(ctx, t, c, "v")
	if v.Epoch != uint64(resp.Header.Revision) || v.Size != 4096 || !slices.Equal(v.Replicas, []string{"a", "b"}) {
		t.Fatalf("old entry = %+v, want epoch %d", v, resp.Header.Revision)
	}
	if _, err := cluster.UpdateVolume(ctx, c, "v", func(v *cluster.Volume) error { v.Mode = "sync"; return nil }); err != nil {
		t.Fatal(err)
	}
	if v := volume(ctx, t, c, "v"); v.Epoch != uint64(resp.Header.Revision) {
		t.Errorf("epoch after an update of an old entry = %d, want %d", v.Epoch, resp.Header.Revision)
	}
}
