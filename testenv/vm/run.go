package vm

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner is one invocation of the runner.
type runner struct {
	cfg   Config
	start time.Time
}

func newRunner(cfg Config) *runner {
	return &runner{cfg: cfg.withDefaults(), start: time.Now()}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "vmrun: "+format+"\n", args...)
}

// Prepare installs the missing host packages and fetches the kernel into
// the cache, so that later runs start at once. Run does the same itself.
func Prepare(cfg Config) error {
	r := newRunner(cfg)
	_, err := r.prepare()
	return err
}

// prepare holds the cache lock while it installs and fetches.
func (r *runner) prepare() (*kernel, error) {
	unlock, err := lockCache(r.cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.ensurePrograms(append(slices.Clone(hostTools), r.cfg.Programs...)); err != nil {
		return nil, err
	}
	k, err := r.ensureKernel()
	if err != nil {
		return nil, err
	}
	// Decompress every module now, under the lock.
	_, err = k.resolve(append(append(slices.Clone(bootModules), r.cfg.Modules...), extraModules...))
	return k, err
}

// Run runs program with args as go test -exec runs a test binary: in the
// current directory, with the current environment, its output on stdout.
// In the VM (cfg.Mode "vm", or "auto" for a binary linking MarkerSymbol)
// the directory's files and testdata, the passed variables and the output
// directories of -test.* flags go in and come back as described in the
// package doc; otherwise the program simply runs on the host.
//
// It returns the program's exit status, or an error when the VM failed
// (ErrTimeout, ErrGuest, or a preparation error; ExitCode maps them).
// Cancelling ctx stops the VM.
func Run(ctx context.Context, cfg Config, program string, args []string) (int, error) {
	r := newRunner(cfg)
	prog, err := filepath.Abs(program)
	if err != nil {
		return 0, err
	}
	inVM := r.cfg.Mode == "vm"
	if r.cfg.Mode == "auto" {
		if inVM, err = WantsVM(prog); err != nil {
			return 0, err
		}
	}
	if !inVM {
		return runHost(ctx, prog, args)
	}
	return r.runVM(ctx, prog, args)
}

// runHost runs the program on the host.
func runHost(ctx context.Context, prog string, args []string) (int, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// bootAttempts is how often a guest that fails before the program starts
// is booted.
const bootAttempts = 3

// runVM boots the VM, runs the program in it, and brings its outputs back.
func (r *runner) runVM(ctx context.Context, prog string, args []string) (int, error) {
	k, err := r.prepare()
	if err != nil {
		return 0, err
	}
	work, err := os.MkdirTemp("", "cloudfs-vm-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)
	s, err := r.newSpec(prog, args)
	if err != nil {
		return 0, err
	}
	if err := r.buildImage(filepath.Join(work, "initrd.cpio"), k, s); err != nil {
		return 0, err
	}
	built := time.Now()
	rc, con, err := r.boot(ctx, work, k, r.cfg.timeoutFor(args))
	// TCG occasionally crashes the guest kernel during boot (about one boot
	// in 60 under load: a fault in early initcalls, QEMU 7.2, -cpu max).
	// Nothing has run yet then, so booting again is safe.
	for attempt := 2; attempt <= bootAttempts && failedBeforeStart(con, err); attempt++ {
		r.logf("the guest failed before the program started; booting again (attempt %d of %d)", attempt, bootAttempts)
		rc, con, err = r.boot(ctx, work, k, r.cfg.timeoutFor(args))
	}
	if err != nil {
		return 0, err
	}
	if err := extractOutputs(filepath.Join(work, "results.img"), s.Outputs); err != nil {
		return 0, fmt.Errorf("results: %w", err)
	}
	if r.cfg.Verbose {
		r.logf("kernel %s, image %.1fs, boot %s, VM %.1fs, total %.1fs, exit %d",
			k.version, built.Sub(r.start).Seconds(), bootTime(con), time.Since(built).Seconds(),
			time.Since(r.start).Seconds(), rc)
	}
	return rc, nil
}

// failedBeforeStart reports whether the guest failed before it started the
// program, other than by an error of the agent or of QEMU (which recur).
func failedBeforeStart(con []byte, err error) bool {
	var qemuErr *exec.ExitError
	return errors.Is(err, ErrGuest) && !errors.As(err, &qemuErr) &&
		!bytes.Contains(con, []byte(startMarker)) && !bytes.Contains(con, []byte(errorMarker))
}

// newSpec returns what the guest runs: prog with args in the current
// directory, once the guest's devices are there.
func (r *runner) newSpec(prog string, args []string) (*spec, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	s := &spec{
		Program: prog, Args: args, Dir: dir,
		Outputs: outputDirs(args, os.Environ()),
		Devices: []string{"/dev/ublk-control", "/dev/loop-control", resultsDev},
	}
	if r.cfg.Disk != "" {
		s.Devices = append(s.Devices, scratchDev)
	}
	return s, nil
}

// boot runs QEMU on the image in work until the guest powers off or the
// time limit, and returns the program's exit status and the console.
func (r *runner) boot(ctx context.Context, work string, k *kernel, timeout time.Duration) (int, []byte, error) {
	q, err := r.qemuArgs(work, k, filepath.Join(work, "initrd.cpio"))
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fifo := filepath.Join(work, outputFIFO)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return 0, nil, fmt.Errorf("output FIFO: %w", err)
	}
	copied := copyOutput(fifo, os.Stdout)
	var qemuErr bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", q...)
	cmd.Stdout, cmd.Stderr = &qemuErr, &qemuErr
	runErr := cmd.Run()
	endOutput(fifo, copied)
	con, _ := os.ReadFile(filepath.Join(work, "console.log"))
	if r.cfg.Verbose {
		r.logf("guest console:\n%s", con)
	}
	status, _ := os.ReadFile(filepath.Join(work, "status.log"))
	rc, ok := exitStatus(status)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.report(con, &qemuErr, "killed after the time limit of %v", timeout)
		return 0, con, fmt.Errorf("%w (%v)", ErrTimeout, timeout)
	case ctx.Err() != nil:
		return 0, con, ctx.Err()
	case !ok:
		r.report(con, &qemuErr, "%s (qemu: %v)", guestFailure(con, status), runErr)
		if runErr != nil {
			return 0, con, fmt.Errorf("%w: qemu: %w", ErrGuest, runErr)
		}
		return 0, con, ErrGuest
	}
	return rc, con, nil
}

// outputFIFO is the FIFO in the work directory that carries the program's
// output from QEMU to the runner's stdout.
const outputFIFO = "out.fifo"

// copyOutput copies what QEMU writes into fifo to w until every writer has
// closed it; the returned channel is closed then.
func copyOutput(fifo string, w io.Writer) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.Open(fifo) // blocks until a writer opens it
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(w, f)
	}()
	return done
}

