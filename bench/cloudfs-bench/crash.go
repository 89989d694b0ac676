package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"cloudfs/segment"
	"cloudfs/segment/device"
)

// childTimeout bounds the crash child: the fill at a few thousand IOPS at
// worst.
const childTimeout = 15 * time.Minute

// benchCrash measures restart, branch and memory on one fill: a child
// process fills a store on its own file with 4 KiB random writes (default
// options: background checkpoints), measures the index's heap and the
// branches, writes up to 90% of a checkpoint window, and is SIGKILLed; the
// parent then times segment.Open of the same file.
func benchCrash(c *config, path string) ([]row, error) {
	if err := prepareFile(path, c.fillFile); err != nil {
		return nil, err
	}
	sync, err := rawSyncLatency(path, min(c.duration, 2*time.Second))
	if err != nil {
		return nil, err
	}
	logf("  raw    pwrite+fdatasync on the fill file: %s", sync)
	rep, err := runChild(fillConfig{Path: path, Fill: c.fill, Volume: c.fillVolume, Workers: c.randQD, Branches: c.branches})
	if err != nil {
		return nil, fmt.Errorf("crash child: %w", err)
	}
	rows := []row{branchRow(rep, sync), memoryRow(rep)}
	rs, err := restart(c, path, rep)
	if err != nil {
		err = fmt.Errorf("restart: %w", err)
		return append([]row{failedRow("restart", "restart after crash", err)}, rows...), err
	}
	rawRead, err := rawSeqRead(path, rs.readBytes)
	if err != nil {
		return rows, err
	}
	return append([]row{restartRow(rep, rs, rawRead)}, rows...), nil
}

// rawSyncLatency measures QD1 4 KiB pwrite + fdatasync on the file, before
// the store is formatted on it: the least a durable branch record costs.
func rawSyncLatency(path string, d time.Duration) (latStats, error) {
	var res loadResult
	err := withRaw(path, func(dev *device.File) (err error) {
		res, err = load{workers: 1, duration: d, latency: true}.run(syncWrites(dev, dev.Sync, dev.Size(), 7))
		return err
	})
	return summarize(res.lat), err
}

// runChild starts the crash child, reads its report and SIGKILLs it.
func runChild(fc fillConfig) (*fillReport, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	arg, err := json.Marshal(fc)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, fillChildArg, string(arg))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive us
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	logf("  child %d: filling %s of 4 KiB random writes over a %s volume", cmd.Process.Pid,
		formatBytes(float64(fc.Fill)), formatBytes(float64(fc.Volume)))
	rep, err := readReport(out)
	kill := cmd.Process.Signal(syscall.SIGKILL)
	werr := cmd.Wait()
	if err != nil {
		return nil, errors.Join(err, werr)
	}
	if kill != nil {
		return nil, fmt.Errorf("kill: %w", kill)
	}
	logf("  child %d killed (%v) with the store open", cmd.Process.Pid, werr)
	return rep, nil
}

// readReport decodes the child's report, or gives up after childTimeout.
func readReport(out io.Reader) (*fillReport, error) {
	ch := make(chan error, 1)
	rep := &fillReport{}
	go func() { ch <- json.NewDecoder(out).Decode(rep) }()
	select {
	case err := <-ch:
		if err != nil {
			return nil, fmt.Errorf("child report: %w (see its stderr above)", err)
		}
		return rep, nil
	case <-time.After(childTimeout):
		return nil, fmt.Errorf("no report from the child within %s", childTimeout)
	}
}

// restartStats is what the parent saw reopening the crashed store.
type restartStats struct {
	took      time.Duration
	rolled    int64 // records rolled forward
	readBytes int64 // what recovery had to read: checkpoint body and rolled-forward log (estimate)
	after     segment.Info
}

// restart opens the crashed store, times segment.Open (under the CPU profiler
// if --profile-dir is set) and reads back the child's last acknowledged
// writes.
func restart(c *config, path string, rep *fillReport) (restartStats, error) {
	var rs restartStats
	dev, err := device.Open(path, device.Options{})
	if err != nil {
		return rs, err
	}
	defer dev.Close()
	log := tapLogger(func(r slog.Record) {
		if r.Message == "log rolled forward" {
			rs.rolled = attrInt(r, "records")
		}
	})
	var st *segment.Store
	err = c.profile("restart", func() (err error) {
		start := time.Now()
		st, err = segment.Open(dev, segment.Options{Logger: log})
		rs.took = time.Since(start)
		return err
	})
	if err != nil {
		return rs, err
	}
	rs.readBytes = rep.CkptBody + rs.rolled*recordBytes
	logf("  restart: segment.Open took %s, %d records rolled forward after a checkpoint of %s",
		fmtDur(rs.took), rs.rolled, formatBytes(float64(rep.CkptBody)))
	rs.after, err = verifyRestart(st, rep)
	return rs, errors.Join(err, st.Close())
}

