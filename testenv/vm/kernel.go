package vm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// kernel is an unpacked Debian kernel in the cache:
//
//	<cache>/kernel-<suite>-<flavour>/
//	    vmlinuz, config, version    from the .deb's /boot
//	    lib/modules/<version>/kernel/...   the .deb's modules (.ko.xz)
//	    ko/<name>.ko                modules decompressed on first use
//	    ready                       written last: the rest is complete
type kernel struct {
	dir     string
	version string
	index   map[string]string // module name (with _) -> .ko.xz path
}

func (k *kernel) vmlinuz() string { return filepath.Join(k.dir, "vmlinuz") }

// kernelDir returns where the cache keeps the kernel of c.
func (c Config) kernelDir() string {
	return filepath.Join(c.CacheDir, "kernel-"+c.Suite+"-"+c.Flavour)
}

// ensureKernel returns the cached kernel, fetching it first if the cache has
// none. The caller holds the cache lock.
func (r *runner) ensureKernel() (*kernel, error) {
	dir := r.cfg.kernelDir()
	if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
		if err := r.fetchKernel(dir); err != nil {
			return nil, err
		}
	}
	v, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		return nil, err
	}
	return &kernel{dir: dir, version: strings.TrimSpace(string(v))}, nil
}

// fetchKernel downloads linux-image-<flavour> of the configured suite with a
// private apt configuration under the cache (the host's sources, package
// lists and dpkg state stay untouched; the .deb is unpacked, never
// installed). The version is not pinned: security updates drop superseded
// builds, so the metapackage is resolved each time the cache is empty.
func (r *runner) fetchKernel(dir string) error {
	start := time.Now()
	c := r.cfg
	r.logf("fetching Debian %s linux-image-%s into %s (once; about 35 MB)", c.Suite, c.Flavour, dir)
	aptDir := filepath.Join(c.CacheDir, "apt")
	opts, err := privateApt(aptDir, c.Suite)
	if err != nil {
		return err
	}
	if out, err := command("apt-get", append(opts, "update", "-qq")...); err != nil {
		return fmt.Errorf("apt-get update of %s: %w\n%s", c.Suite, err, out)
	}
	out, err := command("apt-cache", append(opts, "depends", "linux-image-"+c.Flavour)...)
	if err != nil {
		return fmt.Errorf("apt-cache depends linux-image-%s: %w\n%s", c.Flavour, err, out)
	}
	pkg := imagePackage(string(out))
	if pkg == "" {
		return fmt.Errorf("linux-image-%s of %s depends on no linux-image package:\n%s", c.Flavour, c.Suite, out)
	}
	tmp, err := os.MkdirTemp(c.CacheDir, "fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", append(opts, "download", "-qq", pkg)...)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	r.logf("downloaded %s in %.1fs; unpacking", pkg, time.Since(start).Seconds())
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := command("dpkg-deb", "-x", debs[0], root); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	if err := installKernel(root, dir); err != nil {
		return fmt.Errorf("%s: %w", pkg, err)
	}
	r.logf("kernel %s ready in %.1fs", pkg, time.Since(start).Seconds())
	// The package lists (20 MB) are fetched anew with the next kernel.
	return os.RemoveAll(aptDir)
}

// privateApt writes an apt configuration for suite (and its security
// suite) of the host's own Debian archive under dir and returns the apt
// options that select it. DEP-11 metadata is off: 5 MB nobody reads.
func privateApt(dir, suite string) ([]string, error) {
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	out, err := command("apt-get", "indextargets", "--format", "$(REPO_URI)")
	if err != nil {
		return nil, fmt.Errorf("apt-get indextargets: %w\n%s", err, out)
	}
	main, sec := archiveURIs(string(out))
	if main == "" {
		return nil, fmt.Errorf("no Debian archive in the host's apt sources")
	}
	const key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
	src := fmt.Sprintf("deb %s %s %s main\n", key, main, suite)
	if sec != "" {
		src += fmt.Sprintf("deb %s %s %s-security main\n", key, sec, suite)
	}
	list := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(list, []byte(src), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"-o", "Dir::Etc::sourcelist=" + list,
		"-o", "Dir::Etc::sourceparts=/nonexistent",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		// The download lands in a root-owned temporary directory that the
		// _apt user cannot enter; apt then warns and downloads as root.
		"-o", "APT::Sandbox::User=root",
	}, nil
}

// archiveURIs picks the Debian archive and its security archive out of
// apt-get indextargets output (one repository URI per line).
func archiveURIs(out string) (main, sec string) {
	for _, u := range strings.Fields(out) {
		u = strings.TrimSuffix(u, "/")
		switch {
		case strings.Contains(u, "-security"):
			if sec == "" {
				sec = u
			}
		case strings.Contains(strings.ToLower(u), "debian"):
			if main == "" {
				main = u
			}
		}
	}
	return main, sec
}

// imagePackage returns the first linux-image-* dependency in apt-cache
// depends output: the ABI-versioned package of a flavour's metapackage.
func imagePackage(out string) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1]
		}
	}
	return ""
}

