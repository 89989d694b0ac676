package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// load is a closed loop: workers goroutines each issue one operation at a time
// (so the queue depth is workers) until duration has passed or maxOps
// operations were issued, whichever comes first.
type load struct {
	workers  int
	duration time.Duration
	maxOps   int64 // 0: no limit
	latency  bool  // keep every operation's latency
}

// opFunc performs operation number i of a run (numbered across workers).
type opFunc func(i int64) error

type loadResult struct {
	ops     int64
	elapsed time.Duration
	lat     []time.Duration // when load.latency
}

// rate returns operations per second.
func (r loadResult) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// run builds one operation per worker with newOp (outside the timed part),
// then runs the loop and returns the first error any operation returned.
func (l load) run(newOp func(worker int) opFunc) (loadResult, error) {
	ops := make([]opFunc, l.workers)
	for w := range ops {
		ops[w] = newOp(w)
	}
	var (
		next  atomic.Int64
		stop  atomic.Bool
		wg    sync.WaitGroup
		stats = make([]workerStats, l.workers)
	)
	start := time.Now()
	deadline := start.Add(l.duration)
	for w, op := range ops {
		wg.Go(func() { stats[w] = l.work(op, &next, &stop, deadline) })
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start)}
	var err error
	for _, s := range stats {
		res.ops += s.ops
		res.lat = append(res.lat, s.lat...)
		if err == nil {
			err = s.err
		}
	}
	return res, err
}

type workerStats struct {
	ops int64
	lat []time.Duration
	err error
}

// work is one worker's loop.
func (l load) work(op opFunc, next *atomic.Int64, stop *atomic.Bool, deadline time.Time) workerStats {
	var s workerStats
	for !stop.Load() {
		i := next.Add(1) - 1
		t0 := time.Now()
		if (l.maxOps > 0 && i >= l.maxOps) || t0.After(deadline) {
			break
		}
		if s.err = op(i); s.err != nil {
			stop.Store(true)
			break
		}
		s.ops++
		if l.latency {
			s.lat = append(s.lat, time.Since(t0))
		}
	}
	return s
}
