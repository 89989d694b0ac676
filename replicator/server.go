package replicator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"cloudfs/replicator/cluster"
	"cloudfs/segment"

	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the API needs of a host's store. *segment.Store satisfies it;
// the daemon wraps it so that creating and deleting a volume also creates and
// removes its block device.
type Store interface {
	Heads() []segment.Head
	Volume(base segment.ID) (*segment.Volume, error)
	Create(size uint64) (*segment.Volume, error)
	Branch(version segment.ID) (*segment.Volume, error)
	// Delete removes a volume; force deletes it even if it is in use on
	// this host (else ErrBusy).
	Delete(base segment.ID, force bool) error
	Locate(base, version segment.ID) (segment.Position, error)
	Follow(ctx context.Context, w io.Writer, base segment.ID, from segment.Position) (segment.StreamStats, error)
	Stream(w io.Writer, base segment.ID, from segment.Position) (segment.StreamStats, error)
	Apply(r io.Reader) (segment.ApplyStats, error)
}

// Config configures the API handler.
type Config struct {
	Store Store
	// Secret is the cluster secret: requests that change or stream data must
	// carry it as "Authorization: Bearer <secret>". Required.
	Secret  string
	Logger  *slog.Logger          // nil: discard
	Metrics prometheus.Registerer // nil: no metrics
	// Device, if set, names the block device of a volume ("" for none); info
	// shows it.
	Device func(base segment.ID) string
	// Hosts, if set, lists the live hosts of the cluster (GET /v1/hosts).
	Hosts func(ctx context.Context) ([]cluster.Host, error)
	// Replicate, if set, creates a volume on n hosts (0: the default
	// count) replicated in mode ("": the default for n), and returns it
	// with the ids of its hosts; without it a volume lives on this host
	// alone.
	Replicate func(ctx context.Context, size uint64, n int, mode string) (*segment.Volume, []string, error)
	// Route, if set, returns the API URL of a volume's primary when it is
	// another host ("" when this host serves the volume's blocks): block
	// requests are redirected there.
	Route func(base segment.ID) string
	// Orphan, if set, reports a volume with no primary serving it now (its
	// primary's lease expired; the failover has not finished): its block
	// requests get 503, not this host's copy, which may lack acknowledged
	// writes.
	Orphan func(base segment.ID) bool
	// Replication, if set, says how a volume is replicated (nil: it is not
	// in the catalog); lsn is this host's, to compute the others' lag.
	Replication func(ctx context.Context, base segment.ID, lsn uint64) *Replication
	// Acks, if set, makes block writes on a volume this host is the primary
	// of wait for its replicas (by the volume's mode), and takes the
	// replicas' acknowledgements (POST /v1/volumes/{id}/ack).
	Acks *Acks
	// Acquire, Handover and HandoverDone, if set, serve a planned hand-over
	// (handover.go): on the replica that acquires, on the primary that hands
	// over, and the primary's end of the hold.
	Acquire      func(ctx context.Context, base segment.ID) (HandoverResult, error)
	Handover     func(ctx context.Context, base segment.ID, to string) (HandoverResult, error)
	HandoverDone func(base segment.ID)
	// Force, if set, makes this host a volume's primary without the checks
	// of a failover (POST /v1/volumes/{id}/force).
	Force func(ctx context.Context, base segment.ID) (HandoverResult, error)
	// SetMode, if set, changes a volume's replication mode in the catalog
	// (POST /v1/volumes/{id}/mode); it returns the mode before.
	SetMode func(ctx context.Context, base segment.ID, mode string) (string, error)
	// Forks, if set, lists the forks of a volume kept on this host (its
	// info with ?local=1; without it, Replication gathers every host's).
	Forks func(base segment.ID) []ForkInfo
	// Switch, if set, takes a new primary's announcement that it owns a
	// volume in an epoch (POST /v1/volumes/{id}/switch): it returns once
	// this host follows no older primary of the volume.
	Switch func(ctx context.Context, base segment.ID, epoch uint64) error
	// MaxBlockBytes caps the body of one block write (default 64 MiB).
	MaxBlockBytes int64
	// MaxLogBytes caps the body of one PUT /v1/log (default 1 TiB).
	MaxLogBytes int64
	// IdleTimeout is how long a request body may stall, or a response write
	// may block, before the request is cut (default 1 minute). A followed
	// stream waiting for new entries is not idle.
	IdleTimeout time.Duration
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return errConfig("Store is nil")
	case len(c.Secret) < minSecretLen:
		return errConfig("Secret is shorter than 32 characters")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBlockBytes <= 0 {
		c.MaxBlockBytes = 64 << 20
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = 1 << 40
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Minute
	}
	return nil
}

