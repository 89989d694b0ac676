package cloudfs_test

import (
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPackageDocs checks that every directory holding a package has exactly
// one package doc comment, in doc.go, opening with "// Package <name> " on
// the line directly above the package clause. A blank line in between
// detaches the comment and go doc shows nothing (pebble's record package).
func TestPackageDocs(t *testing.T) {
	dirs := packageDirs(t)
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		checkPackageDoc(t, dir, dirs[dir])
	}
}

// packageDirs returns every directory under the module root that holds
// non-test .go files, with those files.
func packageDirs(t *testing.T) map[string][]string {
	t.Helper()
	dirs := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			// The go command ignores testdata and names starting with "." or
			// "_" (.git, .bin, .ci).
			if path != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func checkPackageDoc(t *testing.T, dir string, files []string) {
	t.Helper()
	fset := token.NewFileSet()
	var docs []string // files with a package doc comment
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if neverBuilt(f) {
			continue // a generator run by go run, not part of the package
		}
		if f.Doc == nil {
			if filepath.Base(path) == "doc.go" {
				checkDetached(t, fset, path, f)
			}
			continue
		}
		docs = append(docs, path)
		if want := "// Package " + f.Name.Name + " "; !strings.HasPrefix(f.Doc.List[0].Text, want) {
			t.Errorf("%s: package doc starts %q, want %q", path, firstLine(f.Doc.List[0].Text), want)
		}
	}
	want := filepath.Join(dir, "doc.go")
	switch {
	case len(docs) == 0:
		t.Errorf("%s: no package doc: write it in %s, directly above the package clause", dir, want)
	case len(docs) > 1 || docs[0] != want:
		t.Errorf("%s: package doc in %s, want it only in %s", dir, strings.Join(docs, ", "), want)
	}
}

// checkDetached reports a "// Package" comment that a blank line separates
// from the package clause of doc.go.
func checkDetached(t *testing.T, fset *token.FileSet, path string, f *ast.File) {
	t.Helper()
	for _, g := range f.Comments {
		if g.Pos() < f.Package && strings.HasPrefix(g.Text(), "Package ") {
			t.Errorf("%s:%d: package doc is detached: delete the blank line between it and the package clause",
				path, fset.Position(g.End()).Line)
		}
	}
}

// neverBuilt reports whether the file is excluded by //go:build ignore, the
// convention for programs such as generators that sit beside a package: its
// constraint holds with every tag set but not with every tag but "ignore".
func neverBuilt(f *ast.File) bool {
	for _, g := range f.Comments {
		if g.Pos() >= f.Package {
			break
		}
		for _, c := range g.List {
			expr, err := constraint.Parse(c.Text)
			if err == nil && expr.Eval(func(string) bool { return true }) &&
				!expr.Eval(func(tag string) bool { return tag != "ignore" }) {
				return true
			}
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
