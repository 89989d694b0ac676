package vm

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os/exec"
	"regexp"
)

// MarkerSymbol is the function whose presence in a test binary sends it to
// the VM in auto mode. testenv's VM-only requirements (RequireUblk) call it,
// so a package's tests go to the VM exactly when they can use it; it is
// marked go:noinline so that it stays a function of its own.
const MarkerSymbol = "cloudfs/testenv.needsVM"

// WantsVM reports whether the Go program at path has the function
// MarkerSymbol. go test strips the symbol table of the binaries it runs
// (-s), so the function table the runtime keeps for tracebacks
// (.gopclntab) is read instead. A program that is not written in Go has
// no such table and does not want the VM: run it with mode vm.
func WantsVM(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		return false, nil
	}
	data, err := pcln.Data()
	if err != nil {
		return false, fmt.Errorf("%s: .gopclntab: %w", path, err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return false, fmt.Errorf("%s: .gopclntab: %w", path, err)
	}
	return tab.LookupFunc(MarkerSymbol) != nil, nil
}

// isStatic reports whether the ELF file at path has no program interpreter,
// that is, runs without the dynamic loader and shared libraries.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// lddPath matches the absolute paths in ldd output: the libraries after
// "=>" and the loader on a line of its own.
var lddPath = regexp.MustCompile(`(?m)(?:=> |^\s+)(/\S+)`)

// sharedLibs returns the shared libraries and the loader that the dynamic
// executable at path needs, as ldd resolves them on the host. A static
// executable needs none.
func sharedLibs(path string) ([]string, error) {
	static, err := isStatic(path)
	if err != nil || static {
		return nil, err
	}
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	var libs []string
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return unique(libs), nil
}
