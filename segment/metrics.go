package segment

import "github.com/prometheus/client_golang/prometheus"

// metrics of the store; registered on Options.Metrics when it is set.
type metrics struct {
	appendBytes   prometheus.Counter
	batches       prometheus.Counter
	syncs         prometheus.Counter
	writeSeconds  prometheus.Histogram
	freeSegments  prometheus.Gauge
	liveBytes     prometheus.Gauge
	cleanerRuns   *prometheus.CounterVec
	cleanerBytes  prometheus.Counter
	checkpoints   prometheus.Counter
	checkpointSec prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "cloudfs", "segment"
	m := &metrics{
		appendBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "append_bytes_total", Help: "Bytes appended to the log, headers and padding included."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "group_commits_total", Help: "Group commits: one device write per segment touched."}),
		syncs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "syncs_total", Help: "Device syncs (fdatasync), at most one per group commit."}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "write_duration_seconds", Help: "Time from submitting a write to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(20e-6, 2, 16)}),
		freeSegments: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "free_segments", Help: "Segments free for writing."}),
		liveBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "live_bytes", Help: "Bytes of the log still referenced, as of the last checkpoint."}),
		cleanerRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "cleaner_runs_total", Help: "Segments the cleaner processed, by result."}, []string{"result"}),
		cleanerBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "cleaner_rewritten_bytes_total", Help: "Live bytes the cleaner copied."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "checkpoints_total", Help: "Checkpoints written."}),
		checkpointSec: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "checkpoint_duration_seconds", Help: "Time to write one checkpoint.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.appendBytes, m.batches, m.syncs, m.writeSeconds, m.freeSegments, m.liveBytes,
			m.cleanerRuns, m.cleanerBytes, m.checkpoints, m.checkpointSec)
	}
	return m
}
