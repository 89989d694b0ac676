package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The testdata files are real output of fio 3.33 (Debian 12) for a flush job
// and a random read job on a file.
func TestParseFio(t *testing.T) {
	for _, tc := range []struct {
		file, rw string
		want     fioStats
	}{
		{"fio-flush.json", "randwrite", fioStats{IOPS: 3849.62406, BW: 15768060, Bytes: 2 << 20, IOs: 512,
			Runtime: 133 * time.Millisecond, LatP50: 57088, LatP99: 112128, SyncP50: 230400, SyncP99: 337920, SyncCount: 511}},
		{"fio-randread.json", "randread", fioStats{IOPS: 157538.461538, BW: 645277538, Bytes: 8 << 20, IOs: 2048,
			Runtime: 13 * time.Millisecond, LatP50: 94720, LatP99: 602112}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseFio(b, tc.rw)
			if err != nil || got != tc.want {
				t.Errorf("parseFio(%s) = %+v, %v; want %+v", tc.file, got, err, tc.want)
			}
		})
	}
}

func TestParseFioErrors(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not json", "fio: note: something\n{"},
		{"no jobs", `{"jobs": []}`},
		{"job error", `{"jobs": [{"error": 5, "write": {"total_ios": 1}}]}`},
		{"no io", `{"jobs": [{"write": {"total_ios": 0}}]}`},
	} {
		if got, err := parseFio([]byte(tc.in), "write"); err == nil {
			t.Errorf("parseFio(%s) = %+v, nil; want an error", tc.name, got)
		}
	}
}

func TestNewRow(t *testing.T) {
	flush, randwrite := jobs[3], jobs[1]
	for _, tc := range []struct {
		name       string
		j          job
		ublk, loop fioStats
		emulated   bool
		ratio      float64
		verdict    string
	}{
		{"iops pass", randwrite, fioStats{IOPS: 1200}, fioStats{IOPS: 1000}, false, 1.2, "PASS"},
		{"iops miss", randwrite, fioStats{IOPS: 500}, fioStats{IOPS: 1000}, false, 0.5, "MISS"},
		{"latency pass", flush, fioStats{IOs: 100, Runtime: 100 * time.Millisecond},
			fioStats{IOs: 100, Runtime: 100 * time.Millisecond}, false, 1, "PASS"},
		{"latency miss", flush, fioStats{IOs: 100, Runtime: 200 * time.Millisecond},
			fioStats{IOs: 100, Runtime: 100 * time.Millisecond}, false, 2, "MISS"},
		{"emulated", randwrite, fioStats{IOPS: 5000}, fioStats{IOPS: 1000}, true, 5, "n/a (TCG)"},
	} {
		r := newRow(tc.j, tc.ublk, tc.loop, tc.emulated)
		if r.Ratio != tc.ratio || r.Verdict != tc.verdict {
			t.Errorf("%s: newRow = ratio %v verdict %q; want %v %q", tc.name, r.Ratio, r.Verdict, tc.ratio, tc.verdict)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--size", "1G", "--runtime", "30s", "--cloudfs", "/x/cloudfs"})
	if err != nil || c.size != 1<<30 || c.storeSize != 3<<30 || c.runtime != 30*time.Second || c.cloudfs != "/x/cloudfs" {
		t.Errorf("parseFlags = %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"--size", "1M"}, {"--runtime", "10ms"}, {"--ioengine", "sync"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) = nil error, want one", bad)
		}
	}
}
