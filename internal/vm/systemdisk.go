package vm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
	"banger/internal/vmm"
)

// A VM's system disk is copy-on-write over its image's rootfs. For a
// driver that takes qcow2 (QEMU) it is a qcow2 overlay; for one that takes
// raw disks only (Firecracker) it is made by a storage rootfs backend,
// chosen per VM at create time (dm-snapshot, else reflink, else sparse)
// and recorded in VMRuntime.RootfsBackend with the names teardown needs.
// A dm-snapshot's devices exist only while the VM starts or runs: the
// start pipeline activates them, a stop, a failed start, reconcile and
// delete deactivate them.

// File names of the system disk in a VM's directory.
const (
	systemOverlayName = "system.qcow2"
	systemRootfsName  = "system.img"
)

// rawDisks is a driver that takes raw disk images and block devices only.
type rawDisks interface{ RawDisksOnly() bool }

func needsRawDisks(d vmm.Driver) bool {
	r, ok := d.(rawDisks)
	return ok && r.RawDisksOnly()
}

// diskOps makes and tears down VM disks: the storage package, replaced
// in tests.
type diskOps struct {
	overlay      func(ctx context.Context, base, overlay string, size int64) error
	workDisk     func(ctx context.Context, seed, dst string, size int64) error
	chooseRootfs func(ctx context.Context, dir string) (storage.RootfsBackend, string)
	createRootfs func(ctx context.Context, req storage.RootfsRequest) (storage.Rootfs, error)
	activate     func(ctx context.Context, r storage.Rootfs) (storage.Rootfs, error)
	deactivate   func(ctx context.Context, r storage.Rootfs) error
	remove       func(ctx context.Context, r storage.Rootfs) error
}

var hostDisks = diskOps{
	overlay:      storage.CreateOverlay,
	workDisk:     storage.CreateWorkDisk,
	chooseRootfs: storage.ChooseRootfsBackend,
	createRootfs: storage.CreateRootfs,
	activate:     storage.ActivateRootfs,
	deactivate:   storage.DeactivateRootfs,
	remove:       storage.RemoveRootfs,
}

// systemDiskPath is where a new VM's system disk goes in dir.
func (s *Service) systemDiskPath(dir string) string {
	if needsRawDisks(s.driver) {
		return filepath.Join(dir, systemRootfsName)
	}
	return filepath.Join(dir, systemOverlayName)
}

// createSystemDisk makes rec's system disk over img's rootfs: a qcow2
// overlay, or for a raw-disk driver a rootfs made by the backend
// chosen now, recorded on rec (and in the store, the device-mapper name
// before the device exists).
func (s *Service) createSystemDisk(ctx context.Context, rec *model.VMRecord, img model.Image, size int64) error {
	if !needsRawDisks(s.driver) {
		return s.disks.overlay(ctx, img.RootfsPath, rec.Runtime.SystemOverlay, size)
	}
	backend, why := s.disks.chooseRootfs(ctx, filepath.Dir(rec.Runtime.VMDir))
	s.logger.Info("system disk backend", "vm", rec.Name, "backend", backend, "why", why)
	rec.Runtime.RootfsBackend = string(backend)
	if backend == storage.RootfsDMSnapshot {
		rec.Runtime.DMName = storage.RootfsDMName(rec.ID)
	}
	if err := s.store.UpdateVM(ctx, *rec); err != nil {
		return err
	}
	r, err := s.disks.createRootfs(ctx, storage.RootfsRequest{
		Backend: backend,
		Base:    img.RootfsPath,
		Path:    rec.Runtime.SystemOverlay,
		DMName:  rec.Runtime.DMName,
		Size:    size,
	})
	if err != nil {
		return err
	}
	r.Record(&rec.Runtime)
	return s.store.UpdateVM(ctx, *rec)
}

// systemDisk is the vmm disk of rec's system disk: the qcow2 overlay,
// or the raw rootfs (its device-mapper device while one is active).
func systemDisk(rec model.VMRecord) vmm.Disk {
	if rec.Runtime.RootfsBackend == "" {
		return vmm.Disk{ID: "system", Path: rec.Runtime.SystemOverlay, Format: "qcow2"}
	}
	path := rec.Runtime.SystemOverlay
	if rec.Runtime.RootfsBackend == string(storage.RootfsDMSnapshot) {
		path = rec.Runtime.DMDev
	}
	return vmm.Disk{ID: "system", Path: path, Format: "raw"}
}

