package replicator

import (
	"os"
	"strings"
	"testing"
)

// TestRoutesDocumented: every endpoint the handler serves has its heading in
// docs/API.md, and every endpoint heading there is served.
func TestRoutesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, r := range (&server{}).routes() {
		served[r.pattern] = true
		if !strings.Contains(string(doc), "### `"+r.pattern) {
			t.Errorf("%s is not documented in docs/API.md", r.pattern)
		}
	}
	for _, line := range strings.Split(string(doc), "\n") {
		h, ok := strings.CutPrefix(line, "### `")
		if !ok || strings.HasPrefix(h, "GET /metrics") {
			continue // /metrics is the daemon's
		}
		pattern, _, _ := strings.Cut(strings.TrimSuffix(strings.Fields(h)[0]+" "+strings.Fields(h)[1], "`"), "?")
		pattern, _, _ = strings.Cut(pattern, "[")
		pattern = strings.TrimSuffix(pattern, "`")
		if !served[pattern] {
			t.Errorf("docs/API.md documents %q, which is not served", pattern)
		}
	}
}
