package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// volumesPrefix holds one key per replicated volume: the catalog.
const volumesPrefix = "/cloudfs/v1/volumes/"

// ErrVolumeExists: the catalog already has a volume with that id.
var ErrVolumeExists = errors.New("cluster: volume already in the catalog")

// Volume is a volume's entry in the cluster catalog: which hosts keep it
// and which of them is the primary (holds the access token).
type Volume struct {
	ID       string    `json:"id"`
	Size     uint64    `json:"size"`
	Primary  string    `json:"primary"`  // host id
	Replicas []string  `json:"replicas"` // host ids, the primary included
	Mode     string    `json:"mode"`     // "async" until the sync and quorum modes arrive
	Created  time.Time `json:"created"`
}

// PutVolume adds v to the catalog; it fails with ErrVolumeExists if the id
// is there.
func PutVolume(ctx context.Context, c *clientv3.Client, v Volume) error {
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

// DeleteVolume removes a volume from the catalog (no error if absent).
func DeleteVolume(ctx context.Context, c *clientv3.Client, id string) error {
	if _, err := c.Delete(ctx, volumesPrefix+id); err != nil {
		return fmt.Errorf("catalog: delete %s: %w", id, err)
	}
	return nil
}

// Volumes returns the catalog, ordered by id.
func Volumes(ctx context.Context, c *clientv3.Client) ([]Volume, error) {
	resp, err := c.Get(ctx, volumesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	out := make([]Volume, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v Volume
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("catalog: %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
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
