package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// A job is one fio measurement, run with the same options on the loop
// device and then on the volume's device. Each job is bounded by its size
// and by --runtime, whichever comes first.
type job struct {
	name      string // the JSON's name
	what      string // the table's label
	rw        string // fio's rw
	bs, qd    int
	fdatasync bool    // fdatasync after every write
	ioShare   float64 // bytes the job may move, as a share of its region; 0: the region once
	figure    func(fioStats) measure
	op        string  // the target of DESIGN.md §9: ublk/loop op want
	want      float64 // (the engine's target over the raw file, applied to the devices)
}

// jobs run in this order. seqwrite writes the devices from the start: the
// prefix both sides wrote is the region of the jobs after it, so random
// reads never hit a hole (the volume would answer those without reading).
// The writes of all jobs together stay under 1.75 x --size, which a store
// of 3 x --size takes without the cleaner.
var jobs = []job{
	{name: "seqwrite", what: "1 MiB sequential write, QD4", rw: "write", bs: 1 << 20, qd: 4,
		figure: bandwidth, op: ">=", want: 0.8},
	{name: "randwrite", what: "4 KiB random write, QD32", rw: "randwrite", bs: 4096, qd: 32, ioShare: 0.5,
		figure: rate, op: ">=", want: 1.2},
	{name: "randread", what: "4 KiB random read, QD32", rw: "randread", bs: 4096, qd: 32,
		figure: rate, op: ">=", want: 0.8},
	{name: "flush", what: "4 KiB write + fdatasync, QD1", rw: "randwrite", bs: 4096, qd: 1, fdatasync: true, ioShare: 0.25,
		figure: pairLatency, op: "<=", want: 1.2},
}

// fioStats is what the harness takes from fio's JSON for one job.
type fioStats struct {
	IOPS      float64       `json:"iops"`
	BW        float64       `json:"bytes_per_second"`
	Bytes     int64         `json:"bytes"`
	IOs       int64         `json:"ios"`
	Runtime   time.Duration `json:"runtime_ns"`
	LatP50    time.Duration `json:"lat_p50_ns"` // completion latency
	LatP99    time.Duration `json:"lat_p99_ns"`
	SyncP50   time.Duration `json:"sync_p50_ns,omitempty"` // fdatasync latency
	SyncP99   time.Duration `json:"sync_p99_ns,omitempty"`
	SyncCount int64         `json:"syncs,omitempty"`
}

// The figure of each kind of job.

func bandwidth(s fioStats) measure { return throughput(s.BW) }
func rate(s fioStats) measure      { return iops(s.IOPS, 4096) }

// pairLatency is the mean time of one write and its fdatasync: the job's
// run time over its writes.
func pairLatency(s fioStats) measure {
	if s.IOs == 0 {
		return latency(0)
	}
	return latency(s.Runtime / time.Duration(s.IOs))
}

// fioArgs is fio's command line for j on dev over the first size bytes.
func (j job) fioArgs(c *config, dev string, size int64) []string {
	args := []string{"--name=" + j.name, "--filename=" + dev, "--direct=1", "--ioengine=" + c.ioengine,
		"--rw=" + j.rw, fmt.Sprintf("--bs=%d", j.bs), fmt.Sprintf("--iodepth=%d", j.qd),
		fmt.Sprintf("--size=%d", size), fmt.Sprintf("--runtime=%dms", c.runtime.Milliseconds())}
	if j.ioShare > 0 {
		args = append(args, fmt.Sprintf("--io_size=%d", int64(float64(size)*j.ioShare)&^int64(j.bs-1)))
	}
	if j.fdatasync {
		args = append(args, "--fdatasync=1")
	}
	return args
}

// runFio runs j on dev and parses its result; out is a scratch file for
// fio's JSON (fio may print notes on stdout besides the JSON).
func runFio(ctx context.Context, args []string, rw, out string) (fioStats, error) {
	cmd := exec.CommandContext(ctx, "fio", append(args, "--output-format=json", "--output="+out)...)
	b, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fioStats{}, fmt.Errorf("fio interrupted: %w", ctx.Err())
	}
	if err != nil { // the errors are on stderr, the JSON in out
		return fioStats{}, fmt.Errorf("fio %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	if b, err = os.ReadFile(out); err != nil {
		return fioStats{}, err
	}
	return parseFio(b, rw)
}

// fioOutput is the part of fio's JSON output (fio 3.x) that is read.
type fioOutput struct {
	Jobs []struct {
		Error int      `json:"error"`
		Read  fioDir   `json:"read"`
		Write fioDir   `json:"write"`
		Sync  fioLatNS `json:"sync"`
	} `json:"jobs"`
}

type fioDir struct {
	IOBytes  int64   `json:"io_bytes"`
	BWBytes  float64 `json:"bw_bytes"`
	IOPS     float64 `json:"iops"`
	Runtime  int64   `json:"runtime"` // milliseconds
	TotalIOs int64   `json:"total_ios"`
	Clat     fioLat  `json:"clat_ns"`
}

type fioLatNS struct {
	Lat fioLat `json:"lat_ns"`
}

type fioLat struct {
	Mean       float64            `json:"mean"`
	N          int64              `json:"N"`
	Percentile map[string]float64 `json:"percentile"`
}

func (l fioLat) pct(p string) time.Duration { return time.Duration(l.Percentile[p]) }

// parseFio extracts the figures of the one job in fio's JSON output.
func parseFio(b []byte, rw string) (fioStats, error) {
	var o fioOutput
	if err := json.Unmarshal(b, &o); err != nil {
		return fioStats{}, fmt.Errorf("fio output: %w", err)
	}
	if len(o.Jobs) != 1 {
		return fioStats{}, fmt.Errorf("fio output: %d jobs, want 1", len(o.Jobs))
	}
	j := o.Jobs[0]
	if j.Error != 0 {
		return fioStats{}, fmt.Errorf("fio job: error %d", j.Error)
	}
	d := j.Write
	if strings.Contains(rw, "read") {
		d = j.Read
	}
	if d.TotalIOs == 0 {
		return fioStats{}, fmt.Errorf("fio job: no IO completed")
	}
	return fioStats{IOPS: d.IOPS, BW: d.BWBytes, Bytes: d.IOBytes, IOs: d.TotalIOs,
		Runtime: time.Duration(d.Runtime) * time.Millisecond,
		LatP50:  d.Clat.pct("50.000000"), LatP99: d.Clat.pct("99.000000"),
		SyncP50: j.Sync.Lat.pct("50.000000"), SyncP99: j.Sync.Lat.pct("99.000000"), SyncCount: j.Sync.Lat.N}, nil
}
