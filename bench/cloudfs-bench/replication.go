package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/segment/device"
)

// Replication is measured in one process: a primary store on the main
// file and a replica store on a second file of the same size beside it,
// the replica following the primary over HTTP on 127.0.0.1 and
// acknowledging, exactly as two daemons do. Both files are on the same
// disk, so the two logs share its bandwidth (two hosts would not): the
// figures are a floor.

const benchSecret = "cloudfs-bench-secret-0123456789abcdef"

// replicaFile is the replica's store file.
func replicaFile(dir string) string { return filepath.Join(dir, "replica.img") }

// benchStore is a store as the API wants it (nothing is ever in use).
type benchStore struct{ *segment.Store }

func (s benchStore) Delete(base segment.ID, force bool) error { return s.Store.Delete(base) }

// replicated is a primary and a replica of one volume, the replica
// following and acknowledging.
type replicated struct {
	primary, replica *engine
	acks             *replicator.Acks
	srv              *http.Server
	client           *replicator.Client
	v                *segment.Volume
	stopFollow       func()
}

// openReplicated formats both files, creates a volume of size bytes on the
// primary in mode, and, if follow, starts the replica's follower and waits
// until it is in sync.
func openReplicated(mainPath, replPath string, size int64, mode string, follow bool) (*replicated, error) {
	r := &replicated{}
	var err error
	if r.primary, err = openEngine(mainPath); err != nil {
		return nil, err
	}
	if r.replica, err = openEngine(replPath); err != nil {
		r.primary.close()
		return nil, err
	}
	r.acks = replicator.NewAcks(replicator.AcksConfig{Timeout: 30 * time.Second, Head: func(base segment.ID) (segment.Position, error) {
		return positionOf(r.primary.st, base)
	}})
	h, err := replicator.NewHandler(replicator.Config{Store: benchStore{r.primary.st}, Secret: benchSecret, Acks: r.acks})
	if err != nil {
		return nil, r.close(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, r.close(err)
	}
	r.srv = &http.Server{Handler: h}
	go func() { _ = r.srv.Serve(ln) }()
	r.client = &replicator.Client{URL: "http://" + ln.Addr().String(), Secret: benchSecret,
		HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}}
	if r.v, err = r.primary.st.Create(uint64(size)); err != nil {
		return nil, r.close(err)
	}
	r.acks.Set(r.v.Base(), mode, []string{"replica"})
	if follow {
		if err := r.follow(); err != nil {
			return nil, r.close(err)
		}
	}
	return r, nil
}

// follow starts the replica's follower and waits until it has the
// primary's head.
func (r *replicated) follow() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replicator.Follow(ctx, replicator.FollowConfig{Store: r.replica.st, Source: r.client, Volume: r.v.Base(),
			Self: "replica", Logger: slog.New(slog.DiscardHandler)})
	}()
	r.stopFollow = func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			logf("  the replica's follower stopped: %v", err)
		}
		r.stopFollow = nil
	}
	return r.waitCaughtUp(5 * time.Minute)
}

// waitCaughtUp waits until the replica has the primary's head.
func (r *replicated) waitCaughtUp(limit time.Duration) error {
	want, err := positionOf(r.primary.st, r.v.Base())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for {
		got, err := positionOf(r.replica.st, r.v.Base())
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("the replica did not reach lsn %d within %v: %w", want.LSN, limit, err)
			}
			return fmt.Errorf("the replica did not reach lsn %d within %v (at %d)", want.LSN, limit, got.LSN)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *replicated) close(cause error) error {
	errs := []error{cause}
	if r.stopFollow != nil {
		r.stopFollow()
	}
	if r.srv != nil {
		errs = append(errs, r.srv.Close())
	}
	r.acks.Close()
	if r.replica != nil {
		errs = append(errs, r.replica.close())
	}
	if r.primary != nil {
		errs = append(errs, r.primary.close())
	}
	return errors.Join(errs...)
}

func positionOf(st *segment.Store, base segment.ID) (segment.Position, error) {
	v, err := st.Volume(base)
	if err != nil {
		return segment.Position{}, err
	}
	in, err := v.Info()
	return segment.Position{LSN: in.LSN, Version: in.Version}, err
}