// endOutput waits for copyOutput to finish after QEMU exited. If QEMU never
// opened the FIFO, the reader still waits in open: opening and closing a
// writer here releases it (the open fails until the reader is there).
func endOutput(fifo string, done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
}

// qemuArgs returns QEMU's command line: the kernel and initramfs, the
// console and the status port into files, the output port into a FIFO, the
// results disk (/dev/vda) and the optional scratch disk (/dev/vdb).
func (r *runner) qemuArgs(work string, k *kernel, initrd string) ([]string, error) {
	c := r.cfg
	accel := []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
	if c.Accel == "kvm" {
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	results := filepath.Join(work, "results.img")
	if err := sparseFile(results, 1<<30); err != nil {
		return nil, err
	}
	args := append(accel,
		"-M", "q35", "-m", c.Memory, "-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", k.vmlinuz(), "-initrd", initrd,
		// panic=-1 reboots at once on a panic, which -no-reboot turns into
		// QEMU's exit; mitigations cost much under TCG and guard nothing here.
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off rdinit="+initPath,
		"-chardev", "file,id=con,path="+filepath.Join(work, "console.log"),
		"-serial", "chardev:con",
		"-chardev", "file,id=status,path="+filepath.Join(work, "status.log"),
		"-serial", "chardev:status",
		// The output port writes into a FIFO that copyOutput reads. (With
		// QEMU's stdio back end a virtio port never became writable.)
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "file,id=out,path="+filepath.Join(work, outputFIFO),
		"-device", "virtserialport,bus=vser.0,chardev=out,name="+outputPort,
		"-drive", "file="+results+",if=virtio,format=raw,cache=unsafe",
	)
	if c.Disk != "" {
		size, err := parseSize(c.Disk)
		if err != nil {
			return nil, err
		}
		scratch := filepath.Join(work, "scratch.img")
		if err := sparseFile(scratch, size); err != nil {
			return nil, err
		}
		args = append(args, "-drive", "file="+scratch+",if=virtio,format=raw,cache=unsafe")
	}
	return append(args, c.QEMUArgs...), nil
}

// guestFailure says why the guest gave no exit status: the kernel's panic
// line, the agent's error, or neither.
func guestFailure(con, status []byte) string {
	if i := bytes.Index(con, []byte("Kernel panic")); i >= 0 {
		line, _, _ := bytes.Cut(con[i:], []byte("\n"))
		return "the guest kernel panicked: " + string(bytes.TrimSpace(line))
	}
	if _, msg, ok := bytes.Cut(status, []byte(errorMarker)); ok {
		return "the guest agent failed: " + string(bytes.TrimSpace(msg))
	}
	return "the guest ended without the program's exit status"
}

// report prints why a run failed, with the end of the guest console.
func (r *runner) report(con []byte, qemuErr *bytes.Buffer, format string, args ...any) {
	r.logf(format, args...)
	if qemuErr.Len() > 0 {
		r.logf("qemu: %s", strings.TrimSpace(qemuErr.String()))
	}
	if !r.cfg.Verbose {
		r.logf("guest console (last lines):\n%s", tail(con, 40))
	}
}

var (
	exitRE  = regexp.MustCompile(regexp.QuoteMeta(exitMarker) + `(\d+)`)
	startRE = regexp.MustCompile(regexp.QuoteMeta(startMarker) + `([0-9.]+)`)
)

// exitStatus finds the exit status the agent printed on the console.
func exitStatus(con []byte) (int, bool) {
	m := exitRE.FindAllSubmatch(con, -1)
	if m == nil {
		return 0, false
	}
	rc, err := strconv.Atoi(string(m[len(m)-1][1]))
	return rc, err == nil
}

// bootTime returns the guest uptime at which the program started.
func bootTime(con []byte) string {
	if m := startRE.FindSubmatch(con); m != nil {
		return string(m[1]) + "s"
	}
	return "?"
}

// extractOutputs copies the files of the results tar back to the host,
// only those under the output directories.
func extractOutputs(img string, dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	f, err := os.Open(img)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || !slices.ContainsFunc(dirs, func(d string) bool { return within(name, d) }) {
			continue
		}
		if err := writeFile(name, tr, h.FileInfo().Mode().Perm()); err != nil {
			return err
		}
	}
}

func writeFile(name string, r io.Reader, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// within reports whether path p is dir or beneath it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func sparseFile(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseSize parses a size such as 512M or 2G (K, M, G, T: powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if i := strings.IndexAny(s, "KMGTkmgt"); i >= 0 && i == len(s)-1 {
		mult = int64(1) << (10 * (strings.IndexByte("KMGT", byte(s[i]&^0x20)) + 1))
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M, G or T", s)
	}
	return n * mult, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
