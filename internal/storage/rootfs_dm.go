package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// This file holds the dm-snapshot backend: loop devices from losetup,
// the snapshot device from dmsetup. Argument lists and the table come
// from the pure functions at the top.

const (
	// sectorSize is the unit of device-mapper tables.
	sectorSize = 512
	// snapshotChunkSectors is the snapshot's chunk: 8 sectors, 4 KiB,
	// the block size of banger's ext4 images.
	snapshotChunkSectors = 8
	// dmDevDir holds the device-mapper devices by name.
	dmDevDir = "/dev/mapper"
	// maxDMName is the longest device-mapper name (DM_NAME_LEN - 1).
	maxDMName = 127
)

// snapshotTable is the dmsetup table of a persistent snapshot of origin
// (sectors long) whose changes go to cow, in 4 KiB chunks:
// "0 <sectors> snapshot <origin> <cow> P 8".
func snapshotTable(sectors int64, origin, cow string) string {
	return fmt.Sprintf("0 %d snapshot %s %s P %d", sectors, origin, cow, snapshotChunkSectors)
}

// losetupAttachArgs attaches file to the first free loop device and
// prints its name.
func losetupAttachArgs(file string, readOnly bool) []string {
	args := []string{"--find", "--show"}
	if readOnly {
		args = append(args, "--read-only")
	}
	return append(args, file)
}

// losetupDetachArgs detaches a loop device.
func losetupDetachArgs(dev string) []string { return []string{"--detach", dev} }

// dmsetupCreateArgs creates device name with a one-line table.
func dmsetupCreateArgs(name, table string) []string {
	return []string{"create", name, "--table", table}
}

// dmsetupRemoveArgs removes device name. banger retries busy removals
// itself, with its own bound, instead of dmsetup's --retry.
func dmsetupRemoveArgs(name string) []string { return []string{"remove", name} }

// checkDMName accepts names dmsetup takes and that carry no path.
func checkDMName(name string) error {
	switch {
	case name == "":
		return errdefs.Invalid(errors.New("device-mapper name is empty"))
	case len(name) > maxDMName:
		return errdefs.Invalid(fmt.Errorf("device-mapper name %q is longer than %d bytes", name, maxDMName))
	case name == "." || name == ".." || name == "control":
		return errdefs.Invalid(fmt.Errorf("device-mapper name %q is reserved", name))
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || r == '/' {
			return errdefs.Invalid(fmt.Errorf("device-mapper name %q contains a slash, space or control character", name))
		}
	}
	return nil
}

// toolErrno reads the errno a failed losetup or dmsetup reports on
// stderr; these tools say nothing else machine-readable. 0 when none is
// recognised.
func toolErrno(err error) syscall.Errno {
	var he *hostexec.Error
	if !errors.As(err, &he) {
		return 0
	}
	// Longest first: "No such device" is a prefix of the ENXIO text.
	stderr := strings.ToLower(he.Stderr)
	for _, e := range []syscall.Errno{unix.ENXIO, unix.ENODEV, unix.EBUSY, unix.ENOENT} {
		if strings.Contains(stderr, e.Error()) {
			return e
		}
	}
	return 0
}

// devOps runs the host tools of the dm-snapshot backend; tests replace
// the runner and the clock.
type devOps struct {
	run      func(ctx context.Context, name string, args ...string) ([]byte, error)
	sleep    func(ctx context.Context, d time.Duration) error
	sysBlock string // /sys/block
}

var hostDevOps = devOps{run: hostexec.Run, sleep: sleepContext, sysBlock: "/sys/block"}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The bound of a busy device-mapper removal: a VMM that just exited may
// hold the device for a moment, udev may be probing it.
const (
	dmRemoveAttempts   = 10
	dmRemoveFirstDelay = 50 * time.Millisecond
	dmRemoveMaxDelay   = time.Second
)

