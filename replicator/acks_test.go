package replicator_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/segtest"

	"github.com/prometheus/client_golang/prometheus"
)

// newPrimary is a host whose API takes acknowledgements for the volumes its
// Acks tracks.
func newPrimary(t *testing.T, timeout time.Duration) (*host, *replicator.Acks) {
	t.Helper()
	_, st := segtest.NewStore(t, 256<<20, segment.Options{NoBackground: true})
	reg := prometheus.NewRegistry()
	acks := replicator.NewAcks(replicator.AcksConfig{Timeout: timeout, Metrics: reg,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Head: func(base segment.ID) (segment.Position, error) {
			v, err := st.Volume(base)
			if err != nil {
				return segment.Position{}, err
			}
			in, err := v.Info()
			return segment.Position{LSN: in.LSN, Version: in.Version}, err
		}})
	t.Cleanup(acks.Close)
	h, err := replicator.NewHandler(replicator.Config{Store: hostStore{st}, Secret: secret, Metrics: reg, Acks: acks})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &host{st: st, srv: srv, reg: reg, c: &replicator.Client{URL: srv.URL, Secret: secret}}, acks
}

// replica follows base from the primary as host name, acknowledging, until
// the returned stop is called.
func replica(t *testing.T, p *host, base segment.ID, name string) (*segment.Store, func()) {
	t.Helper()
	_, st := segtest.NewStore(t, 256<<20, segment.Options{NoBackground: true})
	return st, follow(t, p, st, base, name)
}

