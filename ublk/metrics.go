package ublk

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation labels of the per-op metrics: a bounded enum.
const (
	opRead = iota
	opWrite
	opFlush
	opDiscard
	opWriteZeroes
	opOther // any operation ublk does not serve
	numOps
)

var opNames = [numOps]string{"read", "write", "flush", "discard", "write_zeroes", "other"}

// opIndex maps a UBLK_IO_OP_* to its label index.
func opIndex(op uint8) int {
	switch op {
	case UBLK_IO_OP_READ:
		return opRead
	case UBLK_IO_OP_WRITE:
		return opWrite
	case UBLK_IO_OP_FLUSH:
		return opFlush
	case UBLK_IO_OP_DISCARD:
		return opDiscard
	case UBLK_IO_OP_WRITE_ZEROES:
		return opWriteZeroes
	}
	return opOther
}

// metrics of the driver, shared by every device registered on the same
// registerer. The children of each vector are resolved once, here.
type metrics struct {
	requests [numOps]prometheus.Counter
	failures [numOps]prometheus.Counter
	bytes    [numOps]prometheus.Counter
	duration [numOps]prometheus.Observer
	commits  prometheus.Counter
	batches  prometheus.Counter
	devices  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "cloudfs", "ublk"
	requests := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "io_requests_total", Help: "Requests the kernel handed to the driver, by operation."}, []string{"op"}))
	failures := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "io_errors_total", Help: "Requests completed with an error, by operation."}, []string{"op"}))
	bytes := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "io_bytes_total", Help: "Bytes of successful requests, by operation."}, []string{"op"}))
	duration := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
		Name: "io_duration_seconds", Help: "Time from a request's arrival to its commit, by operation.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2, 18)}, []string{"op"}))
	m := &metrics{
		commits: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "commits_total", Help: "Results committed to the kernel (COMMIT_AND_FETCH_REQ)."})),
		batches: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "commit_batches_total", Help: "io_uring_enter calls that committed results; commits per batch is the ratio."})),
		devices: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "devices", Help: "Devices this process serves."})),
	}
	for i, op := range opNames {
		m.requests[i] = requests.WithLabelValues(op)
		m.failures[i] = failures.WithLabelValues(op)
		m.bytes[i] = bytes.WithLabelValues(op)
		m.duration[i] = duration.WithLabelValues(op)
	}
	return m
}

// register registers c on reg, or returns the collector registered before
// under the same description: every device of a process shares them.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c // registered, or refused (a conflicting collector): counted but not exported
}
