package replicator

import (
	"io"
	"time"

	"cloudfs/segment"
)

// throttle caps the bytes a second read through it while live reports
// false (catching up); once live, reads pass at full speed.
type throttle struct {
	r     io.Reader
	rate  int64 // bytes a second
	live  func() bool
	start time.Time
	n     int64
}

func (t *throttle) Read(p []byte) (int, error) {
	if t.live() {
		return t.r.Read(p)
	}
	if t.start.IsZero() {
		t.start = time.Now()
	}
	// never more than a tenth of a second's worth at once, so the pace is even
	if max := max(t.rate/10, segment.SectorSize); int64(len(p)) > max {
		p = p[:max]
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	if ahead := time.Duration(float64(t.n)/float64(t.rate)*float64(time.Second)) - time.Since(t.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

// progress logs a catch-up's progress every FollowConfig.Progress, and its
// end.
type progress struct {
	f          *follower
	fromLSN    uint64
	headLSN    uint64
	start      time.Time
	finished   bool
	lastLogged time.Time
}

func newProgress(f *follower, from, head uint64) *progress {
	now := time.Now()
	return &progress{f: f, fromLSN: from, headLSN: head, start: now, lastLogged: now, finished: head <= from}
}

func (p *progress) update(pos segment.Position) {
	if p.finished {
		return
	}
	st := p.f.status()
	if pos.LSN >= p.headLSN {
		p.finished = true
		took := time.Since(p.start)
		p.f.log.Info("caught up", "entries", pos.LSN-p.fromLSN, "lsn", pos.LSN, "took", took,
			"entries_per_second", int64(float64(pos.LSN-p.fromLSN)/max(took.Seconds(), 1e-3)))
		return
	}
	if time.Since(p.lastLogged) < p.f.cfg.Progress {
		return
	}
	p.lastLogged = time.Now()
	done := float64(pos.LSN-p.fromLSN) / float64(max(1, p.headLSN-p.fromLSN))
	p.f.log.Info("catching up", "lsn", pos.LSN, "head_lsn", p.headLSN, "percent", int(100*done),
		"bytes_left", st.LeftBytes)
}