func follow(t *testing.T, p *host, st *segment.Store, base segment.ID, name string) func() {
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replicator.Follow(c, replicator.FollowConfig{Store: st, Source: p.c, Volume: base, Self: name,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("replica", name)})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("follower of %s stopped with %v", name, err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

func lsnOf(t *testing.T, st *segment.Store, base segment.ID) uint64 {
	v, err := st.Volume(base)
	if err != nil {
		return 0
	}
	in, err := v.Info()
	if err != nil {
		t.Fatal(err)
	}
	return in.LSN
}

func position(t *testing.T, v *segment.Volume) segment.Position {
	in, err := v.Info()
	if err != nil {
		t.Fatal(err)
	}
	return segment.Position{LSN: in.LSN, Version: in.Version}
}

// TestQuorumWrites: in quorum mode on 3 hosts every acknowledged write is
// on a majority when it is acknowledged; with one replica stopped writes go
// on; with both stopped a write fails with ErrNoQuorum after the timeout,
// and once a replica is back the writes go on and it has them all.
func TestQuorumWrites(t *testing.T) {
	p, acks := newPrimary(t, 300*time.Millisecond)
	v, err := p.st.Create(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	base := v.Base()
	acks.Set(base, replicator.ModeQuorum, []string{"r1", "r2"})
	r1, stop1 := replica(t, p, base, "r1")
	r2, stop2 := replica(t, p, base, "r2")
	rv := acks.Volume(v)
	write := func(i int) error {
		_, err := rv.WriteAt(randBytes(uint64(i), 4096), int64(i%64)*4096)
		return err
	}
	for i := range 50 {
		if err := write(i); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		lsn := position(t, v).LSN
		if lsnOf(t, r1, base) < lsn && lsnOf(t, r2, base) < lsn {
			t.Fatalf("write %d (lsn %d) acknowledged with no replica having it: r1 %d r2 %d", i, lsn,
				lsnOf(t, r1, base), lsnOf(t, r2, base))
		}
	}
	stop2()
	for i := 50; i < 60; i++ {
		if err := write(i); err != nil {
			t.Fatalf("write %d with one replica stopped: %v", i, err)
		}
		if lsn := position(t, v).LSN; lsnOf(t, r1, base) < lsn {
			t.Fatalf("write %d acknowledged before the only live replica had it", i)
		}
	}
	stop1()
	start := time.Now()
	err = write(60)
	if !errors.Is(err, replicator.ErrNoQuorum) {
		t.Fatalf("write with no replica = %v, want ErrNoQuorum", err)
	}
	t.Logf("no quorum: %v after %v", err, time.Since(start).Round(time.Millisecond))
	// the flush of a write no quorum has fails too
	if err := rv.Flush(); !errors.Is(err, replicator.ErrNoQuorum) {
		t.Fatalf("flush with no replica = %v, want ErrNoQuorum", err)
	}
	follow(t, p, r1, base, "r1") // back: it catches up, and writes go on
	if err := write(61); err != nil {
		t.Fatalf("write after a replica came back: %v", err)
	}
	if got, want := lsnOf(t, r1, base), position(t, v).LSN; got < want {
		t.Fatalf("replica back at lsn %d, primary %d", got, want)
	}
	rs, ok := acks.Replicas(base)
	if !ok || len(rs) != 2 || rs[0].Host != "r1" || rs[0].LagEntries != 0 || rs[1].LagEntries == 0 {
		t.Errorf("Replicas = %+v %v, want r1 caught up and r2 behind", rs, ok)
	}
	if want := int64(rs[1].LagEntries) * 4096; rs[1].LagBytes != want {
		t.Errorf("r2 lag bytes = %d, want %d: the 4 KiB writes it missed (%+v)", rs[1].LagBytes, want, rs[1])
	}
}

// TestSyncWrites: in sync mode a write is acknowledged once every replica in
// sync has it; a replica that stops answering leaves the set after the
// timeout and writes go on without it; when it comes back and catches up it
// is in the set again.
func TestSyncWrites(t *testing.T) {
	p, acks := newPrimary(t, 300*time.Millisecond)
	v, err := p.st.Create(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	base := v.Base()
	acks.Set(base, replicator.ModeSync, []string{"r1"})
	r1, stop := replica(t, p, base, "r1")
	rv := acks.Volume(v)
	waitFor(t, "r1 in sync", func() bool { rs, _ := acks.Replicas(base); return rs[0].InSync })
	for i := range 20 {
		if _, err := rv.WriteAt(randBytes(uint64(i), 8192), 0); err != nil {
			t.Fatal(err)
		}
		if got, want := lsnOf(t, r1, base), position(t, v).LSN; got < want {
			t.Fatalf("sync write %d acknowledged at lsn %d, replica has %d", i, want, got)
		}
	}
	stop()
	if _, err := rv.WriteAt(randBytes(99, 4096), 0); err != nil {
		t.Fatalf("sync write with the replica gone: %v (it should leave the set)", err)
	}
	if rs, _ := acks.Replicas(base); rs[0].InSync {
		t.Errorf("a silent replica is still in sync: %+v", rs[0])
	}
	follow(t, p, r1, base, "r1")
	waitFor(t, "r1 back in sync", func() bool { rs, _ := acks.Replicas(base); return rs[0].InSync })
	if _, err := rv.WriteAt(randBytes(100, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if got, want := lsnOf(t, r1, base), position(t, v).LSN; got < want {
		t.Fatalf("after rejoining, a write was acknowledged at lsn %d with the replica at %d", want, got)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAckEndpoint: acknowledgements from a host that does not keep the
// volume, for a volume this host is not the primary of, or malformed, are
// refused and change nothing.
func TestAckEndpoint(t *testing.T) {
	p, acks := newPrimary(t, time.Second)
	v, _ := p.st.Create(1 << 20)
	acks.Set(v.Base(), replicator.ModeQuorum, []string{"r1", "r2"})
	pos := position(t, v)
	ack := replicator.Ack{Host: "r9", LSN: pos.LSN, Version: pos.Version.String()}
	if err := p.c.Ack(ctx(t), v.Base().String(), ack); !replicator.IsStatus(err, http.StatusForbidden) {
		t.Errorf("ack from a stranger = %v, want 403", err)
	}
	other, _ := p.st.Create(1 << 20)
	ack.Host = "r1"
	if err := p.c.Ack(ctx(t), other.Base().String(), ack); !replicator.IsStatus(err, http.StatusConflict) {
		t.Errorf("ack of a volume not primary here = %v, want 409", err)
	}
	for _, body := range []string{`{`, `{"host":"r1","lsn":1,"version":"xyz"}`, `{"lsn":1,"version":"` + pos.Version.String() + `"}`} {
		code, _, _ := p.req(t, "POST", "/v1/volumes/"+v.Base().String()+"/ack", []byte(body), auth(nil))
		if code != http.StatusBadRequest {
			t.Errorf("ack %s = %d, want 400", body, code)
		}
	}
	if rs, _ := acks.Replicas(v.Base()); rs[0].LSN != 0 || rs[1].LSN != 0 {
		t.Errorf("refused acks changed the state: %+v", rs)
	}
	if err := p.c.Ack(ctx(t), v.Base().String(), ack); err != nil {
		t.Fatal(err)
	}
	if rs, _ := acks.Replicas(v.Base()); rs[0].LSN != pos.LSN {
		t.Errorf("ack not recorded: %+v", rs)
	}
}

// TestSyncDegradedConfirm: a sync volume none of whose replicas is in sync
// acknowledges a write only after Confirm says this host is still the
// primary (at most once a ConfirmFor); a host that lost the volume while
// paused gets ErrNotPrimary and acknowledges nothing.
func TestSyncDegradedConfirm(t *testing.T) {
	_, st := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	v, err := st.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls, owner := 0, true
	acks := replicator.NewAcks(replicator.AcksConfig{Timeout: time.Second, ConfirmFor: time.Hour,
		Head: func(segment.ID) (segment.Position, error) { return position(t, v), nil },
		Confirm: func(segment.ID) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if !owner {
				return errors.New("the catalog names another primary")
			}
			return nil
		}})
	t.Cleanup(acks.Close)
	acks.Set(v.Base(), replicator.ModeSync, []string{"r1"}) // r1 never acknowledges: degraded
	rv := acks.Volume(v)
	for i := range 3 {
		if _, err := rv.WriteAt(randBytes(uint64(i), 4096), 0); err != nil {
			t.Fatalf("degraded write %d while the primary: %v", i, err)
		}
	}
	if calls != 1 {
		t.Errorf("Confirm called %d times for 3 writes within ConfirmFor, want 1", calls)
	}
	// lost ownership: a fresh tracker (no confirmation cached) refuses
	acks2 := replicator.NewAcks(replicator.AcksConfig{Timeout: time.Second,
		Head:    func(segment.ID) (segment.Position, error) { return position(t, v), nil },
		Confirm: func(segment.ID) error { return errors.New("the catalog names another primary") }})
	t.Cleanup(acks2.Close)
	acks2.Set(v.Base(), replicator.ModeSync, []string{"r1"})
	if _, err := acks2.Volume(v).WriteAt(randBytes(9, 4096), 0); !errors.Is(err, replicator.ErrNotPrimary) {
		t.Errorf("degraded write on a host that is no longer the primary = %v, want ErrNotPrimary", err)
	}
	mu.Lock()
	owner = false
	mu.Unlock()
}
