package replicator

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	authFailures prometheus.Counter
	streamBytes  *prometheus.CounterVec
	rejected     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "cloudfs", "replicator"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "http_requests_total", Help: "HTTP API requests, by endpoint and status code."},
			[]string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "http_request_duration_seconds", Help: "Time to serve an HTTP API request, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 4, 10)}, []string{"endpoint"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "auth_failures_total", Help: "Requests refused for a missing or wrong cluster secret."}),
		streamBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "stream_bytes_total", Help: "Bytes of entries streamed out and applied in, by direction."},
			[]string{"direction"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_streams_total", Help: "Streams refused by PUT /v1/log because an entry did not verify."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.authFailures, m.streamBytes, m.rejected)
	}
	return m
}

func (m *metrics) observe(endpoint string, code int, took time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(endpoint).Observe(took.Seconds())
}
