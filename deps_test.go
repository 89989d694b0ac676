package cloudfs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the module path of go.mod.
const module = "cloudfs"

// A layer is one folder of DESIGN.md §2 and the project packages that code
// under it may import directly. Checking every project package's direct
// imports against these lists keeps the whole graph one-way, so transitive
// dependencies need no separate check.
type layer struct {
	folder string // path under the module; every package below it belongs to the layer
	// mayImport lists folders (with everything beneath them) that non-test
	// code of the layer may import, besides the layer's own folder. "*" means
	// every folder except the global bans below.
	mayImport []string
	// thirdParty, if not nil, lists the only non-project, non-standard
	// packages the layer may import directly.
	thirdParty []string
	why        string // why the layer may import nothing else
}

// layers lists every folder of DESIGN.md §2. A package in no folder fails the
// test: a new top-level folder needs its line here.
var layers = []layer{
	{
		folder:     "ioring",
		thirdParty: []string{"golang.org/x/sys/unix"},
		why: "ioring is the bottom of the IO stack, shared by ublk and segment/device; " +
			"it must know neither of them, and a third-party module here would sit under every IO path",
	},
	{
		folder:    "ublk",
		mayImport: []string{"ioring"},
		why: "ublk reaches a volume only through the Backend it declares (segment.Volume satisfies " +
			"it in cmd); importing the store or replication would put them on the queue threads' side of the seam",
	},
	{
		folder:    "segment",
		mayImport: []string{"ioring"},
		why: "the store is beneath replication, the shim and the ublk driver; knowing any of them " +
			"would tie the on-disk format to a transport, and bench and testenv are not for production code",
	},
	{
		folder: "segment/extent",
		why: "the extent map is a pure data structure (no IO, goroutines or clock), " +
			"tested without a device or the store",
	},
	{
		folder: "segment/index",
		why: "the version index is a pure data structure (no IO, goroutines or clock), " +
			"tested without a device or the store",
	},
	{
		folder:    "replicator",
		mayImport: []string{"segment"},
		why: "replication ships the store's entries and knows nothing of how a volume is exposed " +
			"(ublk, posixshim); it reaches ioring only through segment",
	},
	{
		folder:    "posixshim",
		mayImport: []string{"segment"},
		why: "the shim keeps files inside a volume through the store; replication happens beneath it, " +
			"and a volume used as a disk (ublk) is refused, not shared",
	},
	{
		folder:    "cmd",
		mayImport: []string{"*"},
		why:       "cmd wires every part together",
	},
	{
		folder:    "bench",
		mayImport: []string{"*", "testenv"},
		why:       "benchmarks measure every part, and the harness may use test environments",
	},
	{
		folder:    "testenv",
		mayImport: []string{"*"},
		why:       "test environments start and break whole hosts",
	},
	{
		folder:    "", // the module root itself, not the folders beneath it
		mayImport: []string{"*"},
		why:       "the module root holds only repository-wide tests",
	},
}

// Bans that hold for every layer, whatever its mayImport says.
var (
	// cmd is the top of the graph: it builds the registry, the root logger
	// and the wiring, so a package importing it would invert the graph and
	// drag the CLI into libraries. Code under cmd may import cmd's own
	// packages (cmd/cloudfs/cli).
	banCmd = "cmd"
	// testenv needs root, VMs and loop devices; only _test.go files and bench
	// may import it, so the daemon never carries test rigs.
	banTestenv = "testenv"
)

// buildTagSets are the build configurations the check covers: the default
// one, and one with the tags of the e2e suite and of the expensive invariant
// checks, whose files may import differently.
var buildTagSets = []string{"", "e2e,invariants"}

// scratchModfile copies go.mod and go.sum into a temporary directory and
// returns the path of the copy of go.mod.
func scratchModfile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) && name == "go.sum" {
			continue // a module without dependencies has no go.sum
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "go.mod")
}

// listedPackage holds the fields of `go list -json` that the checks read.
type listedPackage struct {
	ImportPath   string
	Imports      []string // imports of non-test files
	TestImports  []string // imports of _test.go files in the package
	XTestImports []string // imports of _test.go files in package <name>_test
	Error        *struct{ Err string }
}

