package replicator_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/segtest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const secret = "0123456789abcdef0123456789abcdef"

// host is one API server over a real store on a memory device.
type host struct {
	st  *segment.Store
	srv *httptest.Server
	c   *replicator.Client
	reg *prometheus.Registry
}

// hostStore is a store as a host without block devices has it: nothing is
// ever in use, so force changes nothing.
type hostStore struct{ *segment.Store }

func (h hostStore) Delete(base segment.ID, force bool) error { return h.Store.Delete(base) }

func newHost(t *testing.T) *host {
	t.Helper()
	_, st := segtest.NewStore(t, 256<<20, segment.Options{NoBackground: true})
	reg := prometheus.NewRegistry()
	h, err := replicator.NewHandler(replicator.Config{Store: hostStore{st}, Secret: secret, Metrics: reg,
		MaxBlockBytes: 1 << 20, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &host{st: st, srv: srv, reg: reg, c: &replicator.Client{URL: srv.URL, Secret: secret}}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// req sends a raw request and returns the status, headers and body.
func (h *host) req(t *testing.T, method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx(t), method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		r.Body, r.ContentLength = http.NoBody, 0
	}
	for k, v := range hdr {
		if k == "Content-Length" {
			if _, err := fmt.Sscan(v, &r.ContentLength); err != nil {
				t.Fatal(err)
			}
			continue
		}
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func auth(h map[string]string) map[string]string {
	out := map[string]string{"Authorization": "Bearer " + secret}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestAuth: /heads and /healthz are open; everything else needs the secret,
// and without it (or with a wrong one) gets 401 and changes nothing.
func TestAuth(t *testing.T) {
	h := newHost(t)
	vi, err := h.c.Create(ctx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	before := h.st.Heads()
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/volumes"}, {"POST", "/v1/volumes?size=4096"}, {"GET", "/v1/volumes/" + vi.ID},
		{"DELETE", "/v1/volumes/" + vi.ID}, {"POST", "/v1/versions/" + vi.Version + "/branch"},
		{"GET", "/v1/volumes/" + vi.ID + "/blocks"}, {"PUT", "/v1/volumes/" + vi.ID + "/blocks"},
		{"POST", "/v1/volumes/" + vi.ID + "/flush"}, {"GET", "/v1/volumes/" + vi.ID + "/stream"},
		{"PUT", "/v1/log"},
	} {
		for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": secret}} {
			code, rh, body := h.req(t, tc.method, tc.path, nil, hdr)
			if code != http.StatusUnauthorized || rh.Get("WWW-Authenticate") == "" || !bytes.Contains(body, []byte("secret")) {
				t.Errorf("%s %s with %v = %d %q, want 401 with WWW-Authenticate", tc.method, tc.path, hdr, code, body)
			}
		}
	}
	if got := h.st.Heads(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("heads changed by refused requests: %v, was %v", got, before)
	}
	code, rh, body := h.req(t, "GET", "/heads", nil, nil)
	want := vi.ID + ":" + vi.Version + "\n"
	if code != 200 || string(body) != want || rh.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET /heads = %d %q %q, want 200 %q", code, rh.Get("Content-Type"), body, want)
	}
	if code, _, _ := h.req(t, "GET", "/nope", nil, auth(nil)); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

// TestBlocks: writes with Content-Range, reads with standard Range
// semantics (inclusive ends, suffix, multipart, 416), discard and flush.
func TestBlocks(t *testing.T) {
	h := newHost(t)
	vi, err := h.c.Create(ctx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(1, 64<<10)
	if err := h.c.WriteAt(ctx(t), vi.ID, data, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := h.c.ReadAt(ctx(t), vi.ID, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt after WriteAt = %v, equal %v", err, bytes.Equal(got, data))
	}
	path := "/v1/volumes/" + vi.ID + "/blocks"
	// an unaligned byte range of a read is fine: bytes 4100..4199 inclusive
	code, rh, body := h.req(t, "GET", path, nil, auth(map[string]string{"Range": "bytes=4100-4199"}))
	if code != http.StatusPartialContent || !bytes.Equal(body, data[4:104]) ||
		rh.Get("Content-Range") != "bytes 4100-4199/1048576" || rh.Get("ETag") == "" {
		t.Errorf("GET Range 4100-4199 = %d %q %d bytes", code, rh.Get("Content-Range"), len(body))
	}
	code, _, body = h.req(t, "GET", path, nil, auth(map[string]string{"Range": "bytes=-10"}))
	if code != http.StatusPartialContent || len(body) != 10 {
		t.Errorf("GET suffix range = %d, %d bytes", code, len(body))
	}
	code, _, _ = h.req(t, "GET", path, nil, auth(map[string]string{"Range": "bytes=2000000-2000001"}))
	if code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("GET beyond the end = %d, want 416", code)
	}
	code, rh, body = h.req(t, "GET", path, nil, auth(map[string]string{"Range": "bytes=4096-4097,8192-8192"}))
	_, params, _ := mime.ParseMediaType(rh.Get("Content-Type"))
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts [][]byte
	for p, err := mr.NextPart(); err == nil; p, err = mr.NextPart() {
		b, _ := io.ReadAll(p)
		parts = append(parts, b)
	}
	if code != http.StatusPartialContent || len(parts) != 2 || !bytes.Equal(parts[0], data[:2]) || !bytes.Equal(parts[1], data[4096:4097]) {
		t.Errorf("GET two ranges = %d, parts %q", code, parts)
	}
	code, _, body = h.req(t, "GET", path, nil, auth(nil))
	if code != 200 || len(body) != 1<<20 || !bytes.Equal(body[4096:4096+len(data)], data) {
		t.Errorf("GET whole volume = %d, %d bytes", code, len(body))
	}
	// discard, then the range reads as zeros
	if code, _, b := h.req(t, "POST", "/v1/volumes/"+vi.ID+"/discard", nil, auth(map[string]string{"Range": "bytes=4096-8191"})); code != 204 {
		t.Errorf("discard = %d %q", code, b)
	}
	if err := h.c.ReadAt(ctx(t), vi.ID, got[:4096], 4096); err != nil || !bytes.Equal(got[:4096], make([]byte, 4096)) {
		t.Errorf("read after discard = %v, zeros %v", err, bytes.Equal(got[:4096], make([]byte, 4096)))
	}
	if err := h.c.Flush(ctx(t), vi.ID); err != nil {
		t.Errorf("flush: %v", err)
	}
	if code, _, _ := h.req(t, "PUT", path+"?fua=1", data[:512], auth(map[string]string{"Content-Range": "bytes 0-511/*"})); code != 204 {
		t.Errorf("PUT fua = %d", code)
	}
}

// TestBadBlockWrites: every malformed write gets a 4xx that says why, and the
// volume's version does not move.
func TestBadBlockWrites(t *testing.T) {
	h := newHost(t)
	vi, err := h.c.Create(ctx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/volumes/" + vi.ID + "/blocks"
	for _, tc := range []struct {
		name string
		path string
		body []byte
		hdr  map[string]string
		code int
		why  string
	}{
		{"no Content-Range", path, make([]byte, 512), nil, 400, "Content-Range"},
		{"Range instead", path, make([]byte, 512), map[string]string{"Range": "bytes=0-511"}, 400, "Content-Range"},
		{"unaligned start", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 1-512/*"}, 400, "sectors"},
		{"unaligned end", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 0-510/*"}, 400, "sectors"},
		{"exclusive end (the original's)", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 0-512/*"}, 400, "sectors"},
		{"reversed", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 511-0/*"}, 400, "first <= last"},
		{"garbage", path, make([]byte, 512), map[string]string{"Content-Range": "bytes x-y/*"}, 400, "first-last"},
		{"short body", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 0-1023/*"}, 400, "Content-Length"},
		{"long body", path, make([]byte, 1024), map[string]string{"Content-Range": "bytes 0-511/*"}, 400, "Content-Length"},
		{"huge", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 0-2097151/*"}, 413, "at most"},
		{"beyond the volume", path, make([]byte, 512), map[string]string{"Content-Range": "bytes 1048576-1049087/*"}, 416, "range"},
		{"bad volume id", "/v1/volumes/xyz/blocks", make([]byte, 512), map[string]string{"Content-Range": "bytes 0-511/*"}, 400, "40 hex"},
		{"unknown volume", "/v1/volumes/" + strings.Repeat("ab", 20) + "/blocks", make([]byte, 512), map[string]string{"Content-Range": "bytes 0-511/*"}, 404, "not found"},
	} {
		code, rh, body := h.req(t, "PUT", tc.path, tc.body, auth(tc.hdr))
		if code != tc.code || !strings.Contains(string(body), tc.why) || !strings.HasPrefix(rh.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: PUT = %d %q, want %d saying %q", tc.name, code, body, tc.code, tc.why)
		}
	}
	// a body that lies about its length (chunked, shorter than Content-Range)
	code, _, _ := h.req(t, "PUT", path, make([]byte, 100), auth(map[string]string{"Content-Range": "bytes 0-511/*", "Content-Length": "-1"}))
	if code != 400 {
		t.Errorf("chunked short body = %d, want 400", code)
	}
	for _, tc := range []struct{ method, path, query string }{
		{"POST", "/v1/volumes", "?size=0"}, {"POST", "/v1/volumes", "?size=1000"}, {"POST", "/v1/volumes", ""},
		{"GET", "/v1/volumes/" + vi.ID + "/stream", "?lsn=3"}, {"GET", "/v1/volumes/" + vi.ID + "/stream", "?from=zz"},
		{"GET", "/v1/volumes/" + vi.ID + "/stream", "?follow=maybe"}, {"POST", "/v1/versions/nothex/branch", ""},
	} {
		if code, _, body := h.req(t, tc.method, tc.path+tc.query, nil, auth(nil)); code != 400 {
			t.Errorf("%s %s%s = %d %q, want 400", tc.method, tc.path, tc.query, code, body)
		}
	}
	if after, err := h.c.Info(ctx(t), vi.ID); err != nil || after.Version != vi.Version || len(h.st.Heads()) != 1 {
		t.Errorf("bad requests changed the store: %v %+v", err, after)
	}
}

// TestStreamApply streams a volume from one host and applies it on another:
// same head; again from a version; a flipped byte is refused with 422 and
// changes nothing; a stream of a fork is refused with 409.
func TestStreamApply(t *testing.T) {
	a, b := newHost(t), newHost(t)
	vi, err := a.c.Create(ctx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := a.c.WriteAt(ctx(t), vi.ID, randBytes(uint64(i), 8192), int64(i)*8192); err != nil {
			t.Fatal(err)
		}
	}
	pipe := func(o replicator.StreamOptions) (replicator.ApplyResult, error) {
		rc, err := a.c.Stream(ctx(t), vi.ID, o)
		if err != nil {
			return replicator.ApplyResult{}, err
		}
		defer rc.Close()
		return b.c.Apply(ctx(t), rc)
	}
	res, err := pipe(replicator.StreamOptions{})
	if head, _ := a.c.Info(ctx(t), vi.ID); err != nil || res.Version != head.Version || res.Entries != 5 {
		t.Fatalf("apply = %+v, %v; head %v", res, err, head.Version)
	}
	mid, _ := a.c.Info(ctx(t), vi.ID)
	if err := a.c.WriteAt(ctx(t), vi.ID, randBytes(9, 4096), 0); err != nil {
		t.Fatal(err)
	}
	res, err = pipe(replicator.StreamOptions{From: mid.Version}) // the host locates the version
	if head, _ := a.c.Info(ctx(t), vi.ID); err != nil || res.Version != head.Version || res.Entries != 1 {
		t.Fatalf("apply from a version = %+v, %v; head %v", res, err, head.Version)
	}
	ha, _ := a.c.Heads(ctx(t))
	hb, _ := b.c.Heads(ctx(t))
	if fmt.Sprint(ha) != fmt.Sprint(hb) {
		t.Errorf("heads differ: %v and %v", ha, hb)
	}
	if bi, _ := b.c.Info(ctx(t), vi.ID); bi.Role != "replica" {
		t.Errorf("role on the receiver = %q, want replica", bi.Role)
	}

	// the next entry, with one byte flipped in its body
	before, _ := b.c.Info(ctx(t), vi.ID)
	if err := a.c.WriteAt(ctx(t), vi.ID, randBytes(10, 4096), 0); err != nil {
		t.Fatal(err)
	}
	rc, err := a.c.Stream(ctx(t), vi.ID, replicator.StreamOptions{From: before.Version, LSN: before.LSN})
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(rc)
	rc.Close()
	stream[len(stream)-100] ^= 1
	code, _, body := b.req(t, "PUT", "/v1/log", stream, auth(nil))
	if after, _ := b.c.Info(ctx(t), vi.ID); code != http.StatusUnprocessableEntity || after.Version != before.Version {
		t.Errorf("flipped byte: PUT /v1/log = %d %q, version %v (was %v)", code, body, after.Version, before.Version)
	}
	code, _, _ = b.req(t, "PUT", "/v1/log", stream[:100], auth(nil))
	if code != 400 {
		t.Errorf("truncated stream header = %d, want 400", code)
	}
	// the receiver writes nothing of its own (no token); a fork is refused:
	// stream from a version b does not have at that lsn
	if _, err := pipe(replicator.StreamOptions{From: strings.Repeat("00", 19) + "01", LSN: 2}); !replicator.IsStatus(err, http.StatusConflict) {
		t.Errorf("stream from a foreign version = %v, want 409", err)
	}
	if err := b.c.WriteAt(ctx(t), vi.ID, make([]byte, 512), 0); !replicator.IsStatus(err, http.StatusConflict) {
		t.Errorf("write on a replica = %v, want 409 (read-only)", err)
	}
}

// TestFollowHTTP: a followed stream carries each new write as it commits.
func TestFollowHTTP(t *testing.T) {
	a, b := newHost(t), newHost(t)
	vi, err := a.c.Create(ctx(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	rc, err := a.c.Stream(c, vi.ID, replicator.StreamOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	// apply as it comes: an Apply of a followed stream ends only when the
	// stream does, so read whole entries and apply each round separately
	hb := make([]byte, segment.HeaderSize)
	if _, err := io.ReadFull(rc, hb); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if i > 0 {
			if err := a.c.WriteAt(ctx(t), vi.ID, randBytes(uint64(i), 4096), 0); err != nil {
				t.Fatal(err)
			}
		}
		eh := make([]byte, segment.HeaderSize)
		if _, err := io.ReadFull(rc, eh); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		h, err := segment.DecodeWireHeader(eh)
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(h.NBody)*segment.SectorSize)
		if _, err := io.ReadFull(rc, body); err != nil {
			t.Fatal(err)
		}
		if head, _ := a.c.Info(ctx(t), vi.ID); h.ID.String() != head.Version {
			t.Fatalf("followed entry %d is %v, head %v", i, h.ID, head.Version)
		}
		// a stream of just this entry applies on b
		sh := hb
		if i > 0 {
			bi, _ := b.c.Info(ctx(t), vi.ID)
			rc2, err := a.c.Stream(ctx(t), vi.ID, replicator.StreamOptions{From: bi.Version, LSN: bi.LSN})
			if err != nil {
				t.Fatal(err)
			}
			sh = make([]byte, segment.HeaderSize)
			if _, err := io.ReadFull(rc2, sh); err != nil {
				t.Fatal(err)
			}
			rc2.Close()
		}
		if _, err := b.c.Apply(ctx(t), io.MultiReader(bytes.NewReader(sh), bytes.NewReader(eh), bytes.NewReader(body))); err != nil {
			t.Fatalf("apply followed entry %d: %v", i, err)
		}
	}
	cancel()
	rc.Close()
	ha, _ := a.c.Heads(ctx(t))
	hb2, _ := b.c.Heads(ctx(t))
	if fmt.Sprint(ha) != fmt.Sprint(hb2) {
		t.Errorf("heads differ after following: %v and %v", ha, hb2)
	}
}

// TestBranchDelete: a branch reads its version's data; delete removes a
// volume (404 after).
func TestBranchDelete(t *testing.T) {
	h := newHost(t)
	vi, _ := h.c.Create(ctx(t), 1<<20)
	data := randBytes(3, 4096)
	if err := h.c.WriteAt(ctx(t), vi.ID, data, 0); err != nil {
		t.Fatal(err)
	}
	head, _ := h.c.Info(ctx(t), vi.ID)
	br, err := h.c.Branch(ctx(t), head.Version)
	if err != nil || br.Parent != head.Version || br.Role != "primary" {
		t.Fatalf("branch = %+v, %v", br, err)
	}
	if err := h.c.WriteAt(ctx(t), vi.ID, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := h.c.ReadAt(ctx(t), br.ID, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("branch reads %v, equal %v", err, bytes.Equal(got, data))
	}
	if _, err := h.c.Branch(ctx(t), strings.Repeat("cd", 20)); !replicator.IsStatus(err, http.StatusConflict) &&
		!replicator.IsStatus(err, http.StatusNotFound) {
		t.Errorf("branch of an unknown version = %v, want 409 or 404", err)
	}
	if err := h.c.Delete(ctx(t), br.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Info(ctx(t), br.ID); !replicator.IsStatus(err, http.StatusNotFound) {
		t.Errorf("info after delete = %v, want 404", err)
	}
	vols, err := h.c.Volumes(ctx(t))
	if err != nil || len(vols) != 1 || vols[0].ID != vi.ID {
		t.Errorf("volumes = %+v, %v", vols, err)
	}
}

// TestMetricsLint: the API's metrics pass the Prometheus linter and count
// requests by endpoint and code.
func TestMetricsLint(t *testing.T) {
	h := newHost(t)
	h.req(t, "GET", "/heads", nil, nil)
	h.req(t, "GET", "/v1/volumes", nil, nil)
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(`
# HELP cloudfs_replicator_http_requests_total HTTP API requests, by endpoint and status code.
# TYPE cloudfs_replicator_http_requests_total counter
cloudfs_replicator_http_requests_total{code="200",endpoint="heads"} 1
cloudfs_replicator_http_requests_total{code="401",endpoint="volumes"} 1
`), "cloudfs_replicator_http_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := replicator.NewHandler(replicator.Config{Secret: secret}); err == nil {
		t.Error("NewHandler without a store succeeded")
	}
	_, st := segtest.NewStore(t, 64<<20, segment.Options{NoBackground: true})
	if _, err := replicator.NewHandler(replicator.Config{Store: hostStore{st}, Secret: "short"}); err == nil {
		t.Error("NewHandler with a short secret succeeded")
	}
}
