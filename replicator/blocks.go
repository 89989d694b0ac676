package replicator

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cloudfs/segment"
)

// readBlocks answers GET /v1/volumes/{id}/blocks with standard HTTP range
// semantics (RFC 9110: inclusive ends, suffix ranges, multipart for several
// ranges, 416 beyond the end); without a Range header it returns the whole
// volume. The ETag is the version the read started at.
func (s *server) readBlocks(w http.ResponseWriter, r *http.Request) error {
	v, err := s.blockVolume(w, r)
	if err != nil {
		return err
	}
	in, err := v.Info()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+in.Version.String()+`"`)
	vr := &volumeReader{v: v, size: int64(in.Size)}
	// a client that stops reading is cut after IdleTimeout
	iw := &idleWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: s.cfg.IdleTimeout}
	http.ServeContent(iw, r, "", time.Time{}, vr)
	if vr.err != nil && !errors.Is(vr.err, io.EOF) {
		s.log.Warn("read failed", "volume", in.Base, "err", vr.err)
	}
	return nil
}

// volumeReader is an io.ReadSeeker over a volume for http.ServeContent: it
// reads whole sectors, up to 1 MiB ahead, and serves any byte range.
type volumeReader struct {
	v     *segment.Volume
	size  int64
	pos   int64
	buf   []byte
	bufAt int64 // volume offset of buf[0]
	err   error
}

const readAhead = 1 << 20

func (vr *volumeReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += vr.pos
	case io.SeekEnd:
		off += vr.size
	}
	if off < 0 {
		return 0, errors.New("seek before the start")
	}
	vr.pos = off
	return off, nil
}

func (vr *volumeReader) Read(p []byte) (int, error) {
	if vr.pos >= vr.size {
		return 0, io.EOF
	}
	if vr.pos < vr.bufAt || vr.pos >= vr.bufAt+int64(len(vr.buf)) {
		start := vr.pos &^ (segment.SectorSize - 1)
		n := min(int64(readAhead), vr.size-start)
		if vr.buf == nil {
			vr.buf = make([]byte, readAhead)
		}
		vr.buf = vr.buf[:n]
		if _, err := vr.v.ReadAt(vr.buf, start); err != nil {
			vr.buf, vr.err = vr.buf[:0], err
			return 0, err
		}
		vr.bufAt = start
	}
	n := copy(p, vr.buf[vr.pos-vr.bufAt:])
	vr.pos += int64(n)
	return n, nil
}

