package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// hostsPrefix holds one key per live host.
const hostsPrefix = "/cloudfs/v1/hosts/"

// Host is a member of the cluster as etcd has it.
type Host struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`   // its HTTP API
	Store     string    `json:"store"` // its store's uuid
	Joined    time.Time `json:"joined"`
	FreeBytes int64     `json:"free_bytes"`
}

// Membership is this host's presence in the cluster: a key under a lease
// that a goroutine keeps alive until Leave.
type Membership struct {
	c       *clientv3.Client
	lease   clientv3.LeaseID
	cancel  context.CancelFunc
	done    chan struct{}
	leaving atomic.Bool
	log     *slog.Logger
}

// Join puts h under a lease of ttl and keeps the lease alive. It refuses a
// host id that a live host already holds (ErrHostIDInUse): two daemons with
// one identity would confuse every peer.
func Join(ctx context.Context, c *clientv3.Client, h Host, ttl time.Duration, log *slog.Logger) (*Membership, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lease, err := c.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, fmt.Errorf("join: lease: %w", err)
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if err := claim(ctx, c, h, b, lease.ID); err != nil {
		_, _ = c.Revoke(ctx, lease.ID) // best effort: it expires anyway
		if errors.Is(err, ErrHostIDInUse) {
			return nil, fmt.Errorf("host %q: %w (its lease expires within %v if it is dead)", h.ID, err, ttl)
		}
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	ka, err := c.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("join: keepalive: %w", err)
	}
	m := &Membership{c: c, lease: lease.ID, cancel: cancel, done: make(chan struct{}), log: log}
	go m.keep(ka)
	return m, nil
}

// claim puts the host's key under lease. The key must not exist, or must be
// this host's own from before a crash (the same store: a daemon's lock on
// its store makes a live twin on one store impossible), whose lease it
// revokes; a key of another store is another live host with this id.
func claim(ctx context.Context, c *clientv3.Client, h Host, b []byte, lease clientv3.LeaseID) error {
	key := hostsPrefix + h.ID
	resp, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return claim(ctx, c, h, b, lease) // gone meanwhile
	}
	var old Host
	if err := json.Unmarshal(kvs[0].Value, &old); err != nil || old.Store != h.Store || h.Store == "" {
		return ErrHostIDInUse
	}
	// our own key from before a crash: take it over, if it did not change
	if _, err := c.Revoke(ctx, clientv3.LeaseID(kvs[0].Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("join: revoke the lease of the previous run: %w", err)
	}
	return claim(ctx, c, h, b, lease)
}

// keep drains the keepalive responses; when the channel closes before
// Leave, the lease is lost (etcd unreachable for longer than the ttl).
func (m *Membership) keep(ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(m.done)
	for range ka {
	}
	if !m.leaving.Load() {
		m.log.Error("cluster membership lost: etcd unreachable for longer than the lease")
	}
}

// Done is closed when the membership ends: by Leave or Stop, or because
// the lease was lost (etcd unreachable for longer than its ttl). A host
// whose membership was lost must Join again to be listed.
func (m *Membership) Done() <-chan struct{} { return m.done }

// Stop stops renewing the lease without revoking it, as a crash would: the
// host's key goes when the lease expires. For tests and for a daemon that
// must not announce its leaving.
func (m *Membership) Stop() {
	m.leaving.Store(true)
	m.cancel()
	<-m.done
}

// Leave revokes the lease, so the host's key goes at once.
func (m *Membership) Leave(ctx context.Context) error {
	m.leaving.Store(true)
	m.cancel()
	<-m.done
	_, err := m.c.Revoke(ctx, m.lease)
	return err
}

// Hosts returns the live hosts, ordered by id.
func Hosts(ctx context.Context, c *clientv3.Client) ([]Host, error) {
	resp, err := c.Get(ctx, hostsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	out := make([]Host, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var h Host
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return nil, fmt.Errorf("hosts: %s: %w", kv.Key, err)
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
