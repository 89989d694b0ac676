package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// catalogPrefix covers the hosts and the volumes, so that one range and
// one watch see both at one revision. Keys under it that are neither are
// ignored.
const catalogPrefix = "/cloudfs/v1/"

// The pause between attempts to resume a watch or reload after a failure
// doubles from minRetry to maxRetry, and starts over once a watch
// delivers: short enough to follow a restarted member at once, long
// enough not to hammer an etcd that is down.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// errWatchClosed: the watch channel closed without saying why (the
// client closed, or the watch's context ended).
var errWatchClosed = errors.New("cluster: catalog watch closed")

const (
	tabVolume = "volume"
	tabHost   = "host"
)

// catalogSchema indexes volumes by id and by the hosts that keep them, and
// hosts by id. The tables hold *Volume and *Host, never changed once
// inserted.
var catalogSchema = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
	tabVolume: {Name: tabVolume, Indexes: map[string]*memdb.IndexSchema{
		"id":      {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		"replica": {Name: "replica", AllowMissing: true, Indexer: &memdb.StringSliceFieldIndex{Field: "Replicas"}},
	}},
	tabHost: {Name: tabHost, Indexes: map[string]*memdb.IndexSchema{
		"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
	}},
}}

// Catalog is this host's copy of the cluster catalog (the volumes) and of
// the live hosts, loaded from etcd once and then kept current by a watch.
// Reads never reach etcd and are safe to call concurrently; what they
// return is the caller's. While etcd is unreachable the Catalog keeps its
// last state and Revision stops advancing; it resumes where it was once
// etcd is back, or reloads everything if etcd compacted the revisions it
// missed.
type Catalog struct {
	c           *clientv3.Client
	db          *memdb.MemDB
	log         *slog.Logger
	beforeWatch func(rev int64) // test hook, nil in production

	mu          sync.Mutex
	rev         int64              // the etcd revision the contents are current at
	changed     chan struct{}      // closed at the next change, then replaced
	watchCancel context.CancelFunc // ends the current watch
	reloads     int                // loads after the first

	cancel context.CancelFunc
	done   chan struct{}
}

// NewCatalog loads the catalog and the hosts through c (bounded by ctx)
// and follows them until Close. It does not own c.
func NewCatalog(ctx context.Context, c *clientv3.Client, log *slog.Logger) (*Catalog, error) {
	return newCatalog(ctx, c, log, nil)
}

func newCatalog(ctx context.Context, c *clientv3.Client, log *slog.Logger, beforeWatch func(int64)) (*Catalog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := memdb.NewMemDB(catalogSchema)
	if err != nil {
		panic(fmt.Sprintf("cluster: catalog schema: %v", err)) // a static schema: a bug if it fails
	}
	cat := &Catalog{c: c, db: db, log: log.With("component", "catalog"), beforeWatch: beforeWatch,
		changed: make(chan struct{}), done: make(chan struct{})}
	if err := cat.load(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	cat.cancel = cancel
	go cat.run(rctx)
	return cat, nil
}

// Close stops following etcd; the Catalog keeps answering from its last
// state. Safe to call more than once.
func (cat *Catalog) Close() {
	cat.cancel()
	<-cat.done
}

// Volume returns the catalog entry of volume id.
func (cat *Catalog) Volume(id string) (Volume, bool) {
	raw, err := cat.db.Txn(false).First(tabVolume, "id", id)
	mustDB(err)
	if raw == nil {
		return Volume{}, false
	}
	return raw.(*Volume).clone(), true
}

// Volumes returns the catalog, ordered by id.
func (cat *Catalog) Volumes() []Volume { return cat.volumes("id_prefix", "") }

// VolumesOf returns the volumes that host keeps (is among the Replicas
// of), ordered by id.
func (cat *Catalog) VolumesOf(host string) []Volume { return cat.volumes("replica", host) }

func (cat *Catalog) volumes(index, arg string) []Volume {
	it, err := cat.db.Txn(false).Get(tabVolume, index, arg)
	mustDB(err)
	var out []Volume
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Volume).clone())
	}
	return out
}

// Host returns live host id.
func (cat *Catalog) Host(id string) (Host, bool) {
	raw, err := cat.db.Txn(false).First(tabHost, "id", id)
	mustDB(err)
	if raw == nil {
		return Host{}, false
	}
	return *raw.(*Host), true
}

// Hosts returns the live hosts, ordered by id.
func (cat *Catalog) Hosts() []Host {
	it, err := cat.db.Txn(false).Get(tabHost, "id_prefix", "")
	mustDB(err)
	var out []Host
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, *raw.(*Host))
	}
	return out
}

// Revision returns the etcd revision the Catalog is current at: every
// change up to it is in, none after it.
func (cat *Catalog) Revision() int64 {
	cat.mu.Lock()
	defer cat.mu.Unlock()
	return cat.rev
}

// Changed returns a channel that is closed at the next change of the
// Catalog (a watched change or a reload). Take it before reading, so
// that no change falls between the read and the wait:
//
//	for {
//		ch := cat.Changed()
//		reconcile(cat.Volumes())
//		select { case <-ch: case <-ctx.Done(): return }
//	}
func (cat *Catalog) Changed() <-chan struct{} {
	cat.mu.Lock()
	defer cat.mu.Unlock()
	return cat.changed
}

