package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"cloudfs/replicator"
	"cloudfs/segment"
	"cloudfs/ublk"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// A volume is a ublk device's Backend as it is: the store's asynchronous
// writes, flushes and zeroes, and ReadAt, which ublk calls off its queue
// threads. The daemon's backend adds replication and remote IO to it.
var _ ublk.Backend = (*segment.Volume)(nil)

// devices gives every volume of the host a ublk block device, /dev/ublkbN,
// and the symlink <linkDir>/<id>. Its state file records which device id
// serves which volume, so that a daemon restarted after a crash re-attaches
// to its devices (ublk user recovery) instead of making new ones: IO in
// flight is reissued and file systems mounted on them stay usable. Devices
// made without recovery (noRecovery) cannot be re-attached: the kernel
// failed their IO and removed their disks when their daemon died, and the
// restarted daemon deletes what is left of them and makes new ones.
type devices struct {
	log       *slog.Logger
	reg       prometheus.Registerer
	st        *segment.Store
	linkDir   string
	statePath string
	// keep: at shutdown, detach the devices (IO waits for the next serve)
	// instead of deleting them.
	keep bool
	// noRecovery: make devices without ublk user recovery, so that nothing
	// waits for a daemon that died (Config.NoDeviceRecovery).
	noRecovery bool
	acks       *replicator.Acks // writes wait for the replicas of a primary's volume
	rt         *routes          // where the primary of a volume kept here is

	mu      sync.Mutex
	devs    map[segment.ID]*ublk.Device
	claimed map[segment.ID]bool // used by the POSIX shim: no device
}

// startDevices attaches or creates a device for every volume. On a kernel
// without ublk it says so once and returns nil: the host serves everything
// else.
func startDevices(st *segment.Store, cfg Config, reg prometheus.Registerer, acks *replicator.Acks, rt *routes) *devices {
	log := cfg.Logger.With("component", "devices")
	if !ublk.Available() {
		// the module may be there but not loaded; modprobe needs root
		_ = exec.Command("modprobe", "ublk_drv").Run()
	}
	if !ublk.Available() {
		log.Warn("ublk is not available: this kernel has no /dev/ublk-control (ublk_drv, Linux 6.0 or later); " +
			"volumes get no block devices and are served over HTTP only")
		return nil
	}
	d := &devices{log: log, reg: reg, st: st, linkDir: cfg.DeviceLinkDir, keep: cfg.KeepDevices,
		noRecovery: cfg.NoDeviceRecovery, acks: acks, rt: rt,
		statePath: filepath.Join(cfg.DataDir, "devices.json"), devs: map[segment.ID]*ublk.Device{},
		claimed: map[segment.ID]bool{}}
	if err := os.MkdirAll(d.linkDir, 0o755); err != nil {
		log.Error("device links unavailable", "dir", d.linkDir, "err", err)
	}
	if d.noRecovery {
		log.Info("device recovery is off: if this daemon dies, the kernel fails its devices' IO and removes them")
	}
	d.attachAll()
	return d
}

func (d *devices) config(size uint64) ublk.Config {
	return ublk.Config{Size: int64(size), Logger: d.log, Metrics: d.reg, Errno: errnoOf, NoRecovery: d.noRecovery}
}

// backend is what a volume's device reads and writes.
func (d *devices) backend(v *segment.Volume) ublk.Backend {
	return &backend{local: d.acks.Volume(v), rt: d.rt}
}

// attachAll recovers the devices the state file names, creates the missing
// ones and removes leftovers.
func (d *devices) attachAll() {
	state := d.loadState()
	for _, h := range d.st.Heads() {
		if id, ok := state[h.Base]; ok {
			delete(state, h.Base)
			err := d.recover(h.Base, id)
			if err == nil {
				continue
			}
			if d.noRecovery && errors.Is(err, ublk.ErrNotRecoverable) {
				// what --device-recovery=false means, not a fault
				d.log.Info("device of the previous run had no user recovery: removing it, making a new one",
					"volume", h.Base, "dev_id", id, "err", err)
			} else {
				d.log.Warn("device not recoverable; making a new one", "volume", h.Base, "dev_id", id, "err", err)
			}
			d.removeLeftover(id)
		}
		if err := d.add(h.Base); err != nil {
			d.log.Error("volume has no device", "volume", h.Base, "err", err)
		}
	}
	for base, id := range state { // volumes deleted while the daemon was down
		d.log.Info("removing the device of a volume that is gone", "volume", base, "dev_id", id)
		d.removeLeftover(id)
	}
	d.saveState()
}

func (d *devices) recover(base segment.ID, id uint32) error {
	v, err := d.st.Volume(base)
	if err != nil {
		return err
	}
	in, err := v.Info()
	if err != nil {
		return err
	}
	dev, err := ublk.Recover(id, d.backend(v), d.config(in.Size))
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.devs[base] = dev
	d.mu.Unlock()
	d.link(base, dev)
	d.log.Info("device re-attached", "volume", base, "device", dev.BlockPath())
	if d.noRecovery && dev.Flags()&ublk.UBLK_F_USER_RECOVERY != 0 {
		d.log.Info("device keeps the user recovery it was made with until a clean stop deletes it",
			"volume", base, "device", dev.BlockPath())
	}
	return nil
}

func (d *devices) removeLeftover(id uint32) {
	if err := ublk.Remove(id, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		d.log.Warn("leftover device not removed", "dev_id", id, "err", err)
	}
}

