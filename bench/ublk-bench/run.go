package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"cloudfs/testenv"
)

// minRegion is the least the sequential job must write on both devices for
// the random jobs to have a region worth the name.
const minRegion = 16 << 20

var start = time.Now()

// logf prints a progress line with the time since the start.
func logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// emulated reports whether this runs in the test VM under software
// emulation (testenv/vm's default; CLOUDFS_VM_ACCEL=kvm passes through).
func emulated() bool { return testenv.InVM() && os.Getenv("CLOUDFS_VM_ACCEL") != "kvm" }

const tcgNote = "NOTE: this ran in the test VM under software emulation (TCG): every CPU instruction is\n" +
	"emulated, so these figures and their ratios say nothing about speed; only the harness was\n" +
	"exercised. Run make bench-ublk on a host whose kernel has ublk for figures that count."

// devices are the two sides of every measurement.
type devices struct {
	ublk, loop string
}

// run sets up the daemon, its volume and the loop device, measures, prints
// the table and writes the JSON. Whatever fails, the volume is deleted, the
// daemon stopped, the loop device detached and the files removed.
func run(ctx context.Context, c *config) (err error) {
	if err := preflight(c); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(c.dir, "ublk-bench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	desc := c.describe(dir)
	printHeader(desc)

	logf("starting %s serve (store %s)", c.cloudfs, formatBytes(float64(c.storeSize)))
	d, err := startDaemon(c.cloudfs, filepath.Join(dir, "daemon"), c.storeSize)
	if err != nil {
		return err
	}
	defer func() { logf("stopping the daemon"); err = errors.Join(err, d.stop()) }()
	id, udev, err := d.newVolume(ctx, c.size)
	if id != "" {
		defer func() { logf("deleting volume %s", id); err = errors.Join(err, d.deleteVolume(id)) }()
	}
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "loop.img")
	if err := makeFile(file, c.size); err != nil {
		return err
	}
	ldev, err := attachLoop(ctx, file)
	if err != nil {
		return err
	}
	defer func() { logf("detaching %s", ldev); err = errors.Join(err, detachLoop(ldev)) }()
	desc["ublk"], desc["loop"], desc["loop_direct_io"] = udev, ldev, loopDirectIO(ldev)
	logf("volume %s on %s; loop device %s over %s, direct IO %s", id, udev, ldev, file, desc["loop_direct_io"])

	rows, err := measureAll(ctx, c, devices{ublk: udev, loop: ldev}, dir)
	printResults(rows)
	if c.jsonPath != "" {
		if testenv.InVM() {
			logf("note: --json %s is written in the guest, and the runner brings back only go test's files", c.jsonPath)
		}
		err = errors.Join(err, writeJSON(c.jsonPath, report{Time: start, Config: desc, Results: rows}))
	}
	return err
}

// preflight checks what the run needs before it creates anything.
func preflight(c *config) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (ublk devices, losetup); make bench-ublk uses sudo when not root")
	}
	for _, prog := range []string{c.cloudfs, "fio", "losetup"} {
		if _, err := exec.LookPath(prog); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/dev/ublk-control"); errors.Is(err, fs.ErrNotExist) {
		_ = exec.Command("modprobe", "ublk_drv").Run() // as the daemon does; fails where there is no module
	}
	if _, err := os.Stat("/dev/ublk-control"); err != nil {
		return fmt.Errorf("this kernel has no ublk (%w): make bench-ublk runs the harness in the ublk test VM", err)
	}
	return nil
}

