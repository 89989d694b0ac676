package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloudfs/replicator"
)

// daemon is the `cloudfs serve` the benchmark starts on a store of its own.
type daemon struct {
	bin, dataDir, url string
	cmd               *exec.Cmd
	logs              *syncBuffer
	exited            chan error
}

var servingRE = regexp.MustCompile(`msg=serving addr=(\S+)`)

// startTimeout bounds the daemon's start: formatting a store and opening
// /dev/ublk-control take seconds even under software emulation.
const startTimeout = time.Minute

// startDaemon runs cloudfs serve on a fresh store in dataDir, on a free port
// of 127.0.0.1, and waits until it serves. Its devices' symlinks go to
// dataDir/dev, not /dev/cloudfs.
func startDaemon(bin, dataDir string, storeSize int64) (*daemon, error) {
	d := &daemon{bin: bin, dataDir: dataDir, logs: &syncBuffer{}, exited: make(chan error, 1)}
	pr, pw := io.Pipe()
	d.cmd = exec.Command(bin, "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0",
		"--store-size", fmt.Sprint(storeSize), "--segment-size", "4M", "--device-dir", filepath.Join(dataDir, "dev"))
	d.cmd.Stderr = io.MultiWriter(pw, d.logs)
	d.cmd.Stdout = d.logs
	// A group of its own: ^C in a terminal stops fio, not the daemon, which
	// must outlive it to delete the volume and remove its device.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.exited <- d.cmd.Wait(); pw.Close() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr) // keep draining so the daemon never blocks on stderr
	}()
	select {
	case a := <-addr:
		d.url = "http://" + a
		return d, nil
	case err := <-d.exited:
		return nil, fmt.Errorf("cloudfs serve exited at start: %w\n%s", err, d.logs)
	case <-time.After(startTimeout):
		_ = d.stop()
		return nil, fmt.Errorf("cloudfs serve did not serve within %v\n%s", startTimeout, d.logs)
	}
}

// stop asks the daemon to shut down (it removes its devices) and kills it
// if it has not exited within a minute.
func (d *daemon) stop() error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cloudfs serve: SIGTERM: %w", err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("cloudfs serve: %w\n%s", err, d.tail())
		}
		return nil
	case <-time.After(time.Minute):
		_ = d.cmd.Process.Kill()
		killed := <-d.exited
		return fmt.Errorf("cloudfs serve did not stop within a minute of SIGTERM: %w\n%s", killed, d.tail())
	}
}

// tail returns the end of the daemon's log, for error messages.
func (d *daemon) tail() string {
	s := d.logs.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// cli runs a cloudfs verb against the daemon and returns its stdout.
func (d *daemon) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.bin, append([]string{"--server", d.url, "--data-dir", d.dataDir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("cloudfs %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// newVolume makes a volume and returns its id and its block device.
func (d *daemon) newVolume(ctx context.Context, size int64) (id, dev string, err error) {
	if id, err = d.cli(ctx, "newdisk", "--size", fmt.Sprint(size)); err != nil {
		return "", "", err
	}
	out, err := d.cli(ctx, "info", "--json", id)
	if err != nil {
		return id, "", err
	}
	var vi replicator.VolumeInfo
	if err := json.Unmarshal([]byte(out), &vi); err != nil {
		return id, "", fmt.Errorf("cloudfs info --json %s: %w", id, err)
	}
	if vi.Device == "" {
		return id, "", fmt.Errorf("volume %s has no block device (does this kernel have ublk?)\n%s", id, d.tail())
	}
	return id, vi.Device, waitNode(vi.Device)
}

// waitNode waits for devtmpfs to create a device node.
func waitNode(dev string) error {
	for i := 0; ; i++ {
		_, err := os.Stat(dev)
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 100 {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deleteVolume deletes the volume and so its device; --force because a
// fio killed by a signal may have left it open for a moment.
func (d *daemon) deleteVolume(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.cli(ctx, "delete", "--force", id)
	return err
}

// syncBuffer collects the daemon's output, written by two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
