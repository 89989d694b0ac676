package segment

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the store; registered on Options.Metrics when it is set. Each
// volume's series are made when the volume appears (create, branch, replay)
// and removed when it is deleted; the IO path only touches cached children.
type metrics struct {
	appendBytes   prometheus.Counter
	batches       prometheus.Counter
	syncs         prometheus.Counter
	writeSeconds  prometheus.Histogram
	cleanerRuns   *prometheus.CounterVec
	cleanerBytes  prometheus.Counter
	checkpoints   prometheus.Counter
	checkpointSec prometheus.Histogram

	// per volume, labelled volume=<base id>
	volWrites, volReads, volWriteBytes, volReadBytes, volFlushes *prometheus.CounterVec
	volWriteSec, volReadSec                                      *prometheus.HistogramVec
	volLSN, volSize                                              *prometheus.GaugeVec

	reg  prometheus.Registerer
	regd []prometheus.Collector // registered on reg, unregistered by Close
}

// volMetrics are one volume's cached series.
type volMetrics struct {
	writes, reads, writeBytes, readBytes, flushes prometheus.Counter
	writeSec, readSec                             prometheus.Observer
	lsn                                           prometheus.Gauge
}

const metricsNS, metricsSub = "cloudfs", "segment"

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNS, Subsystem: metricsSub, Name: name, Help: help})
}

func volCounter(name, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNS, Subsystem: "volume", Name: name, Help: help},
		[]string{"volume"})
}

// latencyBuckets: 20 µs to 0.65 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(20e-6, 2, 16)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		appendBytes:  counter("append_bytes_total", "Bytes appended to the log, headers and padding included."),
		batches:      counter("group_commits_total", "Group commits: one device write per segment touched."),
		syncs:        counter("syncs_total", "Device syncs (fdatasync), at most one per group commit."),
		cleanerBytes: counter("cleaner_rewritten_bytes_total", "Live bytes the cleaner copied."),
		checkpoints:  counter("checkpoints_total", "Checkpoints written."),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNS, Subsystem: metricsSub,
			Name: "write_duration_seconds", Help: "Time from submitting a write to its acknowledgement.",
			Buckets: latencyBuckets}),
		cleanerRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNS, Subsystem: metricsSub,
			Name: "cleaner_runs_total", Help: "Segments the cleaner processed, by result."}, []string{"result"}),
		checkpointSec: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNS, Subsystem: metricsSub,
			Name: "checkpoint_duration_seconds", Help: "Time to write one checkpoint.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14)}),
		volWrites:     volCounter("writes_total", "Writes and write-zeroes acknowledged, per volume."),
		volReads:      volCounter("reads_total", "Reads served, per volume."),
		volWriteBytes: volCounter("write_bytes_total", "Bytes written (zeroes included), per volume."),
		volReadBytes:  volCounter("read_bytes_total", "Bytes read, per volume."),
		volFlushes:    volCounter("flushes_total", "Flushes completed, per volume."),
		volWriteSec: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNS, Subsystem: "volume",
			Name: "write_duration_seconds", Help: "Time from submitting a write to its acknowledgement, per volume.",
			Buckets: latencyBuckets}, []string{"volume"}),
		volReadSec: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNS, Subsystem: "volume",
			Name: "read_duration_seconds", Help: "Time to serve a read, per volume.",
			Buckets: latencyBuckets}, []string{"volume"}),
		volLSN: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNS, Subsystem: "volume",
			Name: "head_lsn", Help: "The lsn of the volume's current version."}, []string{"volume"}),
		volSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNS, Subsystem: "volume",
			Name: "size_bytes", Help: "The volume's size."}, []string{"volume"}),
	}
	m.reg = reg
	m.register(m.appendBytes, m.batches, m.syncs, m.writeSeconds,
		m.cleanerRuns, m.cleanerBytes, m.checkpoints, m.checkpointSec,
		m.volWrites, m.volReads, m.volWriteBytes, m.volReadBytes, m.volFlushes,
		m.volWriteSec, m.volReadSec, m.volLSN, m.volSize)
	return m
}