func TestDeps(t *testing.T) {
	for _, tags := range buildTagSets {
		for _, p := range goList(t, tags) {
			if p.Error != nil {
				// A package being written may not compile yet; its imports
				// are still listed and checked.
				t.Logf("tags %q: %s: %s", tags, p.ImportPath, p.Error.Err)
			}
			checkPackage(t, tags, p)
		}
	}
}

// goList lists every package of the module with the given build tags.
//
// It reads a scratch copy of go.mod, which -mod=mod may complete, so that an
// untidy go.mod (a package half-written, a module not yet required) does not
// hide the import graph; go build and go vet report go.mod itself. GOPROXY=off
// keeps the test offline: an import that the module cache cannot resolve
// becomes an error of its package, whose imports are still checked.
func goList(t *testing.T, tags string) []listedPackage {
	t.Helper()
	modfile := scratchModfile(t)
	// -e reports packages with errors instead of failing the whole listing.
	// "go test" puts its own go first in PATH.
	cmd := exec.Command("go", "list", "-e", "-json", "-tags", tags,
		"-mod=mod", "-modfile", modfile, "./...")
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -tags %q: %v\n%s", tags, err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go list -tags %q: decode: %v", tags, err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list -tags %q listed no packages", tags)
	}
	return pkgs
}

func checkPackage(t *testing.T, tags string, p listedPackage) {
	t.Helper()
	rel, ok := projectPath(p.ImportPath)
	if !ok {
		t.Errorf("tags %q: go list ./... gave %s, outside module %s", tags, p.ImportPath, module)
		return
	}
	l, ok := layerOf(rel)
	if !ok {
		t.Errorf("tags %q: package %s is in no folder of DESIGN.md §2; add its folder to layers in deps_test.go",
			tags, p.ImportPath)
		return
	}
	for _, imp := range p.Imports {
		if reason := bannedImport(l, rel, imp); reason != "" {
			t.Errorf("tags %q: %s imports %s: %s", tags, p.ImportPath, imp, reason)
		}
	}
	// Test files may import anything (testenv above all) except cmd.
	for _, imp := range append(p.TestImports, p.XTestImports...) {
		if dep, ok := projectPath(imp); ok && within(dep, banCmd) && !within(rel, banCmd) {
			t.Errorf("tags %q: tests of %s import %s: nothing imports cmd", tags, p.ImportPath, imp)
		}
	}
}

// bannedImport returns why non-test code of package rel, in layer l, may not
// import imp, or "" if it may.
func bannedImport(l layer, rel, imp string) string {
	dep, ok := projectPath(imp)
	if !ok {
		if l.thirdParty == nil || isStandard(imp) || slices.Contains(l.thirdParty, imp) {
			return ""
		}
		return l.folder + " may import only the standard library and " +
			strings.Join(l.thirdParty, ", ") + ": " + l.why
	}
	switch {
	case within(dep, banCmd) && !within(rel, banCmd):
		return "nothing imports cmd: cmd is the top of the graph and wires everything"
	case within(dep, banTestenv) && !within(rel, banTestenv) && !slices.Contains(l.mayImport, banTestenv):
		return "only _test.go files and bench may import testenv: the daemon must never carry test rigs"
	case within(dep, l.folder), slices.Contains(l.mayImport, "*"):
		return ""
	}
	for _, f := range l.mayImport {
		if within(dep, f) {
			return ""
		}
	}
	return l.folder + " may import only " + allowedList(l) + ": " + l.why
}

// layerOf returns the layer of the deepest folder containing rel.
func layerOf(rel string) (layer, bool) {
	best, found := layer{}, false
	for _, l := range layers {
		if within(rel, l.folder) && (!found || len(l.folder) > len(best.folder)) {
			best, found = l, true
		}
	}
	return best, found
}

// projectPath returns imp relative to the module ("" for the module root)
// and whether imp is in the module.
func projectPath(imp string) (string, bool) {
	if imp == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(imp, module+"/")
	return rel, ok
}

// within reports whether rel is folder or beneath it. Only the module root
// itself is within "".
func within(rel, folder string) bool {
	return rel == folder || folder != "" && strings.HasPrefix(rel, folder+"/")
}

// isStandard reports whether imp is a standard library package: its first
// element has no dot (module paths of downloaded modules always have one,
// and project paths are handled before this is called).
func isStandard(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

func allowedList(l layer) string {
	if len(l.mayImport) == 0 {
		return "its own packages"
	}
	return "its own packages and " + strings.Join(l.mayImport, ", ")
}
