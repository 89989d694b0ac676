package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress counts bytes and, while it runs, prints "<verb> N MiB (R MiB/s)"
// to w once a second; Stop prints the total.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	verb  string
	n     int64
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

// startProgress starts printing to w, or only counts if w is nil.
func startProgress(w io.Writer, verb string) *progress {
	p := &progress{w: w, verb: verb, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progress) add(n int) {
	p.mu.Lock()
	p.n += int64(n)
	p.mu.Unlock()
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.print("\r")
		}
	}
}

func (p *progress) print(prefix string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	n := p.n
	p.mu.Unlock()
	secs := time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "%s%s %s (%s/s)  ", prefix, p.verb, humanBytes(n), humanBytes(int64(float64(n)/max(secs, 1e-3))))
}

// Stop ends the updates and prints the total on its own line.
func (p *progress) Stop() {
	close(p.stop)
	<-p.done
	if p.w != nil {
		p.print("\r")
		fmt.Fprintln(p.w)
	}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(n)
	return n, err
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.add(n)
	return n, err
}

// progressTo returns where progress goes: stderr if asked, or if it is a
// terminal and not silenced.
func progressTo(stderr io.Writer, mode string) io.Writer {
	switch mode {
	case "always":
		return stderr
	case "never":
		return nil
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		return stderr
	}
	return nil
}
