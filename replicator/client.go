package replicator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"cloudfs/replicator/cluster"
)

// Client talks to a host's HTTP API. Its methods are safe for concurrent use.
type Client struct {
	// URL is the host's API, e.g. "http://127.0.0.1:8090".
	URL    string
	Secret string
	HTTP   *http.Client // nil: http.DefaultClient
}

// APIError is an answer of the API other than success: its status code and
// the one-line reason the host gave.
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// IsStatus reports whether err is an APIError with status code.
func IsStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// do sends a request and returns a successful answer. It follows one
// redirect (a host that is not a volume's primary sends its block requests
// to the primary) itself, keeping the secret, when the body can be sent
// again; a second redirect is an error, so a loop is impossible.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	target := strings.TrimSuffix(c.URL, "/") + path
	var resp *http.Response
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, method, target, body)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if c.Secret != "" {
			req.Header.Set("Authorization", "Bearer "+c.Secret)
		}
		resp, err = c.noRedirects().Do(req)
		if err != nil {
			return nil, err
		}
		loc, err := resp.Location()
		seeker, replayable := body.(io.Seeker)
		if body == nil {
			replayable = true
		}
		if hop > 0 || err != nil || !replayable ||
			(resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect) {
			break
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if seeker != nil {
			if _, err := seeker.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
		}
		target = loc.String()
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &APIError{Code: resp.StatusCode, Message: strings.TrimSpace(strings.TrimPrefix(string(msg), "cloudfs: "))}
	}
	return resp, nil
}

