package replicator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"cloudfs/segment"
)

// StreamContentType is the media type of a stream of entries
// (docs/FORMAT.md "Streams").
const StreamContentType = "application/vnd.cloudfs.stream"

// stream answers GET /v1/volumes/{id}/stream: the volume's entries after a
// version (from=<version>, and lsn=<n> if the caller knows it; neither: from
// the volume's creation), up to its head; with follow=1 the response then
// stays open and carries each new entry as it is committed.
func (s *server) stream(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	from, err := s.position(r, id)
	if err != nil {
		return err
	}
	follow, err := boolParam(r, "follow")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", StreamContentType)
	if v, err := s.cfg.Store.Volume(id); err == nil {
		if in, err := v.Info(); err == nil {
			w.Header().Set("Cloudfs-Head-Lsn", strconv.FormatUint(in.LSN, 10))
		}
	}
	if lag, ok := s.cfg.Acks.lagBytes(id, from.LSN); ok {
		w.Header().Set("Cloudfs-Lag-Bytes", strconv.FormatInt(lag, 10))
	}
	fw := &flushWriter{w: w, rc: http.NewResponseController(w), d: s.cfg.IdleTimeout}
	var st segment.StreamStats
	if follow {
		st, err = s.cfg.Store.Follow(r.Context(), fw, id, from)
	} else {
		st, err = s.cfg.Store.Stream(fw, id, from)
	}
	s.met.streamBytes.WithLabelValues("out").Add(float64(fw.n))
	s.log.Debug("stream ended", "volume", id, "from_lsn", from.LSN, "entries", st.Entries, "bytes", fw.n, "err", err)
	if fw.n > 0 && r.Context().Err() != nil {
		return nil // the follower went away or the server is stopping: a normal end
	}
	return err
}

// position parses from= and lsn= into a stream's starting point.
func (s *server) position(r *http.Request, base segment.ID) (segment.Position, error) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		if q.Get("lsn") != "" {
			return segment.Position{}, errf(http.StatusBadRequest, "lsn= needs from=<version> too")
		}
		return segment.Position{}, nil
	}
	version, err := segment.ParseID(q.Get("from"))
	if err != nil {
		return segment.Position{}, errf(http.StatusBadRequest, "from=%q: want a version id of 40 hex digits", q.Get("from"))
	}
	if q.Get("lsn") == "" {
		return s.cfg.Store.Locate(base, version)
	}
	lsn, err := strconv.ParseUint(q.Get("lsn"), 10, 64)
	if err != nil || lsn == 0 {
		return segment.Position{}, errf(http.StatusBadRequest, "lsn=%q: want a positive number", q.Get("lsn"))
	}
	return segment.Position{LSN: lsn, Version: version}, nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errf(http.StatusBadRequest, "%s=%q: want 1 or 0", name, v)
	}
	return b, nil
}

// flushWriter sends every Write to the client at once (the store writes a
// stream in rounds of whole entries) and cuts a client that stops reading.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
	n  int64
}

func (fw *flushWriter) Write(p []byte) (int, error) {
	_ = fw.rc.SetWriteDeadline(time.Now().Add(fw.d)) // not supported: no deadline
	n, err := fw.w.Write(p)
	fw.n += int64(n)
	if err != nil {
		return n, err
	}
	return n, fw.rc.Flush()
}

// ApplyResult is the answer to PUT /v1/log.
type ApplyResult struct {
	Volume  string `json:"volume"`
	Version string `json:"version"` // the volume's head after the apply
	LSN     uint64 `json:"lsn"`
	Entries int    `json:"entries"` // entries appended
	Skipped int    `json:"skipped"` // entries this host already had
	Bytes   int64  `json:"bytes"`
}

// apply answers PUT /v1/log: the body is a stream (as GET .../stream sends
// it); every entry is verified before it is appended. A stream that does not
// verify is refused (4xx) and, up to 64 MiB of entries, changes nothing; a
// longer one leaves the volume at its last verified chunk, a version of the
// sender's history.
func (s *server) apply(w http.ResponseWriter, r *http.Request) error {
	body := s.idleReader(w, http.MaxBytesReader(w, r.Body, s.cfg.MaxLogBytes))
	hb := make([]byte, segment.HeaderSize)
	if _, err := io.ReadFull(body, hb); err != nil {
		return errf(http.StatusBadRequest, "stream header: %v", err)
	}
	sh, err := segment.DecodeStreamHeader(hb)
	if err != nil {
		s.met.rejected.Inc()
		return err
	}
	st, err := s.cfg.Store.Apply(io.MultiReader(bytes.NewReader(hb), body))
	s.met.streamBytes.WithLabelValues("in").Add(float64(st.Bytes))
	if err != nil {
		if errors.Is(err, segment.ErrCorrupt) || errors.Is(err, segment.ErrLink) {
			s.met.rejected.Inc()
		}
		if st.Entries > 0 {
			err = fmt.Errorf("%d entries applied, then: %w", st.Entries, err)
		}
		s.log.Warn("stream refused", "volume", sh.Base, "applied", st.Entries, "err", err)
		return err
	}
	res := ApplyResult{Volume: sh.Base.String(), Entries: st.Entries, Skipped: st.Skipped, Bytes: st.Bytes}
	if v, err := s.cfg.Store.Volume(sh.Base); err == nil {
		if in, err := v.Info(); err == nil {
			res.Version, res.LSN = in.Version.String(), in.LSN
		}
	}
	return writeJSON(w, http.StatusOK, res)
}

// Ack is a replica's acknowledgement: the volume is durably in its log up
// to LSN, whose version id is Version.
type Ack struct {
	Host    string `json:"host"`
	LSN     uint64 `json:"lsn"`
	Version string `json:"version"`
}

// ack answers POST /v1/volumes/{id}/ack: a replica reports how far it has
// durably logged the volume (after every applied batch, and every second
// as a heartbeat). 409 if this host is not the volume's primary, 403 if the
// sender does not keep it.
func (s *server) ack(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var a Ack
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&a); err != nil {
		return errf(http.StatusBadRequest, "ack: want JSON {\"host\", \"lsn\", \"version\"}: %v", err)
	}
	ver, err := segment.ParseID(a.Version)
	if err != nil || a.Host == "" {
		return errf(http.StatusBadRequest, "ack: host %q version %q: want a host id and 40 hex digits", a.Host, a.Version)
	}
	if s.cfg.Acks == nil {
		return fmt.Errorf("volume %v: this host runs without replication: %w", id, ErrNotPrimary)
	}
	if err := s.cfg.Acks.Ack(id, a.Host, segment.Position{LSN: a.LSN, Version: ver}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
