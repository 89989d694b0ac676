package replicator_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/device"
	"cloudfs/segment/segtest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakePeer serves stream for every stream request and takes every
// acknowledgement: a peer that sends whatever it likes.
func fakePeer(t *testing.T, stream []byte) *replicator.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", replicator.StreamContentType)
			_, _ = w.Write(stream)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return &replicator.Client{URL: srv.URL, Secret: secret}
}

func streamOf(t *testing.T, st *segment.Store, base segment.ID, from segment.Position) []byte {
	var b bytes.Buffer
	if _, err := st.Stream(&b, base, from); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFollowRefusesBadPeer: a peer that sends an entry whose bytes do not
// verify, or an entry that does not extend the replica's history (a fork),
// is refused: Follow stops with ErrCorrupt or ErrLink at once (retrying
// cannot cure it), the refusal is counted by reason, and the replica's
// volume is unchanged.
func TestFollowRefusesBadPeer(t *testing.T) {
	devA, a := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	v, err := a.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	base := v.Base()
	if _, err := v.WriteAt(randBytes(1, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(randBytes(2, 4096), 4096); err != nil { // lost in a's crash below
		t.Fatal(err)
	}
	_, b := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	if _, err := b.Apply(bytes.NewReader(streamOf(t, a, base, segment.Position{}))); err != nil {
		t.Fatal(err)
	}
	atB := position(t, mustVolume(t, b, base))
	if _, err := v.WriteAt(randBytes(3, 8192), 8192); err != nil {
		t.Fatal(err)
	}
	// corrupt: the next entry with one byte of its data flipped
	corrupt := streamOf(t, a, base, atB)
	corrupt[segment.HeaderSize+segment.HeaderSize+100] ^= 1
	// a fork: a crashed and restarted a writes another entry at atB's lsn
	a2 := segtest.Open(t, devA.CrashClone(device.CrashCfg{UnsyncedPercent: 0}), segment.Options{NoBackground: true})
	v2 := mustVolume(t, a2, base)
	if _, err := v2.WriteAt(randBytes(4, 4096), 12288); err != nil {
		t.Fatal(err)
	}
	forked := streamOf(t, a2, base, segment.Position{})

	reg := prometheus.NewRegistry()
	fm := replicator.NewFollowMetrics(reg)
	for _, tc := range []struct {
		name   string
		stream []byte
		want   error
	}{
		{"corrupt", corrupt, segment.ErrCorrupt},
		{"link", forked, segment.ErrLink},
	} {
		heads := b.Heads()
		err := replicator.Follow(ctx(t), replicator.FollowConfig{Store: b, Source: fakePeer(t, tc.stream), Volume: base,
			Self: "b", Metrics: fm})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Follow = %v, want %v at once", tc.name, err, tc.want)
		}
		if got := b.Heads(); !slices.Equal(got, heads) {
			t.Errorf("%s: the refused stream changed the replica: %v, was %v", tc.name, got, heads)
		}
		if n := testutil.ToFloat64(fm.Rejected(tc.name)); n != 1 {
			t.Errorf("%s: cloudfs_follow_rejected_total{reason=%q} = %v, want 1", tc.name, tc.name, n)
		}
	}
	// the genuine delta still applies
	if _, err := b.Apply(bytes.NewReader(streamOf(t, a, base, atB))); err != nil {
		t.Fatalf("the good stream after the bad ones: %v", err)
	}
}

func mustVolume(t *testing.T, st *segment.Store, base segment.ID) *segment.Volume {
	v, err := st.Volume(base)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
