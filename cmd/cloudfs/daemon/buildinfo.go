package daemon

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo says which build this is: the module version ("(devel)" for a
// build from a checkout), the VCS commit (with "+dirty" for uncommitted
// changes) and the Go version.
func BuildInfo() (version, commit, goVersion string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", "unknown", "unknown"
	}
	version, commit = bi.Main.Version, "unknown"
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		commit += "+dirty"
	}
	return version, commit, bi.GoVersion
}

func buildInfoCollector() prometheus.Collector {
	version, commit, goVersion := BuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cloudfs", Name: "build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": goVersion}})
	g.Set(1)
	return g
}