// noRedirects is the client's http.Client, made to hand redirects back to
// do (net/http would drop the secret on a redirect to another host).
func (c *Client) noRedirects() *http.Client {
	hc := http.DefaultClient
	if c.HTTP != nil {
		hc = c.HTTP
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func (c *Client) json(ctx context.Context, method, path string, out any) error {
	resp, err := c.do(ctx, method, path, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Heads returns the host's "base:version" lines.
func (c *Client) Heads(ctx context.Context) ([]string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/heads", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// Hosts returns the live hosts of the cluster.
func (c *Client) Hosts(ctx context.Context) ([]cluster.Host, error) {
	var out []cluster.Host
	return out, c.json(ctx, http.MethodGet, "/v1/hosts", &out)
}

// Volumes returns every volume of the host.
func (c *Client) Volumes(ctx context.Context) ([]VolumeInfo, error) {
	var out []VolumeInfo
	return out, c.json(ctx, http.MethodGet, "/v1/volumes", &out)
}

// Info returns one volume.
func (c *Client) Info(ctx context.Context, id string) (VolumeInfo, error) {
	var out VolumeInfo
	return out, c.json(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(id), &out)
}

// LocalInfo returns the host's own copy of a volume, without asking the
// other hosts that keep it.
func (c *Client) LocalInfo(ctx context.Context, id string) (VolumeInfo, error) {
	var out VolumeInfo
	return out, c.json(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(id)+"?local=1", &out)
}

// Create makes a volume of size bytes on this host alone.
func (c *Client) Create(ctx context.Context, size uint64) (VolumeInfo, error) {
	return c.CreateReplicated(ctx, size, 1, "")
}

// CreateReplicated makes a volume of size bytes on n hosts of the cluster
// (0: the default count) replicated in mode ("": the default for n).
func (c *Client) CreateReplicated(ctx context.Context, size uint64, n int, mode string) (VolumeInfo, error) {
	var out VolumeInfo
	path := "/v1/volumes?size=" + strconv.FormatUint(size, 10) + "&replicas=" + strconv.Itoa(n)
	if mode != "" {
		path += "&mode=" + url.QueryEscape(mode)
	}
	return out, c.json(ctx, http.MethodPost, path, &out)
}

// Branch makes a writable volume whose contents are version.
func (c *Client) Branch(ctx context.Context, version string) (VolumeInfo, error) {
	var out VolumeInfo
	return out, c.json(ctx, http.MethodPost, "/v1/versions/"+url.PathEscape(version)+"/branch", &out)
}

// Delete removes a volume from the host; force even if its device is open.
func (c *Client) Delete(ctx context.Context, id string, force bool) error {
	path := "/v1/volumes/" + url.PathEscape(id)
	if force {
		path += "?force=1"
	}
	return c.json(ctx, http.MethodDelete, path, nil)
}

// StreamOptions say where a stream starts and whether it follows the head.
type StreamOptions struct {
	From   string // version id; "" for the volume's creation
	LSN    uint64 // From's lsn if known (0: the host looks it up)
	Follow bool
}

// Stream opens a stream of a volume's entries; the caller reads and closes it.
func (c *Client) Stream(ctx context.Context, id string, o StreamOptions) (io.ReadCloser, error) {
	rs, err := c.OpenStream(ctx, id, o)
	if err != nil {
		return nil, err
	}
	return rs.Body, nil
}

// OpenedStream is a stream with what its sender said of it.
type OpenedStream struct {
	Body    io.ReadCloser
	HeadLSN uint64 // the volume's lsn on the sender when the stream began
	// LagBytes is the data the sender wrote after the stream's start, as
	// far as it remembers (-1: it does not know).
	LagBytes int64
}

// OpenStream opens a stream of a volume's entries; the caller reads and
// closes its Body.
func (c *Client) OpenStream(ctx context.Context, id string, o StreamOptions) (OpenedStream, error) {
	q := url.Values{}
	if o.From != "" {
		q.Set("from", o.From)
	}
	if o.LSN != 0 {
		q.Set("lsn", strconv.FormatUint(o.LSN, 10))
	}
	if o.Follow {
		q.Set("follow", "1")
	}
	path := "/v1/volumes/" + url.PathEscape(id) + "/stream"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return OpenedStream{}, err
	}
	rs := OpenedStream{Body: resp.Body, LagBytes: -1}
	rs.HeadLSN, _ = strconv.ParseUint(resp.Header.Get("Cloudfs-Head-Lsn"), 10, 64)
	if lb, err := strconv.ParseInt(resp.Header.Get("Cloudfs-Lag-Bytes"), 10, 64); err == nil {
		rs.LagBytes = lb
	}
	return rs, nil
}

// Apply sends a stream to the host, which verifies and appends it.
func (c *Client) Apply(ctx context.Context, stream io.Reader) (ApplyResult, error) {
	var out ApplyResult
	resp, err := c.do(ctx, http.MethodPut, "/v1/log", stream, http.Header{"Content-Type": {StreamContentType}})
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// WriteAt writes p (whole sectors) at byte offset off of a volume.
func (c *Client) WriteAt(ctx context.Context, id string, p []byte, off int64) error {
	hdr := http.Header{"Content-Range": {fmt.Sprintf("bytes %d-%d/*", off, off+int64(len(p))-1)},
		"Content-Type": {"application/octet-stream"}}
	resp, err := c.do(ctx, http.MethodPut, "/v1/volumes/"+url.PathEscape(id)+"/blocks", bytes.NewReader(p), hdr)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// ReadAt reads len(p) bytes at byte offset off of a volume.
func (c *Client) ReadAt(ctx context.Context, id string, p []byte, off int64) error {
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)}}
	resp, err := c.do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(id)+"/blocks", nil, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadFull(resp.Body, p)
	return err
}

// Flush makes every acknowledged write of a volume durable.
func (c *Client) Flush(ctx context.Context, id string) error {
	return c.json(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/flush", nil)
}

// Discard makes n bytes at off of a volume read as zeros.
func (c *Client) Discard(ctx context.Context, id string, off, n int64) error {
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/discard", nil, hdr)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Ack tells the volume's primary how far this replica has it durably.
func (c *Client) Ack(ctx context.Context, id string, a Ack) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/ack", bytes.NewReader(b),
		http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
