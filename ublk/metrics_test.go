package ublk

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	for i := range numOps {
		m.requests[i].Inc()
		m.duration[i].Observe(1e-4)
	}
	m.commits.Inc()
	m.batches.Inc()
	m.devices.Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

// Devices registered on one registerer share the collectors.
func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := newMetrics(reg), newMetrics(reg)
	a.requests[opRead].Inc()
	b.requests[opRead].Inc()
	a.devices.Inc()
	b.devices.Inc()
	if got := testutil.ToFloat64(a.requests[opRead]); got != 2 {
		t.Fatalf("reads counted by two devices = %v, want 2", got)
	}
	if got := testutil.ToFloat64(b.devices); got != 2 {
		t.Fatalf("devices = %v, want 2", got)
	}
	newMetrics(nil).requests[opWrite].Inc() // nil registerer: counted, not exported
}

func TestOpIndex(t *testing.T) {
	for op, want := range map[uint8]string{UBLK_IO_OP_READ: "read", UBLK_IO_OP_WRITE: "write",
		UBLK_IO_OP_FLUSH: "flush", UBLK_IO_OP_DISCARD: "discard", UBLK_IO_OP_WRITE_ZEROES: "write_zeroes",
		UBLK_IO_OP_WRITE_SAME: "other", 200: "other"} {
		if got := opNames[opIndex(op)]; got != want {
			t.Errorf("opIndex(%d) names %q, want %q", op, got, want)
		}
	}
}
