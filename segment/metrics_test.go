package segment_test

import (
	"strings"
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
	for name, want := range map[string]int{"cloudfs_segment_checkpoints_total": 1, "cloudfs_volume_writes_total": 1,
		"cloudfs_volume_head_lsn": 1, "cloudfs_segment_cleaner_debt_bytes": 1, "cloudfs_segment_recovery_duration_seconds": 1} {
		if n := testutil.CollectAndCount(reg, name); n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cloudfs_volume_writes_total Writes and write-zeroes acknowledged, per volume.
# TYPE cloudfs_volume_writes_total counter
cloudfs_volume_writes_total{volume="`+v.Base().String()+`"} 1
`), "cloudfs_volume_writes_total"); err != nil {
		t.Error(err)
	}
	if err := st.Delete(v.Base()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "cloudfs_volume_writes_total"); n != 0 {
		t.Errorf("a deleted volume keeps %d series", n)
	}
}

// TestMetricsReopen: a store closed and opened again registers its metrics on
// the same registry without a panic, and a volume loaded from the checkpoint
// has its series.
func TestMetricsReopen(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := segment.Options{Metrics: reg, NoBackground: true}
	dev, st := segtest.NewStore(t, 64<<20, opts)
	if _, err := st.Create(1 << 20); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	segtest.Open(t, dev, opts)
	if n := testutil.CollectAndCount(reg, "cloudfs_volume_head_lsn"); n != 1 {
		t.Errorf("cloudfs_volume_head_lsn after reopen: %d series, want 1", n)
	}
}
