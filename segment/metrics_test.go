package segment_test

import (
	"testing"

	"cloudfs/segment"
	"cloudfs/segment/segtest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsLint registers the store's metrics, exercises them, and checks
// them with the Prometheus linter (names, units, help texts).
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, st := segtest.NewStore(t, 64<<20, segment.Options{Metrics: reg, NoBackground: true})
	v, err := st.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(reg, "cloudfs_segment_checkpoints_total"); n != 1 {
		t.Errorf("cloudfs_segment_checkpoints_total: %d series, want 1", n)
	}
}
