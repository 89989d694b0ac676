package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// spec is what the guest runs, written into the initramfs as specPath.
type spec struct {
	Program string   // guest path of the program, the same as on the host
	Args    []string // its arguments, without the program
	Dir     string   // its working directory
	Env     []string // its whole environment
	Modules []string // guest paths of the modules to load at boot, in order
	Devices []string // device nodes to wait for before the program starts
	Outputs []string // directories whose files come back to the host
}

// Guest paths the runner and the guest agent agree on.
const (
	specPath = "/cloudfs-vm/spec.json"
	initPath = "/init" // the kernel's rdinit default
	// exitMarker precedes the program's exit status on the status port
	// (and, for people reading it, on the console).
	exitMarker = "CLOUDFS-VM-EXIT rc="
	// startMarker precedes the guest uptime when the program starts.
	startMarker = "CLOUDFS-VM-START uptime="
	// errorMarker precedes a guest agent failure, in place of exitMarker.
	errorMarker = "CLOUDFS-VM-ERROR "
)

// image collects the initramfs of one run.
type image struct {
	w    *cpioWriter
	path []string // directories of passed executables, first in the guest's PATH
}

// buildImage writes the initramfs of a run to file: the guest agent as
// /init, the spec, the program and its working directory, the extra files
// and programs, busybox, and the kernel modules.
func (r *runner) buildImage(file string, k *kernel, s *spec) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	im := &image{w: newCPIOWriter(bw)}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "root", "mnt", "etc"} {
		im.w.Dir(d)
	}
	// The kernel opens /dev/console as the stdin, stdout and stderr of
	// /init, before devtmpfs is mounted: the agent's own panics reach the
	// console through it.
	im.w.CharDev("/dev/console", 5, 1)
	steps := []func() error{
		func() error { return im.agent() },
		func() error { return im.program(s.Program) },
		func() error { return im.workDir(s.Dir) },
		func() error { return im.files(r.cfg.Files) },
		func() error { return im.programs(r.cfg.Programs) },
		func() error { return im.busybox() },
		func() error { return im.modules(k, r.cfg.Modules, s) },
		func() error { im.etc(); return nil },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	s.Env = guestEnv(os.Environ(), r.cfg.Env, strings.Join(append(im.path, guestPath), ":"))
	js, err := json.Marshal(s)
	if err != nil {
		return err
	}
	im.w.Bytes(specPath, 0o644, js)
	if err := im.w.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// agent adds this executable as /init: run as PID 1 it is the guest agent.
// It must be static, for the guest has no loader unless a program brings one.
func (im *image) agent() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	static, err := isStatic(self)
	if err != nil {
		return err
	}
	if !static {
		return fmt.Errorf("%s is linked dynamically: build the runner with CGO_ENABLED=0", self)
	}
	im.w.File(initPath, self)
	return nil
}

// program adds the program at its host path, with its shared libraries if
// it is dynamic (a cgo or -race test binary).
func (im *image) program(p string) error {
	libs, err := sharedLibs(p)
	if err != nil {
		return err
	}
	im.w.File(p, p)
	for _, l := range libs {
		im.w.File(l, l)
	}
	return nil
}

// workDir adds the files of dir, a package directory, and its testdata
// tree at the same path: what go test's tests may read. Other
// subdirectories hold other packages and stay out.
func (im *image) workDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	im.w.Dir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Name() == "testdata" && e.IsDir():
			if err := im.tree(p); err != nil {
				return err
			}
		case e.Type().IsRegular():
			im.w.File(p, p)
		}
	}
	return nil
}

// tree adds a host file, symlink or directory tree at the same path.
func (im *image) tree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			im.w.Dir(p)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			im.w.Symlink(p, target)
		case d.Type().IsRegular():
			im.w.File(p, p)
		}
		return nil
	})
}

// files adds the files and trees of CLOUDFS_VM_FILES; the directory of
// each executable file goes into the guest's PATH.
func (im *image) files(files []string) error {
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("CLOUDFS_VM_FILES: %w", err)
		}
		if fi.IsDir() {
			if err := im.tree(f); err != nil {
				return err
			}
			continue
		}
		if err := im.program(f); err != nil {
			return err
		}
		if fi.Mode()&0o111 != 0 && !slices.Contains(im.path, filepath.Dir(f)) {
			im.path = append(im.path, filepath.Dir(f))
		}
	}
	return nil
}

// programs adds host programs with their libraries, and the configuration
// files some of them read.
func (im *image) programs(names []string) error {
	for _, n := range names {
		p, err := lookProgram(n)
		if err != nil {
			return err
		}
		if err := im.program(p); err != nil {
			return err
		}
	}
	for _, conf := range []string{"/etc/mke2fs.conf", "/etc/e2fsck.conf"} {
		if _, err := os.Stat(conf); err == nil {
			im.w.File(conf, conf)
		}
	}
	return nil
}

// busybox adds the host's busybox and a link for each of its applets
// (sh, mount, dd, ...) that no host program took.
func (im *image) busybox() error {
	bb, err := lookProgram("busybox")
	if err != nil {
		return err
	}
	if err := im.program(bb); err != nil {
		return err
	}
	im.w.Symlink("/bin/busybox", bb)
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		im.w.Symlink(applet, "/bin/busybox")
	}
	return nil
}

// modules adds the boot modules, the configured ones and the extra ones
// with their dependencies and a modules.dep, so busybox modprobe finds them,
// and lists the ones to load at boot in s.
func (im *image) modules(k *kernel, more []string, s *spec) error {
	boot, err := k.resolve(append(slices.Clone(bootModules), more...))
	if err != nil {
		return err
	}
	all, err := k.resolve(append(append(slices.Clone(bootModules), more...), extraModules...))
	if err != nil {
		return err
	}
	base := path.Join("/lib/modules", k.version)
	rels := map[string]string{}
	for _, m := range all {
		rels[m.name] = m.rel
	}
	var dep strings.Builder
	for _, m := range all {
		im.w.File(path.Join(base, m.rel), m.file)
		fmt.Fprintf(&dep, "%s:", m.rel)
		for _, d := range m.deps {
			if r, ok := rels[modName(d)]; ok {
				fmt.Fprintf(&dep, " %s", r)
			}
		}
		dep.WriteString("\n")
	}
	im.w.Bytes(path.Join(base, "modules.dep"), 0o644, []byte(dep.String()))
	for _, m := range boot {
		s.Modules = append(s.Modules, path.Join(base, m.rel))
	}
	return nil
}

// etc adds the few files programs expect in /etc.
func (im *image) etc() {
	im.w.Bytes("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"))
	im.w.Bytes("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	im.w.Bytes("/etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	im.w.Bytes("/etc/hostname", 0o644, []byte("cloudfs-vm\n"))
	im.w.Symlink("/etc/mtab", "/proc/self/mounts")
}
