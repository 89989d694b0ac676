package replicator

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"cloudfs/segment"
)

var (
	// ErrConfig: a Config is missing something it needs.
	ErrConfig = errors.New("replicator: bad config")
	// ErrUnauthorized: the request did not carry the cluster secret.
	ErrUnauthorized = errors.New("replicator: missing or wrong cluster secret")
	// ErrBusy: the volume is in use on this host (its block device is
	// open); a Store returns it to refuse a delete. Answered with 409.
	ErrBusy = errors.New("volume is in use")
	// ErrPlacement: a volume cannot get the replicas asked for (too few live
	// hosts). Answered with 409.
	ErrPlacement = errors.New("placement")
	// ErrNoQuorum: too few replicas acknowledged a write within the ack
	// timeout (quorum mode); the write may or may not survive. Answered
	// with 503.
	ErrNoQuorum = errors.New("no quorum of replicas acknowledged")
	// ErrNotPrimary: this host is not the volume's primary (an
	// acknowledgement sent to the wrong host, or a write waiting when the
	// host stopped being primary). Answered with 409.
	ErrNotPrimary = errors.New("not the volume's primary")
	// ErrNotReplica: a host that does not keep the volume sent an
	// acknowledgement for it. Answered with 403.
	ErrNotReplica = errors.New("not a replica of the volume")
)

var errUnauthorized = &httpError{code: http.StatusUnauthorized, err: ErrUnauthorized}

func errConfig(what string) error { return fmt.Errorf("%w: %s", ErrConfig, what) }

// httpError is an error with the status code it is answered with.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

// WithStatus returns err, answered by the API with status code (for the
// functions a Config plugs in).
func WithStatus(code int, err error) error { return &httpError{code: code, err: err} }

// errf returns an error answered with status code.
func errf(code int, format string, args ...any) error {
	return &httpError{code: code, err: fmt.Errorf(format, args...)}
}

// statusOf maps an error to its HTTP status: the one place where store
// errors become status codes (docs/API.md "Errors").
func statusOf(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.code
	case errors.Is(err, segment.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, segment.ErrOutOfRange):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(err, segment.ErrReadOnly), errors.Is(err, segment.ErrLink),
		errors.Is(err, segment.ErrVersionUnavailable), errors.Is(err, segment.ErrExists), errors.Is(err, ErrBusy),
		errors.Is(err, ErrPlacement), errors.Is(err, ErrNotPrimary):
		return http.StatusConflict
	case errors.Is(err, ErrNotReplica):
		return http.StatusForbidden
	case errors.Is(err, ErrNoQuorum):
		return http.StatusServiceUnavailable
	case errors.Is(err, segment.ErrCorrupt), errors.Is(err, segment.ErrUnsupportedFormat):
		return http.StatusUnprocessableEntity
	case errors.Is(err, segment.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, segment.ErrClosed), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// writeError answers a failed request: its status and a one-line text body
// that says why. If the response has begun (a stream), it can only be cut;
// the error is logged.
func (s *server) writeError(w *statusWriter, r *http.Request, err error) {
	code := statusOf(err)
	if w.code != 0 {
		s.log.Warn("request failed after its response began", "method", r.Method, "path", r.URL.Path,
			"bytes", w.n, "err", err)
		return
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cloudfs"`)
	}
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	w.Header().Del("Content-Length")
	w.Header().Del("Content-Range")
	w.Header().Del("ETag")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "cloudfs: %v\n", err)
}