// server serves the HTTP API (docs/API.md).
type server struct {
	cfg Config
	log *slog.Logger
	met *metrics
}

// NewHandler returns the HTTP API of a host: every endpoint of docs/API.md
// except /metrics, which the daemon mounts beside it.
func NewHandler(cfg Config) (http.Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, log: cfg.Logger.With("component", "replicator"), met: newMetrics(cfg.Metrics)}
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		mux.Handle(r.pattern, s.instrument(r))
	}
	mux.Handle("/", s.instrument(route{"", "other", true, s.notFound}))
	return mux, nil
}

// route is one endpoint: its mux pattern, its name in metrics and logs, and
// whether it needs the cluster secret.
type route struct {
	pattern string
	name    string
	open    bool
	h       func(w http.ResponseWriter, r *http.Request) error
}

func (s *server) routes() []route {
	return []route{
		{"GET /heads", "heads", true, s.heads},
		{"GET /healthz", "healthz", true, s.healthz},
		{"GET /v1/hosts", "hosts", false, s.hosts},
		{"GET /v1/volumes", "volumes", false, s.listVolumes},
		{"POST /v1/volumes", "create", false, s.createVolume},
		{"GET /v1/volumes/{id}", "info", false, s.volumeInfo},
		{"DELETE /v1/volumes/{id}", "delete", false, s.deleteVolume},
		{"POST /v1/versions/{version}/branch", "branch", false, s.branch},
		{"GET /v1/volumes/{id}/blocks", "read", false, s.readBlocks},
		{"PUT /v1/volumes/{id}/blocks", "write", false, s.writeBlocks},
		{"POST /v1/volumes/{id}/discard", "discard", false, s.discard},
		{"POST /v1/volumes/{id}/flush", "flush", false, s.flush},
		{"GET /v1/volumes/{id}/stream", "stream", false, s.stream},
		{"POST /v1/volumes/{id}/ack", "ack", false, s.ack},
		{"POST /v1/volumes/{id}/acquire", "acquire", false, s.acquire},
		{"POST /v1/volumes/{id}/handover", "handover", false, s.handover},
		{"POST /v1/volumes/{id}/handover/done", "handover_done", false, s.handoverDone},
		{"POST /v1/volumes/{id}/force", "force", false, s.force},
		{"POST /v1/volumes/{id}/switch", "switch", false, s.switchPrimary},
		{"POST /v1/volumes/{id}/mode", "mode", false, s.setMode},
		{"PUT /v1/log", "apply", false, s.apply},
	}
}

// instrument wraps a route with authentication, error translation, metrics
// and a debug log line.
func (s *server) instrument(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		var err error
		if !rt.open && !s.authorized(r) {
			err = errUnauthorized
			s.met.authFailures.Inc()
		} else {
			err = rt.h(sw, r)
		}
		if err != nil && !errors.Is(err, errRedirected) {
			s.writeError(sw, r, err)
		}
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		s.met.observe(rt.name, code, time.Since(start))
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "endpoint", rt.name, "code", code,
			"bytes", sw.n, "took", time.Since(start), "peer", r.RemoteAddr)
	})
}

// statusWriter remembers the status code and counts the body bytes.
type statusWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *server) notFound(w http.ResponseWriter, r *http.Request) error {
	return errf(http.StatusNotFound, "no endpoint %s %s (docs/API.md lists them)", r.Method, r.URL.Path)
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := io.WriteString(w, "ok\n")
	return err
}

// hosts answers GET /v1/hosts: the live hosts of the cluster, as etcd has
// them.
func (s *server) hosts(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Hosts == nil {
		return errf(http.StatusServiceUnavailable, "this host runs without a cluster")
	}
	hosts, err := s.cfg.Hosts(r.Context())
	if err != nil {
		return errf(http.StatusServiceUnavailable, "cluster: %v", err)
	}
	return writeJSON(w, http.StatusOK, hosts)
}