// measureAll runs the jobs in order. A job that fails is reported and the
// next still run, except after seqwrite, whose writes the others need.
func measureAll(ctx context.Context, c *config, devs devices, dir string) ([]row, error) {
	region := c.size
	var rows []row
	var errs []error
	for _, j := range jobs {
		logf("%s over %s of each device, at most %v each", j.what, formatBytes(float64(region)), c.runtime)
		ublk, loop, args, err := measureJob(ctx, c, j, devs, region, dir)
		if err != nil {
			err = fmt.Errorf("%s: %w", j.name, err)
			logf("FAILED %s (the error follows the table)", j.name)
			rows, errs = append(rows, failedRow(j, err)), append(errs, err)
			if j.name == "seqwrite" || ctx.Err() != nil {
				break
			}
			continue
		}
		r := newRow(j, ublk, loop, emulated())
		r.Fio = args
		if j.name == "seqwrite" {
			region = min(ublk.Bytes, loop.Bytes) &^ (1<<20 - 1)
			r.Detail = fmt.Sprintf("wrote ublk %s, loop %s; the jobs after it use the first %s. %s",
				formatBytes(float64(ublk.Bytes)), formatBytes(float64(loop.Bytes)), formatBytes(float64(region)), r.Detail)
			if region < minRegion {
				err := fmt.Errorf("seqwrite wrote only %s on one device (want %s): raise --runtime",
					formatBytes(float64(region)), formatBytes(minRegion))
				rows, errs = append(rows, r), append(errs, err)
				break
			}
		}
		logf("  ublk %s, loop %s", r.Ublk.Text, r.Loop.Text)
		rows = append(rows, r)
	}
	return rows, errors.Join(errs...)
}

// measureJob runs j on the loop device, then on the volume's device.
func measureJob(ctx context.Context, c *config, j job, devs devices, size int64, dir string) (ublk, loop fioStats, args []string, err error) {
	out := filepath.Join(dir, "fio.json")
	args = j.fioArgs(c, devs.loop, size)
	if loop, err = runFio(ctx, args, j.rw, out); err != nil {
		return ublk, loop, args, fmt.Errorf("loop: %w", err)
	}
	if ublk, err = runFio(ctx, j.fioArgs(c, devs.ublk, size), j.rw, out); err != nil {
		return ublk, loop, args, fmt.Errorf("ublk: %w", err)
	}
	return ublk, loop, args, nil
}

func printResults(rows []row) {
	fmt.Println()
	printTable(os.Stdout, rows)
	for _, r := range rows {
		if r.Detail != "" {
			fmt.Printf("  %s: %s\n", r.What, r.Detail)
		}
	}
	for i, r := range rows {
		if i == 0 && len(r.Fio) > 2 {
			fmt.Println("fio options of each job, the same on both devices but for --filename:")
		}
		if len(r.Fio) > 2 {
			fmt.Printf("  %-9s %s\n", r.Name, strings.Join(r.Fio[2:], " ")) // without --name and --filename
		}
	}
	if emulated() {
		fmt.Println()
		fmt.Println(tcgNote)
	}
}

func printHeader(desc map[string]string) {
	fmt.Printf("ublk-bench: %s, %s CPUs, Linux %s, %s\n", desc["go"], desc["cpus"], desc["kernel"], desc["where"])
	for _, k := range []string{"dir", "fs", "size", "store-size", "runtime", "ioengine"} {
		fmt.Printf("  --%s=%s", k, desc[k])
	}
	fmt.Println()
	fmt.Println("Each fio job (direct=1) runs on a loop device (direct IO) over a plain file, then on a cloudfs volume's")
	fmt.Println("ublk device, both in the same directory; ratio = ublk / loop, targets as DESIGN.md §9 sets them for the store.")
	if emulated() {
		fmt.Println(tcgNote)
	}
}

// describe returns the settings of the run, for the header and the JSON.
func (c *config) describe(dir string) map[string]string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	where := "on the host"
	switch {
	case emulated():
		where = "in the test VM under software emulation (TCG)"
	case testenv.InVM():
		where = "in the test VM (KVM)"
	}
	return map[string]string{
		"dir": dir, "fs": fsType(dir), "size": formatBytes(float64(c.size)), "store-size": formatBytes(float64(c.storeSize)),
		"runtime": c.runtime.String(), "ioengine": c.ioengine, "go": runtime.Version(),
		"cpus": fmt.Sprint(runtime.NumCPU()), "kernel": strings.TrimSpace(string(kernel)), "where": where,
		"emulated": fmt.Sprint(emulated()),
	}
}
