package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// volumesPrefix holds one key per replicated volume: the catalog.
const volumesPrefix = "/cloudfs/v1/volumes/"

// maxUpdateAttempts bounds UpdateVolume's compare-and-swap retries. Each
// conflict means another writer's change to the same entry landed; that
// many in a row means a loop of writers, and giving up beats spinning.
const maxUpdateAttempts = 16

// Volume is a volume's entry in the cluster catalog: which hosts keep it
// and which of them is the primary (holds the access token).
type Volume struct {
	ID       string    `json:"id"`
	Size     uint64    `json:"size"`
	Primary  string    `json:"primary"`  // host id
	Replicas []string  `json:"replicas"` // host ids, the primary included
	Mode     string    `json:"mode"`     // "async" until the sync and quorum modes arrive
	Created  time.Time `json:"created"`
	// Epoch is the etcd mod revision of the last ownership change: the
	// write that created the entry or changed its primary (UpdateVolume).
	// It only grows. Stored as 0 (omitted) by the ownership change itself,
	// which cannot know its own revision, and read as the entry's mod
	// revision then; the next UpdateVolume stores it. Entries written
	// before epochs existed read the same way. Every function of this
	// package that returns a Volume fills it in.
	Epoch uint64 `json:"epoch,omitempty"`
}

// clone returns a copy of v that shares no memory with it.
func (v Volume) clone() Volume {
	v.Replicas = slices.Clone(v.Replicas)
	return v
}

// decodeVolume reads a catalog entry. The key, not the JSON, has the id;
// an epoch not stored yet is the entry's mod revision (see Volume.Epoch).
func decodeVolume(kv *mvccpb.KeyValue) (Volume, error) {
	var v Volume
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return Volume{}, fmt.Errorf("catalog: %s: %w", kv.Key, err)
	}
	v.ID = strings.TrimPrefix(string(kv.Key), volumesPrefix)
	if v.Epoch == 0 {
		v.Epoch = uint64(kv.ModRevision)
	}
	return v, nil
}

// PutVolume adds v to the catalog; it fails with ErrVolumeExists if the id
// is there. v.Epoch is ignored: the revision that creates the entry is the
// volume's first epoch.
func PutVolume(ctx context.Context, c *clientv3.Client, v Volume) error {
	v.Epoch = 0
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	key := volumesPrefix + v.ID
	resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("catalog: put %s: %w", v.ID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w", v.ID, ErrVolumeExists)
	}
	return nil
}

// UpdateVolume changes the catalog entry of volume id by compare-and-swap:
// it reads the entry, lets fn change it, and writes it back only if the
// entry has not changed meanwhile (same mod revision); on a conflict it
// reads the entry again and calls fn again, at most maxUpdateAttempts
// times (then ErrConflict). fn must therefore change nothing but its
// argument. An error of fn aborts the update and is returned wrapped.
//
// A change of Primary, or fn setting Epoch to 0, is an ownership change:
// the volume's new epoch is the revision of this write. fn must leave ID
// alone and Epoch either alone or 0.
//
// It returns the entry's mod revision after the update: the new epoch
// after an ownership change. If fn changed nothing, nothing is written and
// the current mod revision is returned. A missing entry fails with
// ErrVolumeNotFound.
func UpdateVolume(ctx context.Context, c *clientv3.Client, id string, fn func(*Volume) error) (int64, error) {
	key := volumesPrefix + id
	resp, err := c.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("catalog: update %s: %w", id, err)
	}
	kvs := resp.Kvs
	for range maxUpdateAttempts {
		if len(kvs) == 0 {
			return 0, fmt.Errorf("%s: %w", id, ErrVolumeNotFound)
		}
		var rev int64
		rev, kvs, err = tryUpdate(ctx, c, kvs[0], fn)
		if err != nil || rev != 0 {
			return rev, err
		}
	}
	return 0, fmt.Errorf("catalog: update %s: %d attempts: %w", id, maxUpdateAttempts, ErrConflict)
}

// tryUpdate makes one attempt of UpdateVolume on the entry kv. It returns
// the new mod revision, or on a conflict 0 and the entry as it is now.
func tryUpdate(ctx context.Context, c *clientv3.Client, kv *mvccpb.KeyValue, fn func(*Volume) error) (int64, []*mvccpb.KeyValue, error) {
	old, err := decodeVolume(kv)
	if err != nil {
		return 0, nil, err
	}
	v := old.clone()
	if err := fn(&v); err != nil {
		return 0, nil, fmt.Errorf("catalog: update %s: %w", old.ID, err)
	}
	b, err := updated(old, v)
	if err != nil || b == nil {
		return kv.ModRevision, nil, err
	}
	key := string(kv.Key)
	resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, string(b))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, nil, fmt.Errorf("catalog: update %s: %w", old.ID, err)
	}
	if !resp.Succeeded {
		return 0, resp.Responses[0].GetResponseRange().Kvs, nil
	}
	return resp.Header.Revision, nil, nil
}

// updated checks fn's change of old into v and returns v as it is to be
// stored, or nil if nothing changed.
func updated(old, v Volume) ([]byte, error) {
	switch {
	case v.ID != old.ID:
		return nil, fmt.Errorf("catalog: update %s: the id cannot change (to %q)", old.ID, v.ID)
	case v.Epoch != 0 && v.Epoch != old.Epoch:
		return nil, fmt.Errorf("catalog: update %s: epoch %d: only 0 (a new epoch) may be set", old.ID, v.Epoch)
	}
	if v.Primary != old.Primary {
		v.Epoch = 0 // the revision of this write (see Volume.Epoch)
	}
	a, err := json.Marshal(old)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil || bytes.Equal(a, b) {
		return nil, err
	}
	return b, nil
}

// DeleteVolume removes a volume from the catalog (no error if absent).
func DeleteVolume(ctx context.Context, c *clientv3.Client, id string) error {
	if _, err := c.Delete(ctx, volumesPrefix+id); err != nil {
		return fmt.Errorf("catalog: delete %s: %w", id, err)
	}
	return nil
}

// Volumes returns the catalog, ordered by id, read from etcd now. A daemon
// that reads it often follows it with a Catalog instead.
func Volumes(ctx context.Context, c *clientv3.Client) ([]Volume, error) {
	resp, err := c.Get(ctx, volumesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	out := make([]Volume, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := decodeVolume(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// GetVolume reads one volume's entry from etcd now (a linearizable read:
// what a majority of the members has); ErrVolumeNotFound if it has none.
func GetVolume(ctx context.Context, c *clientv3.Client, id string) (Volume, error) {
	resp, err := c.Get(ctx, volumesPrefix+id)
	if err != nil {
		return Volume{}, fmt.Errorf("catalog: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Volume{}, fmt.Errorf("%s: %w", id, ErrVolumeNotFound)
	}
	return decodeVolume(resp.Kvs[0])
}

// Place picks n hosts for a new volume: self first if it is live, then the
// hosts with the most free space. It fails if fewer than n are live.
func Place(hosts []Host, self string, n int) ([]Host, error) {
	if n > len(hosts) {
		return nil, fmt.Errorf("cluster: %d replicas need %d live hosts, %d are live", n, n, len(hosts))
	}
	hs := append([]Host(nil), hosts...)
	sort.SliceStable(hs, func(i, j int) bool {
		if (hs[i].ID == self) != (hs[j].ID == self) {
			return hs[i].ID == self
		}
		return hs[i].FreeBytes > hs[j].FreeBytes
	})
	return hs[:n], nil
}
