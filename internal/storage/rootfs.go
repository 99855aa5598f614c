package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// RootfsBackend is how a VM gets its own writable root disk over an
// image's raw rootfs when its VMM takes raw disks only (Firecracker).
type RootfsBackend string

// The rootfs backends, best first.
const (
	// RootfsDMSnapshot is a device-mapper snapshot: the image rootfs on a
	// read-only loop device as origin, a sparse COW file on a second
	// loop device takes the VM's writes. Nothing is copied.
	RootfsDMSnapshot RootfsBackend = "dm-snapshot"
	// RootfsReflink is a reflink copy (FICLONE): blocks are shared with
	// the image until written. Needs btrfs, XFS or another filesystem
	// that shares extents.
	RootfsReflink RootfsBackend = "reflink"
	// RootfsSparse is a sparse copy: the image's data extents are
	// copied, its holes stay holes.
	RootfsSparse RootfsBackend = "sparse"
)

// ParseRootfsBackend checks a backend name.
func ParseRootfsBackend(s string) (RootfsBackend, error) {
	switch b := RootfsBackend(s); b {
	case RootfsDMSnapshot, RootfsReflink, RootfsSparse:
		return b, nil
	}
	return "", errdefs.Invalid(fmt.Errorf("rootfs backend %q: want %s, %s or %s", s, RootfsDMSnapshot, RootfsReflink, RootfsSparse))
}

// RootfsRequest describes a VM's root disk to create.
type RootfsRequest struct {
	Backend RootfsBackend
	// Base is the image's raw rootfs; it is only read.
	Base string
	// Path is the VM's own file: the COW file of a dm-snapshot or the
	// copy. It must not exist.
	Path string
	// DMName names the device-mapper device (dm-snapshot only); see
	// RootfsDMName.
	DMName string
	// Size is the size of a copy (at least Base's size; 0 means Base's
	// size). For a dm-snapshot, whose device is as large as Base, it is
	// the room the COW file gives the VM's changes.
	Size int64
}

// Rootfs is a VM's root disk and every host object behind it. The
// caller records it (see Record) before handing Device to the VMM, so
// that teardown after a daemon restart finds the loop devices and the
// device-mapper name again.
type Rootfs struct {
	Backend RootfsBackend `json:"backend"`
	Base    string        `json:"base"`
	Path    string        `json:"path"`
	// Device is what the VMM opens: /dev/mapper/NAME for a dm-snapshot,
	// Path for a copy. Empty while a dm-snapshot is inactive.
	Device   string `json:"device,omitempty"`
	DMName   string `json:"dm_name,omitempty"`
	BaseLoop string `json:"base_loop,omitempty"`
	COWLoop  string `json:"cow_loop,omitempty"`
}

// RootfsDMName is the device-mapper name of a VM's root disk: a banger
// prefix, so orphans can be found, and the VM id's first 16 characters.
func RootfsDMName(vmID string) string {
	if len(vmID) > 16 {
		vmID = vmID[:16]
	}
	return "banger-" + vmID
}

// Record copies the names teardown needs into a VM's runtime record.
func (r Rootfs) Record(rt *model.VMRuntime) {
	rt.SystemOverlay = r.Path
	rt.DMName = r.DMName
	rt.BaseLoop = r.BaseLoop
	rt.COWLoop = r.COWLoop
	rt.DMDev = ""
	if r.Backend == RootfsDMSnapshot {
		rt.DMDev = r.Device
	}
}

// RootfsFromRuntime rebuilds a Rootfs from a runtime record written by
// Record, for teardown after a restart.
func RootfsFromRuntime(backend RootfsBackend, base string, rt model.VMRuntime) Rootfs {
	r := Rootfs{Backend: backend, Base: base, Path: rt.SystemOverlay, DMName: rt.DMName, BaseLoop: rt.BaseLoop, COWLoop: rt.COWLoop}
	if backend == RootfsDMSnapshot {
		r.Device = rt.DMDev
	} else {
		r.Device = rt.SystemOverlay
	}
	return r
}

