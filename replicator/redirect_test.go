package replicator_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/segtest"
)

// routedHost is a host whose Route sends every volume's blocks to *to
// ("" serves them here).
func routedHost(t *testing.T, to *atomic.Value) *host {
	t.Helper()
	_, st := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	h, err := replicator.NewHandler(replicator.Config{Store: hostStore{st}, Secret: secret,
		Route: func(segment.ID) string { return to.Load().(string) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &host{st: st, srv: srv, c: &replicator.Client{URL: srv.URL, Secret: secret}}
}

// TestRedirectToPrimary: block requests to a host that is not the primary
// are redirected there once, and the client follows with its secret; two
// hosts that each think the other is the primary answer 421, not a loop.
func TestRedirectToPrimary(t *testing.T) {
	var toA, toB atomic.Value
	toA.Store("")
	a := routedHost(t, &toA)
	toB.Store(a.srv.URL)
	b := routedHost(t, &toB)
	v, err := a.st.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	id := v.Base().String()
	data := randBytes(7, 8192)
	if err := b.c.WriteAt(ctx(t), id, data, 4096); err != nil {
		t.Fatalf("write through the non-primary: %v", err)
	}
	got := make([]byte, len(data))
	if err := b.c.ReadAt(ctx(t), id, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the non-primary: %v, equal %v", err, bytes.Equal(got, data))
	}
	if _, err := v.ReadAt(got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the write is not on the primary: %v", err)
	}
	if err := b.c.Flush(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if err := b.c.Discard(ctx(t), id, 4096, 4096); err != nil {
		t.Fatal(err)
	}
	// without following: a 307 to the same path on the primary
	req, _ := http.NewRequest("POST", b.srv.URL+"/v1/volumes/"+id+"/flush", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect ||
		loc != a.srv.URL+"/v1/volumes/"+id+"/flush?redirected=1" {
		t.Errorf("flush on the non-primary = %d Location %q", resp.StatusCode, loc)
	}
	// both think the other is the primary
	toA.Store(b.srv.URL)
	err = b.c.WriteAt(ctx(t), id, data, 0)
	if !replicator.IsStatus(err, http.StatusMisdirectedRequest) {
		t.Errorf("write between two hosts that point at each other = %v, want 421", err)
	}
}

// TestOrphanRefused: a block request for a volume with no primary serving
// it (a failover under way) gets 503 with Retry-After, not this host's copy;
// nothing is written.
func TestOrphanRefused(t *testing.T) {
	_, st := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	var orphan atomic.Bool
	orphan.Store(true)
	h, err := replicator.NewHandler(replicator.Config{Store: hostStore{st}, Secret: secret,
		Route: func(segment.ID) string { return "" }, Orphan: func(segment.ID) bool { return orphan.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := &replicator.Client{URL: srv.URL, Secret: secret}
	v, err := st.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	id := v.Base().String()
	before, _ := v.Info()
	buf := make([]byte, 4096)
	for name, err := range map[string]error{
		"read":    c.ReadAt(ctx(t), id, buf, 0),
		"write":   c.WriteAt(ctx(t), id, buf, 0),
		"flush":   c.Flush(ctx(t), id),
		"discard": c.Discard(ctx(t), id, 0, 4096),
	} {
		if !replicator.IsStatus(err, http.StatusServiceUnavailable) {
			t.Errorf("%s of an orphan = %v, want 503", name, err)
		}
	}
	if after, _ := v.Info(); after.Version != before.Version {
		t.Error("a request refused as an orphan's changed the volume")
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/volumes/"+id+"/blocks", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Range", "bytes=0-4095")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("read of an orphan = %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	orphan.Store(false) // a primary serves it: this host
	if err := c.WriteAt(ctx(t), id, buf, 0); err != nil {
		t.Errorf("write once served here: %v", err)
	}
}