// verifyRestart checks that the reopened volume holds every probe and as
// many extents as the child saw last: a killed process loses no completed
// write, so anything else is an engine bug.
func verifyRestart(st *segment.Store, rep *fillReport) (segment.Info, error) {
	base, err := segment.ParseID(rep.Base)
	if err != nil {
		return segment.Info{}, err
	}
	v, err := st.Volume(base)
	if err != nil {
		return segment.Info{}, err
	}
	buf := device.AlignedBuf(blockSize)
	for _, p := range rep.Probes {
		if _, err := v.ReadAt(buf, p.Off); err != nil {
			return segment.Info{}, err
		}
		if got := checksum(buf); got != p.Sum {
			return segment.Info{}, fmt.Errorf("ENGINE BUG: acknowledged 4 KiB write at %d reads back with crc %08x, want %08x", p.Off, got, p.Sum)
		}
	}
	in, err := v.Info()
	if err == nil && (in.Extents != rep.Final.Extents || in.MappedBytes != rep.Final.MappedBytes) {
		err = fmt.Errorf("ENGINE BUG: after restart the volume has %d extents and %d mapped bytes, before the kill %d and %d",
			in.Extents, in.MappedBytes, rep.Final.Extents, rep.Final.MappedBytes)
	}
	logf("  restart: %d acknowledged writes read back intact; %d extents", len(rep.Probes), in.Extents)
	return in, err
}

// rawSeqRead times reading n bytes of the file sequentially in 1 MiB preads:
// what reading the checkpoint and the rolled-forward log costs at least.
func rawSeqRead(path string, n int64) (time.Duration, error) {
	var res loadResult
	err := withRaw(path, func(dev *device.File) error {
		buf := device.AlignedBuf(seqBlock)
		ops := (min(n, dev.Size()) + seqBlock - 1) / seqBlock
		var err error
		res, err = load{workers: 1, duration: time.Hour, maxOps: ops}.run(func(int) opFunc {
			return func(i int64) error {
				_, err := dev.ReadAt(buf, i*seqBlock)
				return err
			}
		})
		return err
	})
	return res.elapsed, err
}

func restartRow(rep *fillReport, rs restartStats, rawRead time.Duration) row {
	lim := latency(rawRead)
	r := absRow("restart", fmt.Sprintf("restart after crash, %s log", formatBytes(float64(rep.Written))),
		latency(rs.took), &lim, "<=", 1, "1 s")
	r.Detail = fmt.Sprintf("checkpoint body %s, %d records rolled forward (crash at %s of log since the checkpoint, "+
		"90%% of the checkpoint window); limit = raw sequential read of those %s",
		formatBytes(float64(rep.CkptBody)), rs.rolled, formatBytes(float64(rep.SinceCkpt)), formatBytes(float64(rs.readBytes)))
	return r
}

func branchRow(rep *fillReport, sync latStats) row {
	lat := make([]time.Duration, len(rep.BranchNanos))
	for i, n := range rep.BranchNanos {
		lat[i] = time.Duration(n)
	}
	s := summarize(lat)
	lim := latency(sync.p50)
	r := absRow("branch", fmt.Sprintf("branch creation, %d extents (median of %d)", rep.Extents, s.n),
		latency(s.p50), &lim, "<=", 1e-3, "1 ms")
	r.Detail = "branch " + s.String() + "; limit = raw 4 KiB pwrite+fdatasync p50 (a branch is durable on return)"
	return r
}

// memoryRow reports the index's marginal memory: live heap growth over the
// second half of the fill per byte written then (the store's fixed buffers
// are in both measurements and cancel). The detail line also gives the
// absolute growth over the whole fill, fixed buffers included.
func memoryRow(rep *fillReport) row {
	heap := float64(rep.HeapAfter) - float64(rep.HeapMid)
	written := float64(rep.Written - rep.WrittenMid)
	pct := 100 * heap / written
	text := fmt.Sprintf("%.2f%% (%.0f B per 4 KiB written)", pct, heap/written*blockSize)
	r := absRow("memory", fmt.Sprintf("index heap / data, 4 KiB random, %d extents", rep.Extents),
		measure{Value: pct, Unit: "%", Text: text}, nil, "<=", 0.6, "0.60%")
	total := float64(rep.HeapAfter) - float64(rep.HeapBefore)
	r.Detail = fmt.Sprintf("marginal: live heap %s after writing %s, %s after %s; absolute: %s over the whole fill (%.2f%%, fixed buffers included)",
		formatBytes(float64(rep.HeapMid)), formatBytes(float64(rep.WrittenMid)), formatBytes(float64(rep.HeapAfter)),
		formatBytes(float64(rep.Written)), formatBytes(total), 100*total/float64(rep.Written))
	return r
}