// register registers cs on the store's registerer, if it has one. A second
// store open on the same registerer panics, as MustRegister does.
func (m *metrics) register(cs ...prometheus.Collector) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(cs...)
	m.regd = append(m.regd, cs...)
}

// unregister removes every collector of the store, so that a store closed and
// opened again can use the same registerer.
func (m *metrics) unregister() {
	for _, c := range m.regd {
		m.reg.Unregister(c)
	}
	m.regd = nil
}

// forVolume makes (or finds) the series of volume base.
func (m *metrics) forVolume(base ID, size uint64) *volMetrics {
	l := base.String()
	m.volSize.WithLabelValues(l).Set(float64(size))
	return &volMetrics{
		writes: m.volWrites.WithLabelValues(l), reads: m.volReads.WithLabelValues(l),
		writeBytes: m.volWriteBytes.WithLabelValues(l), readBytes: m.volReadBytes.WithLabelValues(l),
		flushes: m.volFlushes.WithLabelValues(l), writeSec: m.volWriteSec.WithLabelValues(l),
		readSec: m.volReadSec.WithLabelValues(l), lsn: m.volLSN.WithLabelValues(l),
	}
}

// dropVolume removes a deleted volume's series.
func (m *metrics) dropVolume(base ID) {
	l := base.String()
	for _, v := range []*prometheus.MetricVec{m.volWrites.MetricVec, m.volReads.MetricVec, m.volWriteBytes.MetricVec,
		m.volReadBytes.MetricVec, m.volFlushes.MetricVec, m.volWriteSec.MetricVec, m.volReadSec.MetricVec,
		m.volLSN.MetricVec, m.volSize.MetricVec} {
		v.DeleteLabelValues(l)
	}
}

// storeCollector reports the space and age gauges of a store, computed when
// scraped, so they are never stale.
type storeCollector struct {
	s                                               *Store
	segments, free, used, live, debt, ckptAge, took *prometheus.Desc
}

func newStoreCollector(s *Store) *storeCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, name), help, nil, nil)
	}
	return &storeCollector{s: s,
		segments: d("segments", "Segments in the store."),
		free:     d("free_segments", "Segments free for writing."),
		used:     d("used_bytes", "Bytes of the log in segments that are not free."),
		live:     d("live_bytes", "Bytes of the log still referenced by a volume or snapshot."),
		debt:     d("cleaner_debt_bytes", "Bytes of dead data in sealed segments: what cleaning could reclaim."),
		ckptAge:  d("checkpoint_age_seconds", "Time since the newest durable checkpoint (or since Open)."),
		took:     d("recovery_duration_seconds", "Time the last Open took to roll the log forward."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.segments, c.free, c.used, c.live, c.debt, c.ckptAge, c.took} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	sp := c.s.Space()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(c.segments, float64(sp.Segments))
	g(c.free, float64(sp.FreeSegments))
	g(c.used, float64(sp.UsedBytes))
	g(c.live, float64(sp.LiveBytes))
	g(c.debt, float64(sp.DeadBytes))
	g(c.ckptAge, sp.CheckpointAge.Seconds())
	g(c.took, c.s.recovery.Took.Seconds())
}

// Space describes a store's space.
type Space struct {
	Segments, FreeSegments int
	SegmentSize            int64
	// UsedBytes is the log in segments that are not free; LiveBytes what of
	// it volumes and snapshots still reference; DeadBytes what of the sealed
	// segments nothing references (the cleaner's work).
	UsedBytes, LiveBytes, DeadBytes int64
	CheckpointAge                   time.Duration
}

// Space returns the store's space accounting now.
func (s *Store) Space() Space {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sp := Space{Segments: len(s.segs), FreeSegments: s.freeSegs, SegmentSize: s.sb.SegmentSize,
		CheckpointAge: time.Since(s.lastCkptTime)}
	for i := range s.segs {
		g := &s.segs[i]
		sp.LiveBytes += g.live * SectorSize
		if g.state != segFree {
			sp.UsedBytes += s.sb.SegmentSize
		}
		if g.state == segSealed {
			sp.DeadBytes += s.sb.SegmentSize - g.live*SectorSize
		}
	}
	return sp
}