// writeBlocks answers PUT /v1/volumes/{id}/blocks: the body is written at the
// range its Content-Range header names ("bytes first-last/*" or
// "bytes first-last/size", inclusive, sector aligned). The whole body is read
// before anything is written, so a short or oversized body changes nothing.
// ?fua=1 makes the write durable before the answer.
func (s *server) writeBlocks(w http.ResponseWriter, r *http.Request) error {
	v, err := s.blockVolume(w, r)
	if err != nil {
		return err
	}
	off, n, err := parseContentRange(r.Header.Get("Content-Range"))
	if err != nil {
		return err
	}
	if n > s.cfg.MaxBlockBytes {
		return errf(http.StatusRequestEntityTooLarge, "a block write carries at most %d bytes, this one %d",
			s.cfg.MaxBlockBytes, n)
	}
	if r.ContentLength >= 0 && r.ContentLength != n {
		return errf(http.StatusBadRequest, "Content-Length %d does not match Content-Range's %d bytes", r.ContentLength, n)
	}
	buf := make([]byte, n)
	body := s.idleReader(w, http.MaxBytesReader(w, r.Body, n+1))
	if _, err := io.ReadFull(body, buf); err != nil {
		return errf(http.StatusBadRequest, "body shorter than the %d bytes of Content-Range: %v", n, err)
	}
	if m, _ := body.Read(make([]byte, 1)); m > 0 {
		return errf(http.StatusBadRequest, "body longer than the %d bytes of Content-Range", n)
	}
	rv := s.cfg.Acks.Volume(v)
	if err := wait(func(done func(error)) { rv.WriteAsync(buf, off, r.URL.Query().Get("fua") == "1", done) }); err != nil {
		return s.moved(w, r, v.Base(), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// discard answers POST /v1/volumes/{id}/discard: the single range of its
// Range header ("bytes=first-last", sector aligned) reads as zeros after.
func (s *server) discard(w http.ResponseWriter, r *http.Request) error {
	v, err := s.blockVolume(w, r)
	if err != nil {
		return err
	}
	off, n, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		return err
	}
	if err := s.cfg.Acks.Volume(v).WriteZeroes(off, n); err != nil {
		return s.moved(w, r, v.Base(), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// flush answers POST /v1/volumes/{id}/flush: every write acknowledged before
// it is durable when it answers.
func (s *server) flush(w http.ResponseWriter, r *http.Request) error {
	v, err := s.blockVolume(w, r)
	if err != nil {
		return err
	}
	if err := s.cfg.Acks.Volume(v).Flush(); err != nil {
		return s.moved(w, r, v.Base(), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// moved answers a block write that failed because the volume has just
// been handed over (ErrNotPrimary, ErrReadOnly) with a redirect to its new
// primary, if the catalog names one; other errors stay as they are.
func (s *server) moved(w http.ResponseWriter, r *http.Request, base segment.ID, err error) error {
	if s.cfg.Route == nil || (!errors.Is(err, ErrNotPrimary) && !errors.Is(err, segment.ErrReadOnly)) {
		return err
	}
	primary := s.cfg.Route(base)
	if primary == "" || r.URL.Query().Get("redirected") != "" {
		return err
	}
	q := r.URL.Query()
	q.Set("redirected", "1")
	w.Header().Set("Location", strings.TrimSuffix(primary, "/")+r.URL.Path+"?"+q.Encode())
	w.WriteHeader(http.StatusTemporaryRedirect)
	return errRedirected
}

// errRedirected: the request was answered with a redirect to the primary.
var errRedirected = errors.New("redirected")

// blockVolume returns the volume of a block request, or, if another host is
// its primary, answers with a redirect there (307: same method and body)
// and errRedirected. A request that was redirected already and still finds
// itself on the wrong host gets 421: two hosts that disagree about the
// primary (the catalog moving) cannot send a client round in circles.
func (s *server) blockVolume(w http.ResponseWriter, r *http.Request) (*segment.Volume, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	if s.cfg.Route != nil {
		if primary := s.cfg.Route(id); primary != "" {
			q := r.URL.Query()
			if q.Get("redirected") != "" {
				return nil, errf(http.StatusMisdirectedRequest,
					"volume %v: redirected here, but this host is not its primary either (the catalog says %s); retry",
					id, primary)
			}
			q.Set("redirected", "1")
			w.Header().Set("Location", strings.TrimSuffix(primary, "/")+r.URL.Path+"?"+q.Encode())
			w.WriteHeader(http.StatusTemporaryRedirect)
			return nil, errRedirected
		}
	}
	if s.cfg.Orphan != nil && s.cfg.Orphan(id) {
		w.Header().Set("Retry-After", "1")
		return nil, errf(http.StatusServiceUnavailable,
			"volume %v: no primary serves it now (its primary's lease expired; a failover is under way); retry", id)
	}
	return s.cfg.Store.Volume(id)
}

func wait(f func(done func(error))) error {
	ch := make(chan error, 1)
	f(func(err error) { ch <- err })
	return <-ch
}

// parseContentRange parses "bytes first-last/*" or "bytes first-last/size"
// into a sector-aligned offset and length.
func parseContentRange(h string) (off, n int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	rng, _, ok2 := strings.Cut(spec, "/")
	if h == "" || !ok || !ok2 {
		return 0, 0, errf(http.StatusBadRequest,
			"Content-Range %q: a block write needs \"Content-Range: bytes first-last/*\"", h)
	}
	return parseSpan(rng, "Content-Range", h)
}

// parseRange parses a single "bytes=first-last" range.
func parseRange(h string) (off, n int64, err error) {
	rng, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(rng, ",") {
		return 0, 0, errf(http.StatusBadRequest, "Range %q: want one \"bytes=first-last\" range", h)
	}
	return parseSpan(rng, "Range", h)
}

// parseSpan parses "first-last" (inclusive) and checks sector alignment.
func parseSpan(rng, name, h string) (off, n int64, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(rng), "-")
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || first < 0 || last < first {
		return 0, 0, errf(http.StatusBadRequest, "%s %q: want first-last byte offsets, first <= last", name, h)
	}
	off, n = first, last-first+1
	if off%segment.SectorSize != 0 || n%segment.SectorSize != 0 {
		return 0, 0, errf(http.StatusBadRequest, "%s %q: %s", name, h, fmt.Sprintf(
			"writes cover whole %d-byte sectors: first a multiple of %d, last one less than a multiple",
			segment.SectorSize, segment.SectorSize))
	}
	return off, n, nil
}

// idleReader returns r with a read deadline pushed IdleTimeout ahead before
// every Read: a body that stalls is cut, a long one that flows is not.
func (s *server) idleReader(w http.ResponseWriter, r io.Reader) io.Reader {
	return &deadlineReader{r: r, rc: http.NewResponseController(w), d: s.cfg.IdleTimeout}
}

type deadlineReader struct {
	r  io.Reader
	rc *http.ResponseController
	d  time.Duration
}

func (dr *deadlineReader) Read(p []byte) (int, error) {
	_ = dr.rc.SetReadDeadline(time.Now().Add(dr.d)) // not supported: no deadline
	return dr.r.Read(p)
}

// idleWriter pushes the write deadline IdleTimeout ahead before every Write.
type idleWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) // not supported: no deadline
	return w.ResponseWriter.Write(p)
}