func activateRootfs(ctx context.Context, o devOps, r Rootfs) (_ Rootfs, err error) {
	if r.Backend != RootfsDMSnapshot {
		if _, err := os.Stat(r.Path); err != nil {
			return Rootfs{}, fmt.Errorf("activate rootfs %q: %w", r.Path, err)
		}
		r.Device = r.Path
		return r, nil
	}
	if err := checkDMName(r.DMName); err != nil {
		return Rootfs{}, fmt.Errorf("activate rootfs %q: %w", r.Path, err)
	}
	st, err := os.Stat(r.Base)
	if err != nil {
		return Rootfs{}, fmt.Errorf("activate rootfs %q: image rootfs: %w", r.Path, err)
	}
	if st.Size() == 0 || st.Size()%sectorSize != 0 {
		return Rootfs{}, errdefs.Invalid(fmt.Errorf("activate rootfs %q: image rootfs %s has size %d, not a positive multiple of %d", r.Path, r.Base, st.Size(), sectorSize))
	}
	if _, err := os.Stat(r.Path); err != nil {
		return Rootfs{}, fmt.Errorf("activate rootfs %q: cow file: %w", r.Path, err)
	}

	var undo undoStack
	defer func() {
		if err != nil {
			err = errors.Join(err, undo.run(ctx))
		}
	}()
	r.BaseLoop, err = o.attachLoop(ctx, r.Base, true)
	if err != nil {
		return Rootfs{}, fmt.Errorf("activate rootfs %q: %w", r.Path, err)
	}
	undo.push(func(ctx context.Context) error { return o.detachLoop(ctx, r.BaseLoop, r.Base) })
	r.COWLoop, err = o.attachLoop(ctx, r.Path, false)
	if err != nil {
		return Rootfs{}, fmt.Errorf("activate rootfs %q: %w", r.Path, err)
	}
	undo.push(func(ctx context.Context) error { return o.detachLoop(ctx, r.COWLoop, r.Path) })
	table := snapshotTable(st.Size()/sectorSize, r.BaseLoop, r.COWLoop)
	if _, err := o.run(ctx, "dmsetup", dmsetupCreateArgs(r.DMName, table)...); err != nil {
		// A create that failed part-way can leave the name behind.
		undo.push(func(ctx context.Context) error { return o.removeDM(ctx, r.DMName) })
		return Rootfs{}, fmt.Errorf("activate rootfs %q: create device-mapper device %q: %w", r.Path, r.DMName, err)
	}
	r.Device = filepath.Join(dmDevDir, r.DMName)
	return r, nil
}

func deactivateRootfs(ctx context.Context, o devOps, r Rootfs) error {
	if r.DMName != "" {
		if err := o.removeDM(ctx, r.DMName); err != nil {
			return fmt.Errorf("deactivate rootfs %q: %w", r.Path, err)
		}
	}
	// Both loops are tried even when one fails.
	var errs []error
	if r.COWLoop != "" {
		errs = append(errs, o.detachLoop(ctx, r.COWLoop, r.Path))
	}
	if r.BaseLoop != "" {
		errs = append(errs, o.detachLoop(ctx, r.BaseLoop, r.Base))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deactivate rootfs %q: %w", r.Path, err)
	}
	return nil
}

// attachLoop attaches file to a free loop device and returns its path.
func (o devOps) attachLoop(ctx context.Context, file string, readOnly bool) (string, error) {
	out, err := o.run(ctx, "losetup", losetupAttachArgs(file, readOnly)...)
	if err != nil {
		return "", fmt.Errorf("attach loop device to %s: %w", file, err)
	}
	dev := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/loop") {
		return "", fmt.Errorf("attach loop device to %s: losetup printed %q, not a loop device", file, dev)
	}
	return dev, nil
}