// ChooseRootfsBackend picks the best backend for VM disks in dir:
// dm-snapshot where device-mapper with its snapshot target works, else
// reflink where dir's filesystem shares extents, else sparse. The string
// says why.
func ChooseRootfsBackend(ctx context.Context, dir string) (RootfsBackend, string) {
	return chooseRootfsBackend(ctx, dir, DeviceMapperAvailable, probeReflink)
}

func chooseRootfsBackend(ctx context.Context, dir string, dm func(context.Context) (bool, string), reflink func(string) error) (RootfsBackend, string) {
	ok, why := dm(ctx)
	if ok {
		return RootfsDMSnapshot, why
	}
	err := reflink(dir)
	if err == nil {
		return RootfsReflink, fmt.Sprintf("device-mapper unavailable (%s); the filesystem of %s supports reflinks", why, dir)
	}
	return RootfsSparse, fmt.Sprintf("device-mapper unavailable (%s); no reflinks: %v", why, err)
}

// probeReflink tries FICLONE between two temp files in dir (or its
// nearest existing parent) and says why it does not work.
func probeReflink(dir string) error {
	dir = existingAncestor(dir)
	src, err := os.CreateTemp(dir, ".banger-reflink-probe-*")
	if err != nil {
		return fmt.Errorf("probe reflink in %s: %w", dir, err)
	}
	defer os.Remove(src.Name())
	defer src.Close()
	dst, err := os.CreateTemp(dir, ".banger-reflink-probe-*")
	if err != nil {
		return fmt.Errorf("probe reflink in %s: %w", dir, err)
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	if _, err := src.Write(make([]byte, 4096)); err != nil {
		return fmt.Errorf("probe reflink in %s: %w", dir, err)
	}
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err != nil {
		return fmt.Errorf("%s at %s does not support reflinks (FICLONE: %w)", fsName(dir), dir, err)
	}
	return nil
}

// existingAncestor returns dir or its nearest parent that exists.
func existingAncestor(dir string) string {
	dir = filepath.Clean(dir)
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// fsName names the filesystem type holding path, for messages.
func fsName(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "the filesystem"
	}
	switch int64(st.Type) {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem 0x%x", st.Type)
}

// CreateRootfs makes a VM's root disk with req.Backend and, for a
// dm-snapshot, activates it. On error every step already done is undone:
// no file, loop device or device-mapper device is left behind.
func CreateRootfs(ctx context.Context, req RootfsRequest) (Rootfs, error) {
	return createRootfs(ctx, hostDevOps, req)
}

func createRootfs(ctx context.Context, o devOps, req RootfsRequest) (Rootfs, error) {
	if req.Backend == RootfsDMSnapshot {
		if err := checkDMName(req.DMName); err != nil {
			return Rootfs{}, fmt.Errorf("create rootfs %q: %w", req.Path, err)
		}
	}
	baseSize, err := checkRootfsRequest(req)
	if err != nil {
		return Rootfs{}, fmt.Errorf("create rootfs %q: %w", req.Path, err)
	}
	size := max(req.Size, baseSize)
	r := Rootfs{Backend: req.Backend, Base: req.Base, Path: req.Path}
	if req.Backend != RootfsDMSnapshot {
		if err := copyRootfs(req.Backend, req.Base, req.Path, size); err != nil {
			return Rootfs{}, fmt.Errorf("create rootfs %q: %w", req.Path, err)
		}
		r.Device = r.Path
		return r, nil
	}
	if err := createCOWFile(req.Path, cowFileSize(size)); err != nil {
		return Rootfs{}, fmt.Errorf("create rootfs %q: %w", req.Path, err)
	}
	r.DMName = req.DMName
	active, err := activateRootfs(ctx, o, r)
	if err != nil {
		if rmErr := os.Remove(req.Path); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: remove cow file: %w", rmErr))
		}
		return Rootfs{}, err
	}
	return active, nil
}

// checkRootfsRequest validates req and returns the base's size.
func checkRootfsRequest(req RootfsRequest) (int64, error) {
	if _, err := ParseRootfsBackend(string(req.Backend)); err != nil {
		return 0, err
	}
	if req.Path == "" {
		return 0, errdefs.Invalid(errors.New("rootfs path is empty"))
	}
	if req.Size < 0 {
		return 0, errdefs.Invalid(fmt.Errorf("size %d is negative", req.Size))
	}
	st, err := os.Stat(req.Base)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errdefs.NotFound(fmt.Errorf("image rootfs: %w", err))
		}
		return 0, fmt.Errorf("image rootfs: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return 0, errdefs.Invalid(fmt.Errorf("image rootfs %s is not a regular file", req.Base))
	case st.Size() == 0 || st.Size()%sectorSize != 0:
		return 0, errdefs.Invalid(fmt.Errorf("image rootfs %s has size %d, not a positive multiple of %d", req.Base, st.Size(), sectorSize))
	case req.Size != 0 && req.Size < st.Size():
		return 0, errdefs.Invalid(fmt.Errorf("size %s is smaller than the image rootfs (%s)",
			model.FormatSizeBytes(req.Size), model.FormatSizeBytes(st.Size())))
	}
	if err := checkAbsent(req.Path); err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// cowFileSize is the COW file that holds size bytes of changed chunks
// plus the snapshot's metadata: one 16-byte exception per 4 KiB chunk
// and a header chunk, with room to spare.
func cowFileSize(size int64) int64 { return size + size/128 + 1<<20 }

// createCOWFile creates a sparse file of size bytes; on error it leaves
// nothing behind.
func createCOWFile(p string, size int64) (err error) {
	f, err := createExclusive(p)
	if err != nil {
		return fmt.Errorf("create cow file: %w", err)
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(p)
		}
	}()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("size cow file: %w", err)
	}
	return nil
}