// installKernel moves the kernel, its config and its module tree from an
// unpacked .deb at root into dir, checking that it has ublk.
func installKernel(root, dir string) error {
	versions, err := os.ReadDir(filepath.Join(root, "usr/lib/modules"))
	if err != nil {
		return err
	}
	if len(versions) != 1 {
		return fmt.Errorf("usr/lib/modules holds %d module trees, want one", len(versions))
	}
	kv := versions[0].Name()
	config, err := os.ReadFile(filepath.Join(root, "boot", "config-"+kv))
	if err != nil {
		return err
	}
	if !bytes.Contains(config, []byte("\nCONFIG_BLK_DEV_UBLK=m")) && !bytes.Contains(config, []byte("\nCONFIG_BLK_DEV_UBLK=y")) {
		return fmt.Errorf("kernel %s has no CONFIG_BLK_DEV_UBLK", kv)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib/modules"), 0o755); err != nil {
		return err
	}
	moves := [][2]string{
		{filepath.Join(root, "boot", "vmlinuz-"+kv), filepath.Join(dir, "vmlinuz")},
		{filepath.Join(root, "boot", "config-"+kv), filepath.Join(dir, "config")},
		{filepath.Join(root, "usr/lib/modules", kv), filepath.Join(dir, "lib/modules", kv)},
	}
	for _, m := range moves {
		if err := os.Rename(m[0], m[1]); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte(kv+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644)
}

// modName normalises a module name: the kernel treats - and _ alike.
func modName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz", ".ko"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(s, "-", "_")
}

// buildIndex maps every module of the kernel's tree to its file.
func (k *kernel) buildIndex() error {
	k.index = map[string]string{}
	tree := filepath.Join(k.dir, "lib/modules", k.version, "kernel")
	return filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			k.index[modName(d.Name())] = p
		}
		return err
	})
}

// module is a decompressed module ready for the guest.
type module struct {
	name string
	rel  string // path under lib/modules/<version>, as in modules.dep
	file string // decompressed .ko in the cache
	deps []string
}

// resolve returns the modules named, after their dependencies, each once,
// decompressing them into the cache on first use. Modules built into the
// kernel (=y) are not in the tree and are skipped when builtin says so.
func (k *kernel) resolve(names []string) ([]module, error) {
	if k.index == nil {
		if err := k.buildIndex(); err != nil {
			return nil, err
		}
	}
	var out []module
	done := map[string]bool{}
	var visit func(name string, stack []string) error
	visit = func(name string, stack []string) error {
		name = modName(name)
		if done[name] {
			return nil
		}
		if slices.Contains(stack, name) {
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(stack, name), " -> "))
		}
		src, ok := k.index[name]
		if !ok {
			if k.builtin(name) {
				done[name] = true
				return nil
			}
			return fmt.Errorf("kernel %s has no module %s", k.version, name)
		}
		m, err := k.decompress(name, src)
		if err != nil {
			return err
		}
		for _, d := range m.deps {
			if err := visit(d, append(stack, name)); err != nil {
				return err
			}
		}
		done[name] = true
		out = append(out, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// builtin reports whether the kernel's modules.builtin lists name.
func (k *kernel) builtin(name string) bool {
	b, err := os.ReadFile(filepath.Join(k.dir, "lib/modules", k.version, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, line := range strings.Fields(string(b)) {
		if modName(line) == name {
			return true
		}
	}
	return false
}

// decompress returns module name from its compressed file src, decompressed
// into the cache the first time, with the dependencies its .modinfo names.
func (k *kernel) decompress(name, src string) (module, error) {
	tree := filepath.Join(k.dir, "lib/modules", k.version)
	rel, err := filepath.Rel(tree, src)
	if err != nil {
		return module{}, err
	}
	rel = strings.TrimSuffix(strings.TrimSuffix(rel, ".xz"), ".zst")
	dst := filepath.Join(k.dir, "ko", name+".ko")
	if _, err := os.Stat(dst); err != nil {
		if err := decompressFile(src, dst); err != nil {
			return module{}, err
		}
	}
	deps, err := moduleDeps(dst)
	if err != nil {
		return module{}, err
	}
	return module{name: name, rel: rel, file: dst, deps: deps}, nil
}

// decompressFile writes src (.ko.xz, .ko.zst or .ko) uncompressed to dst:
// the .deb ships compressed modules and the guest loads them with
// finit_module, which takes them as they are only if the kernel was built
// to decompress them; decompressing on the host works for every kernel.
func decompressFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	var cmd *exec.Cmd
	switch filepath.Ext(src) {
	case ".xz":
		cmd = exec.Command("xz", "-dc", src)
	case ".zst":
		cmd = exec.Command("zstd", "-dc", src)
	default:
		cmd = exec.Command("cat", src)
	}
	// A temporary name, then a rename: parallel runs may decompress at once.
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	cmd.Stdout = f
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	return os.Rename(tmp, dst)
}

// moduleDeps reads the depends= field of a module's .modinfo section.
func moduleDeps(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ko, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", ko, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			return fields(string(v)), nil
		}
	}
	return nil, nil
}
