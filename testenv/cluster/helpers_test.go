package cluster

import (
	"net/netip"
	"regexp"
	"testing"
)

func TestLineWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   bool
	}{
		{"one write", []string{"a\nlevel=INFO msg=serving addr=1.2.3.4:8090\n"}, true},
		{"split line", []string{"level=INFO msg=ser", "ving addr=x", "\n"}, true},
		{"no newline yet", []string{"msg=serving addr=x"}, false},
		{"other lines", []string{"msg=starting\n", "msg=serving\n"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf logBuffer
			w := &lineWriter{buf: &buf, match: servingRE, matched: make(chan struct{})}
			all := ""
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
				all += s
			}
			select {
			case <-w.matched:
				if !tc.want {
					t.Error("matched, want no match")
				}
			default:
				if tc.want {
					t.Error("no match, want one")
				}
			}
			if buf.String() != all {
				t.Errorf("buffer %q, want %q", buf.String(), all)
			}
		})
	}
}

func TestFlagRE(t *testing.T) {
	help := `Flags:
      --device-dir string   where
  -h, --help                help for serve
      --host-id string      this host's name
Global Flags:
      --data-dir string     the data directory
`
	got := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(help, -1) {
		got[m[1]] = true
	}
	for _, f := range []string{"device-dir", "help", "host-id", "data-dir"} {
		if !got[f] {
			t.Errorf("flag %s not found in %v", f, got)
		}
	}
}

func TestNames(t *testing.T) {
	for name, want := range map[string]bool{
		"cfs-0a1b2c-0": true, "cfs-0a1b2c-12": true, "cfs-0a1b2c-sw": true, "cfs-0a1b2c-c": true,
		"cfs-0a1b2c": false, "cfs-0A1B2C-0": false, "cfs-0a1b2-0": false, "xcfs-0a1b2c-0": false, "cfs-0a1b2c-x": false,
	} {
		if got := nsNameRE.MatchString(name); got != want {
			t.Errorf("nsNameRE.MatchString(%q) = %v, want %v", name, got, want)
		}
	}
	if !regexp.MustCompile(`^[a-z]+$`).MatchString(switchSuffix + clientSuffix) {
		t.Error("suffixes must not look like host indexes")
	}
}

func TestOverlapsAny(t *testing.T) {
	used := []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/0"), // a default route overlaps everything: ignored
		netip.MustParsePrefix("10.77.5.0/24"),
		netip.MustParsePrefix("10.77.9.3/32"),
	}
	for p, want := range map[string]bool{"10.77.5.0/24": true, "10.77.9.0/24": true, "10.77.6.0/24": false} {
		if got := overlapsAny(netip.MustParsePrefix(p), used); got != want {
			t.Errorf("overlapsAny(%s) = %v, want %v", p, got, want)
		}
	}
}