// WaitRevision waits until the Catalog is current at rev or later. rev
// must be the revision of a change under /cloudfs/v1/ (as UpdateVolume
// returns): the Catalog only advances with those. It fails with ctx's
// error, or ErrClosed once the Catalog is closed.
func (cat *Catalog) WaitRevision(ctx context.Context, rev int64) error {
	for {
		cat.mu.Lock()
		cur, ch := cat.rev, cat.changed
		cat.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-cat.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run follows etcd until ctx ends: it resumes a watch that ended after the
// last revision it applied, and reloads when etcd has compacted that.
func (cat *Catalog) run(ctx context.Context) {
	defer close(cat.done)
	pause := minRetry
	for {
		delivered, err := cat.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if delivered {
			pause = minRetry
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			cat.log.Warn("catalog watch fell behind a compaction; reloading", "rev", cat.Revision())
			if !cat.reload(ctx) {
				return
			}
			continue
		}
		cat.log.Warn("catalog watch ended; resuming", "rev", cat.Revision(), "err", err, "retry_in", pause)
		if !sleep(ctx, pause) {
			return
		}
		pause = min(2*pause, maxRetry)
	}
}

// reload loads until a load succeeds or ctx ends, and says whether ctx is
// still live.
func (cat *Catalog) reload(ctx context.Context) bool {
	for pause := minRetry; ; pause = min(2*pause, maxRetry) {
		err := cat.load(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		cat.log.Warn("catalog reload failed; retrying", "err", err, "retry_in", pause)
		if !sleep(ctx, pause) {
			return false
		}
	}
}

// watch applies the changes after the Catalog's revision until the watch
// ends, and says why and whether it delivered anything. The watch requires
// a leader, so a member cut off from the majority ends it instead of
// leaving the Catalog silently stale.
func (cat *Catalog) watch(ctx context.Context) (delivered bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	cat.mu.Lock()
	rev := cat.rev
	cat.watchCancel = cancel
	cat.mu.Unlock()
	if cat.beforeWatch != nil {
		cat.beforeWatch(rev)
	}
	for resp := range cat.c.Watch(wctx, catalogPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			return delivered, err
		}
		if len(resp.Events) == 0 && !resp.IsProgressNotify() {
			continue // a created notification: nothing is known from it
		}
		cat.apply(resp)
		delivered = true
	}
	return delivered, errWatchClosed
}

// apply applies one watch response in one memdb transaction.
func (cat *Catalog) apply(resp clientv3.WatchResponse) {
	rev := resp.Header.Revision // a progress notification: current up to it
	if n := len(resp.Events); n > 0 {
		// a response's header may be ahead of its events; the events of
		// the revisions between come in the next one
		rev = resp.Events[n-1].Kv.ModRevision
	}
	txn := cat.db.Txn(true)
	for _, ev := range resp.Events {
		if ev.Type == clientv3.EventTypeDelete {
			cat.remove(txn, string(ev.Kv.Key))
		} else {
			cat.put(txn, ev.Kv)
		}
	}
	txn.Commit()
	cat.advance(rev)
}

// load replaces the contents by a range read of etcd.
func (cat *Catalog) load(ctx context.Context) error {
	resp, err := cat.c.Get(ctx, catalogPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("catalog: load: %w", err)
	}
	txn := cat.db.Txn(true)
	for _, tab := range []string{tabVolume, tabHost} {
		_, err := txn.DeleteAll(tab, "id_prefix", "")
		mustDB(err)
	}
	for _, kv := range resp.Kvs {
		cat.put(txn, kv)
	}
	txn.Commit()
	cat.mu.Lock()
	if cat.rev != 0 {
		cat.reloads++
	}
	cat.mu.Unlock()
	cat.advance(resp.Header.Revision)
	return nil
}

// put inserts the volume or host of kv; an entry that does not decode (or
// has an empty id) is logged and dropped, with the one it replaces.
func (cat *Catalog) put(txn *memdb.Txn, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	var err error
	switch {
	case strings.HasPrefix(key, volumesPrefix):
		var v Volume
		if v, err = decodeVolume(kv); err == nil {
			err = txn.Insert(tabVolume, &v) // fails for an empty id
		}
	case strings.HasPrefix(key, hostsPrefix):
		var h Host
		if err = json.Unmarshal(kv.Value, &h); err == nil {
			h.ID = strings.TrimPrefix(key, hostsPrefix)
			err = txn.Insert(tabHost, &h) // fails for an empty id

		}
	}
	if err != nil {
		cat.log.Warn("catalog entry ignored", "key", key, "err", err)
		cat.remove(txn, key)
	}
}

// remove deletes the volume or host of key, if there is one.
func (cat *Catalog) remove(txn *memdb.Txn, key string) {
	var err error
	if id, ok := strings.CutPrefix(key, volumesPrefix); ok {
		_, err = txn.DeleteAll(tabVolume, "id", id)
	} else if id, ok := strings.CutPrefix(key, hostsPrefix); ok {
		_, err = txn.DeleteAll(tabHost, "id", id)
	}
	mustDB(err)
}

// advance records that the contents are current at rev and wakes the
// waiters.
func (cat *Catalog) advance(rev int64) {
	cat.mu.Lock()
	defer cat.mu.Unlock()
	cat.rev = rev
	close(cat.changed)
	cat.changed = make(chan struct{})
}

// sleep waits d or until ctx ends, and says whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// mustDB panics on an error of memdb, which it returns only for a table or
// index missing from catalogSchema: a bug.
func mustDB(err error) {
	if err != nil {
		panic(fmt.Sprintf("cluster: catalog: %v", err))
	}
}
