package replicator

import (
	"strconv"
	"time"

	"cloudfs/segment"

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

// ackMetrics are the primary's replication metrics: counters, and per
// volume and replica gauges computed at scrape time from Acks.
type ackMetrics struct {
	wait     *prometheus.HistogramVec
	noQuorum prometheus.Counter
	dropped  prometheus.Counter
	acks     *Acks

	ackedLSN, lagEntries, lagBytes, inSync, sinceAck *prometheus.Desc
}

func newAckMetrics(reg prometheus.Registerer, a *Acks) *ackMetrics {
	const ns, sub = "cloudfs", "replication"
	labels := []string{"volume", "replica"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, sub, name), help, labels, nil)
	}
	m := &ackMetrics{acks: a,
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "ack_wait_seconds", Help: "Time a write or flush waited for replicas after the local log, by mode.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10)}, []string{"mode"}),
		noQuorum: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "no_quorum_total", Help: "Writes failed because no quorum of replicas acknowledged them in time."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sync_dropped_total", Help: "Times a replica left a sync volume's in-sync set (silent or too slow)."}),
		ackedLSN:   desc("acked_lsn", "The lsn a replica last acknowledged having durably (primary's view)."),
		lagEntries: desc("lag_entries", "Entries the primary has that a replica has not acknowledged."),
		lagBytes:   desc("lag_bytes", "Data bytes written since a replica's acknowledged lsn (a lower bound when far behind)."),
		inSync:     desc("in_sync", "1 if the replica counts for the volume's mode now (caught up and acknowledging), else 0."),
		sinceAck:   desc("last_ack_age_seconds", "Seconds since the replica's last acknowledgement (-1: never)."),
	}
	if reg != nil {
		reg.MustRegister(m.wait, m.noQuorum, m.dropped, m)
	}
	return m
}

func (m *ackMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.ackedLSN
	ch <- m.lagEntries
	ch <- m.lagBytes
	ch <- m.inSync
	ch <- m.sinceAck
}

func (m *ackMetrics) Collect(ch chan<- prometheus.Metric) {
	a := m.acks
	a.mu.Lock()
	bases := make([]segment.ID, 0, len(a.vols))
	for b := range a.vols {
		bases = append(bases, b)
	}
	a.mu.Unlock()
	now := time.Now()
	for _, b := range bases {
		rs, ok := a.Replicas(b)
		if !ok {
			continue
		}
		for _, r := range rs {
			l := []string{b.String(), r.Host}
			age := -1.0
			if !r.LastAck.IsZero() {
				age = now.Sub(r.LastAck).Seconds()
			}
			in := 0.0
			if r.InSync {
				in = 1
			}
			ch <- prometheus.MustNewConstMetric(m.ackedLSN, prometheus.GaugeValue, float64(r.LSN), l...)
			ch <- prometheus.MustNewConstMetric(m.lagEntries, prometheus.GaugeValue, float64(r.LagEntries), l...)
			ch <- prometheus.MustNewConstMetric(m.lagBytes, prometheus.GaugeValue, float64(r.LagBytes), l...)
			ch <- prometheus.MustNewConstMetric(m.inSync, prometheus.GaugeValue, in, l...)
			ch <- prometheus.MustNewConstMetric(m.sinceAck, prometheus.GaugeValue, age, l...)
		}
	}
}

// FollowMetrics are a replica's metrics, per volume it follows: the
// stream's state, its position, what is left to catch up, reconnects, and
// entries refused. One FollowMetrics serves every follower of a host.
type FollowMetrics struct {
	state      *prometheus.GaugeVec
	lsn        *prometheus.GaugeVec
	left       *prometheus.GaugeVec
	reconnects *prometheus.CounterVec
	rejected   *prometheus.CounterVec
}

// followStates are the values of a follower's state label.
var followStates = []string{"connecting", "catching-up", "following", "retrying"}

// NewFollowMetrics registers the follower metrics with reg (nil: none).
func NewFollowMetrics(reg prometheus.Registerer) *FollowMetrics {
	const ns, sub = "cloudfs", "follow"
	m := &FollowMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "state",
			Help: "1 for the state a replica's stream is in (connecting, catching-up, following, retrying), else 0."},
			[]string{"volume", "state"}),
		lsn: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "applied_lsn",
			Help: "The lsn a replica has durably applied."}, []string{"volume"}),
		left: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "resync_bytes_left",
			Help: "Data bytes a catching-up replica has yet to receive (-1: unknown; 0 when live)."}, []string{"volume"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "reconnects_total", Help: "Streams of a replica that broke and were opened again."}, []string{"volume"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_total", Help: "Streams a replica stopped applying because an entry did not verify, by reason " +
				"(corrupt, link: not in the replica's history)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.state, m.lsn, m.left, m.reconnects, m.rejected)
	}
	return m
}

func (m *FollowMetrics) observe(vol string, st FollowStatus, reconnected bool) {
	if m == nil {
		return
	}
	for _, s := range followStates {
		v := 0.0
		if s == st.State {
			v = 1
		}
		m.state.WithLabelValues(vol, s).Set(v)
	}
	m.lsn.WithLabelValues(vol).Set(float64(st.Position.LSN))
	left := float64(st.LeftBytes)
	if st.State == "following" {
		left = 0
	}
	m.left.WithLabelValues(vol).Set(left)
	if reconnected {
		m.reconnects.WithLabelValues(vol).Inc()
	}
}

func (m *FollowMetrics) reject(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// forget drops a volume's series when its follower stops.
func (m *FollowMetrics) forget(vol string) {
	if m == nil {
		return
	}
	for _, s := range followStates {
		m.state.DeleteLabelValues(vol, s)
	}
	m.lsn.DeleteLabelValues(vol)
	m.left.DeleteLabelValues(vol)
	m.reconnects.DeleteLabelValues(vol)
}

// Rejected returns the counter of streams refused for reason (for tests
// and tools).
func (m *FollowMetrics) Rejected(reason string) prometheus.Counter {
	return m.rejected.WithLabelValues(reason)
}
