package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
)

// Exec returns a command that runs the program name inside the host's
// namespace (directly in the loopback fallback), as a program on the host
// would run: curl, a second cloudfs. ctx kills it. If the test process
// dies, the command gets SIGKILL.
func (h *Host) Exec(ctx context.Context, name string, args ...string) *exec.Cmd {
	return h.c.command(ctx, h.ns, name, args...)
}

// Command returns the cloudfs CLI inside the host's namespace with
// "--server URL() --data-dir DataDir()" before args, so it talks to this
// host with the cluster secret. Flags in args win (the last flag counts):
// h.Command(ctx, "--server", other.URL(), "heads") asks other from h.
func (h *Host) Command(ctx context.Context, args ...string) *exec.Cmd {
	return h.Exec(ctx, h.c.cfg.Binary, append([]string{"--server", h.URL(), "--data-dir", h.dataDir}, args...)...)
}

// CLI runs the cloudfs CLI as Command does, for at most Config.Timeout, and
// returns its stdout with surrounding space trimmed. Its error holds the
// exit status and stderr.
func (h *Host) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.c.cfg.Timeout)
	defer cancel()
	cmd := h.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("host %d: cloudfs %s: %w\n%s", h.index, strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// sysProcAttr returns the attributes of every child: SIGKILL when the test
// process dies, so a test binary killed before its cleanup leaves no
// daemon behind. (Pdeathsig follows the thread that forked; the goroutines
// that start children are never locked to a thread, and the runtime does
// not end unlocked threads.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// logBuffer collects a host's output. It is safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lineWriter copies its input to buf and closes matched at the first
// complete line that match matches.
type lineWriter struct {
	buf     *logBuffer
	match   *regexp.Regexp
	matched chan struct{}
	partial []byte // the current line so far; nil once matched
	done    bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if _, err := w.buf.Write(p); err != nil {
		return 0, err
	}
	if w.done {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if w.match.Match(w.partial[:i]) {
			w.done, w.partial = true, nil
			close(w.matched)
			return len(p), nil
		}
		w.partial = w.partial[i+1:]
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