// detachLoop detaches dev when it is attached to backing; a loop device
// that is already free is fine, one that a later user attached to
// another file is left alone with an error. An empty backing skips the
// check.
func (o devOps) detachLoop(ctx context.Context, dev, backing string) error {
	name := filepath.Base(dev)
	if !strings.HasPrefix(dev, "/dev/loop") || !strings.HasPrefix(name, "loop") {
		return errdefs.Invalid(fmt.Errorf("detach loop device %q: not a loop device", dev))
	}
	data, err := os.ReadFile(filepath.Join(o.sysBlock, name, "loop", "backing_file"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // not attached (or no such device)
	}
	if err != nil {
		return fmt.Errorf("detach loop device %s: %w", dev, err)
	}
	if backing != "" && !sameBackingFile(strings.TrimSpace(string(data)), backing) {
		return fmt.Errorf("detach loop device %s: it now backs %s, not %s; left alone", dev, strings.TrimSpace(string(data)), backing)
	}
	if _, err := o.run(ctx, "losetup", losetupDetachArgs(dev)...); err != nil {
		switch toolErrno(err) {
		case unix.ENXIO, unix.ENODEV, unix.ENOENT:
			return nil // detached meanwhile
		}
		return fmt.Errorf("detach loop device %s: %w", dev, err)
	}
	return nil
}

// sameBackingFile compares the backing file the kernel reports (absolute,
// symlinks resolved, " (deleted)" appended once removed) with want.
func sameBackingFile(kernel, want string) bool {
	kernel = strings.TrimSuffix(kernel, " (deleted)")
	if abs, err := filepath.Abs(want); err == nil {
		want = abs
	}
	if kernel == filepath.Clean(want) {
		return true
	}
	if resolved, err := filepath.EvalSymlinks(want); err == nil && kernel == resolved {
		return true
	}
	return false
}

// removeDM removes device name, retrying with a bounded backoff while it
// is busy. A device that does not exist is already removed.
func (o devOps) removeDM(ctx context.Context, name string) error {
	delay := dmRemoveFirstDelay
	for attempt := 1; ; attempt++ {
		_, err := o.run(ctx, "dmsetup", dmsetupRemoveArgs(name)...)
		if err == nil {
			return nil
		}
		switch toolErrno(err) {
		case unix.ENXIO, unix.ENODEV:
			return nil
		case unix.EBUSY:
			if attempt >= dmRemoveAttempts {
				return fmt.Errorf("remove device-mapper device %q: still busy after %d attempts: %w", name, attempt, err)
			}
			if err := o.sleep(ctx, delay); err != nil {
				return fmt.Errorf("remove device-mapper device %q: %w", name, err)
			}
			delay = min(2*delay, dmRemoveMaxDelay)
			continue
		}
		return fmt.Errorf("remove device-mapper device %q: %w", name, err)
	}
}

// dmProbe names what DeviceMapperAvailable looks at, so tests can fake
// the host.
type dmProbe struct {
	Control    string // /dev/mapper/control
	ProcMisc   string // /proc/misc
	SysModule  string // /sys/module
	ModulesDir string // /lib/modules/<release>
	LookPath   func(string) (string, error)
	Run        func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// DeviceMapperAvailable reports whether dm-snapshot root disks can be
// made here: a device-mapper control node the kernel answers on, dmsetup,
// and the snapshot target (loaded, or a module the kernel can load). The
// string says what is missing, or what was found.
func DeviceMapperAvailable(ctx context.Context) (bool, string) {
	var uts unix.Utsname
	release := ""
	if unix.Uname(&uts) == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	return deviceMapperAvailable(ctx, dmProbe{
		Control:    filepath.Join(dmDevDir, "control"),
		ProcMisc:   "/proc/misc",
		SysModule:  "/sys/module",
		ModulesDir: filepath.Join("/lib/modules", release),
		LookPath:   lookPath,
		Run:        hostexec.Run,
	})
}

func lookPath(name string) (string, error) { return hostexec.Look(name, "dmsetup") }

func deviceMapperAvailable(ctx context.Context, p dmProbe) (bool, string) {
	// The order matters: dmsetup creates a missing control node itself,
	// so it runs only once the node and the kernel driver are there.
	if _, err := os.Stat(p.Control); err != nil {
		return false, "no " + p.Control
	}
	misc, err := os.ReadFile(p.ProcMisc)
	if err != nil {
		return false, fmt.Sprintf("read %s: %v", p.ProcMisc, err)
	}
	if !hasMiscDevice(misc, "device-mapper") {
		return false, fmt.Sprintf("the kernel has no device-mapper driver (not in %s)", p.ProcMisc)
	}
	if _, err := p.LookPath("dmsetup"); err != nil {
		return false, err.Error()
	}
	out, err := p.Run(ctx, "dmsetup", "targets")
	if err != nil {
		return false, fmt.Sprintf("dmsetup targets: %v", err)
	}
	if hasTarget(out, "snapshot") {
		return true, "device-mapper with the snapshot target"
	}
	if _, err := os.Stat(filepath.Join(p.SysModule, "dm_snapshot")); err == nil {
		return true, "device-mapper, dm_snapshot module loaded"
	}
	if moduleKnown(p.ModulesDir, "dm-snapshot.ko") {
		return true, "device-mapper, dm_snapshot module loads on demand"
	}
	return false, "device-mapper has no snapshot target (dm_snapshot module missing)"
}

// hasMiscDevice reports whether /proc/misc lists name ("236 device-mapper").
func hasMiscDevice(misc []byte, name string) bool {
	sc := bufio.NewScanner(bytes.NewReader(misc))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[1] == name {
			if _, err := strconv.Atoi(f[0]); err == nil {
				return true
			}
		}
	}
	return false
}

// hasTarget reports whether `dmsetup targets` output ("snapshot v1.16.0")
// lists target.
func hasTarget(out []byte, target string) bool {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == target {
			return true
		}
	}
	return false
}

// moduleKnown reports whether modules.dep or modules.builtin of dir
// lists a module file named file (possibly compressed).
func moduleKnown(dir, file string) bool {
	for _, list := range []string{"modules.builtin", "modules.dep"} {
		data, err := os.ReadFile(filepath.Join(dir, list))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			path, _, _ := strings.Cut(sc.Text(), ":")
			base := filepath.Base(path)
			for _, ext := range []string{"", ".xz", ".zst", ".gz"} {
				if base == file+ext {
					return true
				}
			}
		}
	}
	return false
}
