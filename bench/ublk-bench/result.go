package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// measure is one figure: a value in a unit and how to print it.
type measure struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Text  string  `json:"text"`
}

// row is one line of the final table: the volume's figure beside the loop
// device's, measured in the same run with the same fio options.
type row struct {
	Name    string   `json:"name"`
	What    string   `json:"what"`
	Ublk    measure  `json:"ublk"`
	Loop    measure  `json:"loop"`
	Ratio   float64  `json:"ratio,omitempty"` // ublk / loop
	Target  string   `json:"target"`
	Verdict string   `json:"verdict"` // PASS, MISS, ERROR, or "n/a (TCG)" under software emulation
	Detail  string   `json:"detail,omitempty"`
	Fio     []string `json:"fio,omitempty"` // the loop side's fio options
	UblkFio fioStats `json:"ublk_fio"`
	LoopFio fioStats `json:"loop_fio"`
}

// newRow compares the two sides of j. Under software emulation the ratio is
// printed but judged against nothing.
func newRow(j job, ublk, loop fioStats, emulated bool) row {
	r := row{Name: j.name, What: j.what, Ublk: j.figure(ublk), Loop: j.figure(loop),
		Target: fmt.Sprintf("%s %.2fx", j.op, j.want), UblkFio: ublk, LoopFio: loop}
	if r.Loop.Value > 0 {
		r.Ratio = r.Ublk.Value / r.Loop.Value
	}
	switch {
	case emulated:
		r.Verdict = "n/a (TCG)"
	case r.Ratio != 0 && compare(r.Ratio, j.op, j.want):
		r.Verdict = "PASS"
	default:
		r.Verdict = "MISS"
	}
	r.Detail = latencies(ublk, loop)
	return r
}

// failedRow stands for a job that could not be run.
func failedRow(j job, err error) row {
	return row{Name: j.name, What: j.what, Ublk: measure{Text: "ERROR"}, Loop: measure{Text: "-"},
		Target: "-", Verdict: "ERROR", Detail: err.Error()}
}

func compare(got float64, op string, want float64) bool {
	if op == ">=" {
		return got >= want
	}
	return got <= want
}

// latencies prints the percentiles behind a row.
func latencies(ublk, loop fioStats) string {
	side := func(s fioStats) string {
		t := fmt.Sprintf("p50 %s p99 %s", fmtDur(s.LatP50), fmtDur(s.LatP99))
		if s.SyncCount > 0 {
			t = fmt.Sprintf("write %s, fdatasync p50 %s p99 %s", t, fmtDur(s.SyncP50), fmtDur(s.SyncP99))
		}
		return t
	}
	return fmt.Sprintf("ublk %s; loop %s", side(ublk), side(loop))
}

// printTable writes rows as an aligned table.
func printTable(w io.Writer, rows []row) {
	cells := [][]string{{"what", "ublk (cloudfs)", "loop (plain file)", "ratio", "target", "verdict"}}
	for _, r := range rows {
		ratio := "-"
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		cells = append(cells, []string{r.What, r.Ublk.Text, r.Loop.Text, ratio, r.Target, r.Verdict})
	}
	width := make([]int, len(cells[0]))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len(s))
		}
	}
	for i, c := range cells {
		printLine(w, c, width)
		if i == 0 {
			sep := make([]string, len(width))
			for j, n := range width {
				sep[j] = strings.Repeat("-", n)
			}
			printLine(w, sep, width)
		}
	}
}

func printLine(w io.Writer, cells []string, width []int) {
	parts := make([]string, len(cells))
	for i, s := range cells {
		parts[i] = s + strings.Repeat(" ", width[i]-len(s))
	}
	fmt.Fprintln(w, strings.TrimRight(strings.Join(parts, " | "), " "))
}

// report is the JSON file --json writes.
type report struct {
	Time    time.Time         `json:"time"`
	Config  map[string]string `json:"config"`
	Results []row             `json:"results"`
}

func writeJSON(path string, rep report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Formatting of figures.

func iops(rate float64, bs int) measure {
	return measure{Value: rate, Unit: "IOPS", Text: fmt.Sprintf("%s IOPS %s", si(rate), mbps(rate*float64(bs)))}
}

func throughput(bytesPerSec float64) measure {
	return measure{Value: bytesPerSec, Unit: "B/s", Text: mbps(bytesPerSec)}
}

func latency(d time.Duration) measure {
	return measure{Value: d.Seconds(), Unit: "s", Text: fmtDur(d)}
}

func mbps(b float64) string { return fmt.Sprintf("%.1f MB/s", b/1e6) }

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f us", float64(d)/1e3)
}