// claim takes volume base's device away for the POSIX shim: refused while
// the device is open, else the device is deleted, and the volume gets none
// until release. A nil devices (no ublk) claims anything.
func (d *devices) claim(base segment.ID) error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	d.claimed[base] = true
	d.mu.Unlock()
	if err := d.remove(base, false); err != nil {
		d.mu.Lock()
		delete(d.claimed, base)
		d.mu.Unlock()
		d.log.Warn("the POSIX shim cannot use a volume whose block device is open", "volume", base, "err", err)
		return err
	}
	return nil
}

// release gives a volume the shim stopped using its device again.
func (d *devices) release(base segment.ID) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.claimed, base)
	d.mu.Unlock()
	if _, err := d.st.Volume(base); err == nil {
		if err := d.add(base); err != nil {
			d.log.Error("volume has no device", "volume", base, "err", err)
		}
		d.saveState()
	}
}

// add creates the device of volume base (none while the shim uses it).
func (d *devices) add(base segment.ID) error {
	d.mu.Lock()
	claimed := d.claimed[base]
	d.mu.Unlock()
	if claimed {
		return nil
	}
	v, err := d.st.Volume(base)
	if err != nil {
		return err
	}
	in, err := v.Info()
	if err != nil {
		return err
	}
	if in.Size%4096 != 0 {
		return fmt.Errorf("size %d is not a multiple of 4096, as a block device's must be", in.Size)
	}
	dev, err := ublk.Create(d.backend(v), d.config(in.Size))
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.devs[base] = dev
	d.mu.Unlock()
	d.link(base, dev)
	d.log.Info("device created", "volume", base, "device", dev.BlockPath())
	return nil
}

// sync gives a device to every volume that has none (volumes an applied
// stream created).
func (d *devices) sync() {
	for _, h := range d.st.Heads() {
		d.mu.Lock()
		_, ok := d.devs[h.Base]
		d.mu.Unlock()
		if !ok {
			if err := d.add(h.Base); err != nil {
				d.log.Error("volume has no device", "volume", h.Base, "err", err)
			}
		}
	}
	d.saveState()
}

// remove deletes the device of volume base; unless force, it refuses while
// the device is open.
func (d *devices) remove(base segment.ID, force bool) error {
	d.mu.Lock()
	dev := d.devs[base]
	d.mu.Unlock()
	if dev == nil {
		return nil
	}
	if !force {
		if who := openers(dev.BlockPath()); who != "" {
			return fmt.Errorf("%s is open (%s): %w; close it or delete with --force", dev.BlockPath(), who, replicator.ErrBusy)
		}
	}
	err := dev.Delete()
	d.mu.Lock()
	delete(d.devs, base)
	d.mu.Unlock()
	os.Remove(filepath.Join(d.linkDir, base.String()))
	d.saveState()
	if err != nil {
		d.log.Warn("device delete incomplete", "volume", base, "err", err)
	}
	return nil
}

// path returns the device of volume base, "" for none.
func (d *devices) path(base segment.ID) string {
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dev := d.devs[base]; dev != nil {
		return dev.BlockPath()
	}
	return ""
}

// stop detaches (keep) or deletes every device.
func (d *devices) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for base, dev := range d.devs {
		var err error
		if d.keep {
			err = dev.Detach()
		} else {
			err = dev.Delete()
			os.Remove(filepath.Join(d.linkDir, base.String()))
		}
		if err != nil {
			d.log.Warn("device stop incomplete", "volume", base, "err", err)
		}
	}
	if !d.keep {
		d.devs = map[segment.ID]*ublk.Device{}
	}
	d.saveStateLocked()
}

func (d *devices) link(base segment.ID, dev *ublk.Device) {
	l := filepath.Join(d.linkDir, base.String())
	os.Remove(l)
	if err := os.Symlink(dev.BlockPath(), l); err != nil {
		d.log.Warn("device link not made", "link", l, "err", err)
	}
}

func (d *devices) loadState() map[segment.ID]uint32 {
	out := map[segment.ID]uint32{}
	b, err := os.ReadFile(d.statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	var m map[string]uint32
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		d.log.Warn("device state unreadable; devices get made anew", "path", d.statePath, "err", err)
		return out
	}
	for k, v := range m {
		if id, err := segment.ParseID(k); err == nil {
			out[id] = v
		}
	}
	return out
}

func (d *devices) saveState() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.saveStateLocked()
}

// saveStateLocked writes the state file atomically (temporary file, fsync,
// rename).
func (d *devices) saveStateLocked() {
	m := map[string]uint32{}
	for base, dev := range d.devs {
		m[base.String()] = dev.ID()
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	tmp := d.statePath + ".tmp"
	f, err := os.Create(tmp)
	if err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, d.statePath)
	}
	if err != nil {
		d.log.Error("device state not saved: a restart after a crash makes new devices", "err", err)
	}
}

// openers says who holds the block device at path open: "mounted" when the
// kernel does (an exclusive open fails), else the processes with a
// descriptor on it, "" for nobody.
func openers(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return "mounted or held by the kernel"
	}
	if err == nil {
		unix.Close(fd)
	}
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fdPath := range procs {
		if target, err := os.Readlink(fdPath); err == nil && target == path {
			pid := strings.Split(fdPath, "/")[2]
			if pid != strconv.Itoa(os.Getpid()) {
				pids = append(pids, "pid "+pid)
			}
		}
	}
	return strings.Join(pids, ", ")
}