// benchReplication: 4 KiB random writes at queue depth --qd through a
// 2-way sync volume (each acknowledged once the replica has it durably)
// against the same volume unreplicated, and the QD1 write latency of both,
// the replicated one against the unreplicated one plus a loopback round
// trip.
func benchReplication(c *config, dir string) ([]row, error) {
	p := pair{c: c, path: mainFile(dir)}
	if err := prepareFile(replicaFile(dir), c.size); err != nil {
		return nil, err
	}
	l := load{workers: c.randQD, duration: c.duration, maxOps: p.budgetOps(blockSize) / 2}
	unrep, err := p.engine("replication-unreplicated", l, p.volSize(), nil,
		func(v *segment.Volume) func(int) opFunc { return randWrites(v, p.volSize(), 2) })
	if err != nil {
		return nil, errSide("unreplicated", err)
	}
	logRun("unrepl", unrep, iops(unrep.rate(), blockSize).Text)
	rep, err := p.replicatedLoad(dir, l, func(rv *replicator.Replicated) func(int) opFunc {
		return randWrites(rv, p.volSize(), 2)
	})
	if err != nil {
		return nil, errSide("replicated", err)
	}
	logRun("sync", rep, iops(rep.rate(), blockSize).Text)
	what := fmt.Sprintf("4 KiB random write QD%d, 2-way sync", c.randQD)
	rows := []row{ratioRow("replication", what, iops(rep.rate(), blockSize), iops(unrep.rate(), blockSize), ">=", 0.7)}
	rows[0].Detail = "limit: the same volume unreplicated, same run; the replica's store is on the same disk"

	l1 := load{workers: 1, duration: c.duration, latency: true, maxOps: p.budgetOps(blockSize) / 2}
	u1, err := p.engine("replication-unreplicated-qd1", l1, p.volSize(), nil,
		func(v *segment.Volume) func(int) opFunc { return randWrites(v, p.volSize(), 3) })
	if err != nil {
		return rows, errSide("unreplicated QD1", err)
	}
	r1, err := p.replicatedLoad(dir, l1, func(rv *replicator.Replicated) func(int) opFunc {
		return randWrites(rv, p.volSize(), 3)
	})
	if err != nil {
		return rows, errSide("replicated QD1", err)
	}
	rtt, err := loopbackRTT(c.duration / 5)
	if err != nil {
		return rows, errSide("loopback round trip", err)
	}
	us, rs := summarize(u1.lat), summarize(r1.lat)
	logf("  unreplicated QD1: %s; sync QD1: %s; loopback round trip p50 %s", us, rs, fmtDur(rtt))
	qd1 := infoRow("replication", "4 KiB write QD1, 2-way sync (p50)", latency(rs.p50), latency(us.p50+rtt),
		"limit: unreplicated p50 "+fmtDur(us.p50)+" + loopback TCP round trip p50 "+fmtDur(rtt)+
			"; the replica logs each write durably (fdatasync) before it acknowledges; sync "+rs.String())
	return append(rows, qd1), nil
}

// replicatedLoad runs l in rounds (see rounds) on a 2-way sync volume.
func (p pair) replicatedLoad(dir string, l load, newOp func(*replicator.Replicated) func(int) opFunc) (loadResult, error) {
	return rounds(l, func(l load) (res loadResult, err error) {
		r, err := openReplicated(p.path, replicaFile(dir), p.volSize(), replicator.ModeSync, true)
		if err != nil {
			return res, err
		}
		err = p.c.profile("replication", func() (err error) {
			res, err = l.run(newOp(r.acks.Volume(r.v)))
			return err
		})
		if rs, ok := r.acks.Replicas(r.v.Base()); err == nil && (!ok || !rs[0].InSync) {
			err = fmt.Errorf("the replica left the sync set during the run: %+v", rs)
		}
		return res, r.close(err)
	})
}

// benchResync: a replica that missed writes catches up (the delta, from
// the primary's log, over loopback HTTP, verified and logged durably on
// the replica), against the slower of the replica file's raw sequential
// write and loopback TCP, both measured now.
func benchResync(c *config, dir string) ([]row, error) {
	if err := prepareFile(replicaFile(dir), c.size); err != nil {
		return nil, err
	}
	p := pair{c: c, path: mainFile(dir)}
	// the delta: 64 KiB writes at random aligned offsets, a quarter of the file
	const bs = 64 << 10
	lag := min(c.size/4, 2<<30) / bs * bs
	r, err := openReplicated(p.path, replicaFile(dir), p.volSize(), replicator.ModeAsync, true)
	if err != nil {
		return nil, err
	}
	r.stopFollow()
	offs := newOffsets(p.volSize(), bs, 0, 7)
	buf := payload(bs, 7)
	for i := int64(0); i < lag/bs; i++ {
		if _, err := r.v.WriteAt(buf, offs.next()); err != nil {
			return nil, r.close(err)
		}
	}
	if err := r.v.Flush(); err != nil {
		return nil, r.close(err)
	}
	from, _ := positionOf(r.replica.st, r.v.Base())
	head, _ := positionOf(r.primary.st, r.v.Base())
	start := time.Now()
	err = c.profile("resync", r.follow)
	took := time.Since(start)
	if err = r.close(err); err != nil {
		return nil, err
	}
	rate := float64(lag) / took.Seconds()
	logf("  resync: %d entries, %s of data in %s: %s", head.LSN-from.LSN, formatBytes(float64(lag)), fmtDur(took), mbps(rate))

	raw, err := pair{c: c, path: replicaFile(dir)}.raw(seqLoad(c.seqQD, lag/seqBlock, c.duration),
		func(dev *device.File) func(int) opFunc { return seqWrites(dev, dev.Size()) })
	if err != nil {
		return nil, errSide("raw", err)
	}
	rawRate := float64(raw.ops) * seqBlock / raw.elapsed.Seconds()
	tcp, err := loopbackThroughput(c.duration / 2)
	if err != nil {
		return nil, errSide("loopback", err)
	}
	logf("  raw sequential write %s, loopback TCP %s", mbps(rawRate), mbps(tcp))
	limit, which := rawRate, "raw sequential write of the replica's file"
	if tcp < rawRate {
		limit, which = tcp, "loopback TCP"
	}
	out := ratioRow("resync", "resync of a lagging replica (64 KiB writes)", throughput(rate), throughput(limit), ">=", 0.8)
	out.Detail = fmt.Sprintf("limit: %s (raw sequential write %s, loopback TCP %s); %s of data in %d entries caught up in %s",
		which, mbps(rawRate), mbps(tcp), formatBytes(float64(lag)), head.LSN-from.LSN, fmtDur(took))
	return []row{out}, nil
}

// loopbackRTT measures the median round trip of a 64-byte message over a
// TCP connection on 127.0.0.1, for d.
func loopbackRTT(d time.Duration) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	var lat []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(t))
	}
	return summarize(lat).p50, nil
}

// loopbackThroughput measures one TCP connection's throughput on
// 127.0.0.1 with 1 MiB writes, for d.
func loopbackThroughput(d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	n := <-got
	return float64(n) / time.Since(start).Seconds(), nil
}
