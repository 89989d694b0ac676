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

// row is one line of the final table: the engine's figure beside the raw
// file's, measured in the same run on the same file.
type row struct {
	Name   string   `json:"name"` // the --only name
	What   string   `json:"what"`
	Engine measure  `json:"engine"`
	Limit  *measure `json:"limit,omitempty"` // nil: no raw counterpart
	Ratio  float64  `json:"ratio,omitempty"` // engine / limit
	Target string   `json:"target"`
	Pass   bool     `json:"pass"`
	Detail string   `json:"detail,omitempty"`
}

// ratioRow is a row whose target is a ratio to the raw figure: op is ">=" or "<=".
func ratioRow(name, what string, engine, limit measure, op string, want float64) row {
	r := row{Name: name, What: what, Engine: engine, Limit: &limit, Ratio: engine.Value / limit.Value,
		Target: fmt.Sprintf("%s %.2fx", op, want)}
	r.Pass = compare(r.Ratio, op, want)
	return r
}

// absRow is a row whose target is an absolute value of the engine's figure;
// limit, when given, is the raw figure printed for scale.
func absRow(name, what string, engine measure, limit *measure, op string, want float64, wantText string) row {
	r := row{Name: name, What: what, Engine: engine, Limit: limit, Target: op + " " + wantText}
	if limit != nil && limit.Value > 0 {
		r.Ratio = engine.Value / limit.Value
	}
	r.Pass = compare(engine.Value, op, want)
	return r
}

// infoRow is a figure printed beside its limit with no target to meet.
func infoRow(name, what string, engine, limit measure, detail string) row {
	return row{Name: name, What: what, Engine: engine, Limit: &limit, Ratio: engine.Value / limit.Value,
		Target: "-", Pass: true, Detail: detail}
}

// failedRow stands for a measurement that could not be made.
func failedRow(name, what string, err error) row {
	return row{Name: name, What: what, Engine: measure{Text: "ERROR"}, Target: "-", Detail: err.Error()}
}

func compare(got float64, op string, want float64) bool {
	if op == ">=" {
		return got >= want
	}
	return got <= want
}

// printTable writes rows as an aligned table.
func printTable(w io.Writer, rows []row) {
	cells := [][]string{{"what", "engine", "limit (raw)", "ratio", "target", "PASS/MISS"}}
	for _, r := range rows {
		cells = append(cells, r.cells())
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

func (r row) cells() []string {
	limit, ratio := "-", "-"
	if r.Limit != nil {
		limit = r.Limit.Text
	}
	if r.Ratio != 0 {
		ratio = fmt.Sprintf("%.2fx", r.Ratio)
	}
	verdict := "MISS"
	switch {
	case r.Target == "-" && r.Engine.Text != "ERROR":
		verdict = "-" // informational: no target
	case r.Pass:
		verdict = "PASS"
	}
	return []string{r.What, r.Engine.Text, limit, ratio, r.Target, verdict}
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

func mbps(b float64) string { return fmt.Sprintf("%.0f MB/s", b/1e6) }

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

func formatBytes(b float64) string {
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if b < 1024 {
			return fmt.Sprintf("%.4g %s", b, u)
		}
		b /= 1024
	}
	return fmt.Sprintf("%.4g TiB", b)
}
