package replicator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/segtest"
)

// TestFollowReplica: a follower makes a replica of a volume from nothing
// (the whole volume), stays live, and when its stream breaks (the source's
// connections cut) it reconnects and catches up from where it was; the
// heads agree every time. A fork is fatal.
func TestFollowReplica(t *testing.T) {
	src := newHost(t)
	_, dst := segtest.NewStore(t, 256<<20, segment.Options{NoBackground: true})
	vi, err := src.c.Create(ctx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// the test's own requests use fresh connections: the source's are cut
	wc := &replicator.Client{URL: src.srv.URL, Secret: secret,
		HTTP: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	write := func(i int) {
		t.Helper()
		if err := wc.WriteAt(ctx(t), vi.ID, randBytes(uint64(i), 8192), int64(i%64)*8192); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		write(i)
	}
	id, _ := segment.ParseID(vi.ID)
	var mu sync.Mutex
	var last replicator.FollowStatus
	c, cancel := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() {
		done <- replicator.Follow(c, replicator.FollowConfig{Store: dst, Source: src.c, Volume: id,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
			Status: func(s replicator.FollowStatus) { mu.Lock(); last = s; mu.Unlock() }})
	}()
	converged := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			head, err := wc.Info(ctx(t), vi.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v, err := dst.Volume(id); err == nil {
				if in, _ := v.Info(); in.Version.String() == head.Version {
					return
				}
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: the replica did not reach %s within a minute; follower %v", what, head.Version, last)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	converged("initial copy")
	for i := 5; i < 10; i++ {
		write(i)
	}
	converged("live")
	// break every connection of the source, write meanwhile, and again
	for round := range 3 {
		src.srv.CloseClientConnections()
		write(20 + round)
		converged(fmt.Sprintf("after break %d", round))
	}
	mu.Lock()
	if last.Reconnects < 1 {
		t.Errorf("follower status %v: no reconnect counted", last)
	}
	mu.Unlock()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow after cancel = %v", err)
	}
	// a fork: the replica's version is not in the source's history
	fork := newHost(t)
	fvi, _ := fork.c.Create(ctx(t), 1<<20)
	fid, _ := segment.ParseID(fvi.ID)
	rc, err := fork.c.Stream(ctx(t), fvi.ID, replicator.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Apply(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	other := &replicator.Client{URL: src.srv.URL, Secret: secret}
	err = replicator.Follow(ctx(t), replicator.FollowConfig{Store: dst, Source: other, Volume: fid})
	if !replicator.IsStatus(err, http.StatusNotFound) {
		t.Errorf("Follow of a volume the source lacks = %v, want 404 at once", err)
	}
}