// checkSystemDisk refuses to start a VM whose system disk the driver
// cannot open.
func (s *Service) checkSystemDisk(rec model.VMRecord) error {
	if rec.Runtime.RootfsBackend == "" && needsRawDisks(s.driver) {
		return errdefs.Invalid(fmt.Errorf("vm %q has a qcow2 system overlay, made for qemu; %s takes raw disks only: recreate the vm, or set vmm = \"qemu\"", rec.Name, s.driver.Name()))
	}
	return nil
}

// activateSystemDisk makes rec's raw system disk usable by the VMM and
// records the device names: a dm-snapshot gets its loop and
// device-mapper devices (kept when they are still active since create).
func (s *Service) activateSystemDisk(ctx context.Context, rec *model.VMRecord) error {
	if rec.Runtime.RootfsBackend != string(storage.RootfsDMSnapshot) {
		return nil
	}
	if dev := rec.Runtime.DMDev; dev != "" {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		// Recorded but gone (a host reboot): release what is left.
		if _, err := s.deactivateSystemDisk(ctx, rec); err != nil {
			return err
		}
	}
	r, err := s.disks.activate(ctx, s.rootfsOf(ctx, *rec))
	if err != nil {
		return err
	}
	r.Record(&rec.Runtime)
	// The device names go to the handles file first, then the record.
	if err := writeHandles(rec.Runtime.VMDir, readHandles(*rec).withDisk(rec.Runtime)); err != nil {
		return errors.Join(err, s.disks.deactivate(context.WithoutCancel(ctx), r))
	}
	if err := s.store.UpdateVM(ctx, *rec); err != nil {
		return errors.Join(err, s.disks.deactivate(context.WithoutCancel(ctx), r))
	}
	return nil
}

// deactivateSystemDisk removes a dm-snapshot's devices and clears their
// names on rec (the caller persists it); it reports whether it cleared
// any. The COW file, the VM's changes, stays.
func (s *Service) deactivateSystemDisk(ctx context.Context, rec *model.VMRecord) (bool, error) {
	diskFromHandles(rec)
	rt := &rec.Runtime
	if rt.RootfsBackend != string(storage.RootfsDMSnapshot) || (rt.DMDev == "" && rt.BaseLoop == "" && rt.COWLoop == "") {
		return false, nil
	}
	if err := s.disks.deactivate(ctx, s.rootfsOf(ctx, *rec)); err != nil {
		return false, fmt.Errorf("vm %q: %w", rec.Name, err)
	}
	rt.DMDev, rt.BaseLoop, rt.COWLoop = "", "", ""
	return true, nil
}

// removeSystemDisk deactivates and removes a raw system disk; a qcow2
// overlay goes with the VM's directory.
func (s *Service) removeSystemDisk(ctx context.Context, rec model.VMRecord) error {
	if rec.Runtime.RootfsBackend == "" {
		return nil
	}
	if err := s.disks.remove(ctx, s.rootfsOf(ctx, rec)); err != nil {
		return fmt.Errorf("vm %q: %w", rec.Name, err)
	}
	return nil
}

// rootfsOf rebuilds the storage view of rec's raw system disk.
func (s *Service) rootfsOf(ctx context.Context, rec model.VMRecord) storage.Rootfs {
	base := ""
	if img, err := s.store.GetImage(ctx, rec.ImageID); err == nil {
		base = img.RootfsPath
	}
	r := storage.RootfsFromRuntime(storage.RootfsBackend(rec.Runtime.RootfsBackend), base, rec.Runtime)
	if base == "" && r.BaseLoop != "" {
		// Without the image's path nothing tells whether the loop device
		// still backs it: leave it rather than detach another's.
		s.logger.Warn("image of vm is gone; leaving its base loop device attached", "vm", rec.Name, "loop", r.BaseLoop)
		r.BaseLoop = ""
	}
	return r
}

// jailRemover is a driver that keeps a directory per machine outside the
// VM's own (Firecracker's jailer).
type jailRemover interface {
	RemoveJail(vmID string) error
}

// jailReaper is a driver that can remove the per-machine directories of
// VMs that no longer exist.
type jailReaper interface {
	ReapJails(keep func(vmID string) bool) ([]string, error)
}

// vsockCID is a guest's vsock context id: its IPv4 address as a number,
// unique among the VMs and never a reserved id (0 to 2, 2^32-1).
func vsockCID(guestIP string) uint32 {
	a, err := netip.ParseAddr(guestIP)
	if err != nil || !a.Is4() {
		return 3
	}
	b := a.As4()
	cid := binary.BigEndian.Uint32(b[:])
	if cid < 3 || cid == math.MaxUint32 {
		return 3
	}
	return cid
}
