package replicator

import (
	"fmt"
	"testing"

	"cloudfs/segment"
)

// FuzzParseRange feeds the Range and Content-Range parsers arbitrary header
// values: they never panic, and what they accept is a positive, sector
// aligned span that formats back to an equivalent header.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-511", "bytes 0-511/*", "bytes 512-1023/4096", "bytes=-10", "bytes=1-0",
		"bytes=0-511,512-1023", "bytes 9223372036854775807-9223372036854775807/*", "bytes=-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		for name, parse := range map[string]func(string) (int64, int64, error){
			"Range": parseRange, "Content-Range": parseContentRange} {
			off, n, err := parse(h)
			if err != nil {
				if statusOf(err) != 400 {
					t.Errorf("%s %q: status %d, want 400", name, h, statusOf(err))
				}
				continue
			}
			if off < 0 || n <= 0 || off%segment.SectorSize != 0 || n%segment.SectorSize != 0 {
				t.Errorf("%s %q = %d, %d: not a positive aligned span", name, h, off, n)
			}
			again := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
			if o2, n2, err := parseRange(again); err != nil || o2 != off || n2 != n {
				t.Errorf("%s %q = %d, %d; %q = %d, %d, %v", name, h, off, n, again, o2, n2, err)
			}
		}
	})
}
