package main

import (
	"fmt"
	"slices"
	"time"
)

// latStats summarises a set of latencies.
type latStats struct {
	n              int
	mean, p50, p99 time.Duration
	max            time.Duration
}

func summarize(lat []time.Duration) latStats {
	if len(lat) == 0 {
		return latStats{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return latStats{n: len(s), mean: sum / time.Duration(len(s)), p50: pct(s, 50), p99: pct(s, 99), max: s[len(s)-1]}
}

// pct returns the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func (s latStats) String() string {
	return fmt.Sprintf("n=%d mean %s p50 %s p99 %s max %s", s.n, fmtDur(s.mean), fmtDur(s.p50), fmtDur(s.p99), fmtDur(s.max))
}