// copyRootfs copies base to dst, a new file, by reflink or sparse copy,
// then extends it to size. On error it leaves no dst behind.
func copyRootfs(backend RootfsBackend, base, dst string, size int64) (err error) {
	src, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("open image rootfs: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("stat image rootfs: %w", err)
	}
	out, err := createExclusive(dst)
	if err != nil {
		return err
	}
	defer func() {
		out.Close()
		if err != nil {
			os.Remove(dst)
		}
	}()
	if backend == RootfsReflink {
		if err := unix.IoctlFileClone(int(out.Fd()), int(src.Fd())); err != nil {
			return fmt.Errorf("reflink %s: %w", base, err)
		}
	} else if err := sparseCopy(out, src, st.Size()); err != nil {
		return fmt.Errorf("sparse copy of %s: %w", base, err)
	}
	if err := out.Truncate(max(size, st.Size())); err != nil {
		return fmt.Errorf("size copy: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync copy: %w", err)
	}
	return nil
}

// ActivateRootfs makes an existing root disk usable by the VMM. For a
// dm-snapshot it attaches the loop devices and creates the device-mapper
// device over the COW file kept from before (persistent snapshot: the
// VM's changes survive stop and start) and returns r with the new names,
// undoing what it did on error; a copy needs nothing.
func ActivateRootfs(ctx context.Context, r Rootfs) (Rootfs, error) {
	return activateRootfs(ctx, hostDevOps, r)
}

// DeactivateRootfs removes a dm-snapshot's device-mapper device (retrying
// while it is busy) and detaches its loop devices, keeping the COW file.
// It is idempotent and does nothing for a copy. On success the caller
// clears the recorded device names.
func DeactivateRootfs(ctx context.Context, r Rootfs) error {
	return deactivateRootfs(ctx, hostDevOps, r)
}

// RemoveRootfs deactivates r and removes its file. It is idempotent.
func RemoveRootfs(ctx context.Context, r Rootfs) error {
	if err := deactivateRootfs(ctx, hostDevOps, r); err != nil {
		return err
	}
	if r.Path == "" {
		return nil
	}
	if err := os.Remove(r.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove rootfs %q: %w", r.Path, err)
	}
	return nil
}

// rollbackTimeout bounds the undo of a failed activation.
const rollbackTimeout = 30 * time.Second

// undoStack runs cleanups in reverse order and joins their errors.
type undoStack []func(context.Context) error

func (u *undoStack) push(f func(context.Context) error) { *u = append(*u, f) }

func (u undoStack) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}
