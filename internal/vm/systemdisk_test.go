package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
	"banger/internal/vmm"
)

// TestRawDriverGetsRootfsSystemDisk: with a driver that takes raw disks
// only, the system disk is a raw copy of the image rootfs made by the
// chosen backend (sparse, a real copy here), recorded in the runtime,
// handed raw to the VMM, kept across stop and start and removed at
// delete with the driver's jail.
func TestRawDriverGetsRootfsSystemDisk(t *testing.T) {
	drv := &rawTestDriver{testDriver: &testDriver{t: t, name: "fake-raw"}}
	f := newLifecycleFixture(t, drv)
	var chosenIn string
	f.s.disks.chooseRootfs = func(_ context.Context, dir string) (storage.RootfsBackend, string) {
		chosenIn = dir
		return storage.RootfsSparse, "test"
	}

	rec := f.create(t, "raw", false)
	path := filepath.Join(rec.Runtime.VMDir, systemRootfsName)
	if chosenIn != f.layout.VMsDir() {
		t.Errorf("got backend chosen for %q, want the VMs directory %q", chosenIn, f.layout.VMsDir())
	}
	stored := f.get(t, rec.ID)
	if stored.Runtime.RootfsBackend != "sparse" || stored.Runtime.SystemOverlay != path {
		t.Errorf("got runtime backend %q system disk %q, want sparse at %q", stored.Runtime.RootfsBackend, stored.Runtime.SystemOverlay, path)
	}
	if stored.Runtime.DMName != "" || stored.Runtime.DMDev != "" || stored.Runtime.BaseLoop != "" || stored.Runtime.COWLoop != "" {
		t.Errorf("got device names %+v for a sparse copy, want none", stored.Runtime)
	}
	if stored.State != model.VMStateRunning || stored.Runtime.VMM != "fake-raw" || stored.Runtime.Accel != "kvm" {
		t.Errorf("got state %s vmm %q accel %q, want running on fake-raw with the driver's accel kvm", stored.State, stored.Runtime.VMM, stored.Runtime.Accel)
	}
	spec := drv.lastSpec(t)
	want := []vmm.Disk{
		{ID: "system", Path: path, Format: "raw"},
		{ID: "work", Path: rec.Runtime.WorkDiskPath, Format: "raw"},
	}
	if fmt.Sprint(spec.Disks) != fmt.Sprint(want) {
		t.Errorf("got disks %+v, want %+v", spec.Disks, want)
	}
	if spec.VSockCID < 3 {
		t.Errorf("got vsock cid %d, want at least 3", spec.VSockCID)
	}
	// A raw, sparse copy of the rootfs, as large as asked.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != testDiskSize || !bytes.HasPrefix(data, f.rootfsData) {
		t.Errorf("got a %d-byte system disk starting %q, want %d bytes starting with the rootfs", len(data), data[:min(len(data), 16)], testDiskSize)
	}
	if used, err := storage.AllocatedBytes(path); err != nil || used >= testDiskSize/2 {
		t.Errorf("got %d bytes allocated (%v), want a sparse file", used, err)
	}

	if _, err := f.s.Stop(t.Context(), rec.ID); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !exists(path) {
		t.Fatalf("got the system disk removed by stop, want it kept")
	}
	if _, err := f.s.Start(t.Context(), rec.ID, nil); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if got := drv.lastSpec(t).Disks[0]; got.Path != path || got.Format != "raw" {
		t.Errorf("second start: got system disk %+v, want raw %s", got, path)
	}

	if _, err := f.s.Delete(t.Context(), rec.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if exists(path) || exists(rec.Runtime.VMDir) {
		t.Errorf("got system disk or vm directory left after delete, want both gone")
	}
	if fmt.Sprint(drv.removed) != fmt.Sprint([]string{rec.ID}) {
		t.Errorf("got jails removed %v, want [%s]", drv.removed, rec.ID)
	}
	if _, err := f.s.store.GetVM(t.Context(), rec.ID); !errdefs.IsNotFound(err) {
		t.Errorf("got record lookup %v after delete, want not found", err)
	}
}

// TestQcow2DriverKeepsOverlay: a driver without RawDisksOnly (QEMU) still
// gets a qcow2 overlay and no rootfs backend.
func TestQcow2DriverKeepsOverlay(t *testing.T) {
	drv := &testDriver{t: t, name: "fake-qemu"}
	f := newLifecycleFixture(t, drv)
	f.s.disks.chooseRootfs = func(context.Context, string) (storage.RootfsBackend, string) {
		t.Error("got a rootfs backend chosen for a qcow2 driver")
		return storage.RootfsSparse, ""
	}
	rec := f.create(t, "qemu", false)
	overlay := filepath.Join(rec.Runtime.VMDir, systemOverlayName)
	if got, want := f.disks.take(), []string{"qcow2 " + f.img.RootfsPath + " " + overlay, "work-disk"}; !equalEvents(got, want) {
		t.Errorf("got disk operations %q, want %q", got, want)
	}
	if got := drv.lastSpec(t).Disks[0]; got != (vmm.Disk{ID: "system", Path: overlay, Format: "qcow2"}) {
		t.Errorf("got system disk %+v, want the qcow2 overlay %s", got, overlay)
	}
	if stored := f.get(t, rec.ID); stored.Runtime.RootfsBackend != "" || stored.Runtime.SystemOverlay != overlay {
		t.Errorf("got backend %q system disk %q, want none and %s", stored.Runtime.RootfsBackend, stored.Runtime.SystemOverlay, overlay)
	}
	if _, err := f.s.Delete(t.Context(), rec.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if exists(rec.Runtime.VMDir) {
		t.Errorf("got vm directory left after delete")
	}
}

// TestRawDriverRefusesQcow2VM: a VM made for QEMU does not start on a
// raw-disk driver, before anything is made.
func TestRawDriverRefusesQcow2VM(t *testing.T) {
	qemuDrv := &testDriver{t: t, name: "fake-qemu"}
	f := newLifecycleFixture(t, qemuDrv)
	rec := f.create(t, "old", true)
	raw := &rawTestDriver{testDriver: &testDriver{t: t, name: "fake-raw"}}
	f.s.driver = raw
	_, err := f.s.Start(t.Context(), rec.ID, nil)
	if !errdefs.IsInvalid(err) {
		t.Fatalf("got %v, want an invalid-input error", err)
	}
	if len(raw.specs) != 0 || len(f.net.calls) != 0 {
		t.Errorf("got vmm starts %d and network calls %v, want none", len(raw.specs), f.net.calls)
	}
}

// fakeDM stands for the dm-snapshot backend: a "device" is a file in dir.
type fakeDM struct {
	dir   string
	ev    *diskEvents
	loops int
}

func (d *fakeDM) install(s *Service) {
	s.disks.chooseRootfs = func(context.Context, string) (storage.RootfsBackend, string) {
		return storage.RootfsDMSnapshot, "test"
	}
	s.disks.createRootfs = func(ctx context.Context, req storage.RootfsRequest) (storage.Rootfs, error) {
		d.ev.add("create " + req.DMName)
		if err := makeSparse(req.Path, req.Size); err != nil {
			return storage.Rootfs{}, err
		}
		return d.attach(storage.Rootfs{Backend: req.Backend, Base: req.Base, Path: req.Path, DMName: req.DMName}), nil
	}
	s.disks.activate = func(ctx context.Context, r storage.Rootfs) (storage.Rootfs, error) {
		d.ev.add("activate " + r.DMName)
		return d.attach(r), nil
	}
	s.disks.deactivate = func(ctx context.Context, r storage.Rootfs) error {
		d.ev.add(fmt.Sprintf("deactivate %s %s %s", r.DMName, r.BaseLoop, r.COWLoop))
		os.Remove(filepath.Join(d.dir, r.DMName))
		return nil
	}
	s.disks.remove = func(ctx context.Context, r storage.Rootfs) error {
		d.ev.add("remove " + r.DMName + " " + filepath.Base(r.Path))
		os.Remove(filepath.Join(d.dir, r.DMName))
		return os.Remove(r.Path)
	}
}

func (d *fakeDM) attach(r storage.Rootfs) storage.Rootfs {
	r.Device = filepath.Join(d.dir, r.DMName)
	os.WriteFile(r.Device, nil, 0o600)
	r.BaseLoop = fmt.Sprintf("/dev/loop%d", d.loops)
	r.COWLoop = fmt.Sprintf("/dev/loop%d", d.loops+1)
	d.loops += 2
	return r
}

// TestDMSnapshotDevicesFollowTheVM: a dm-snapshot's devices are made
// with the disk, exist while the VM starts or runs, and are removed by
// stop, a failed start, reconcile and delete; their names are recorded.
func TestDMSnapshotDevicesFollowTheVM(t *testing.T) {
	drv := &rawTestDriver{testDriver: &testDriver{t: t, name: "fake-raw"}}
	f := newLifecycleFixture(t, drv)
	dm := &fakeDM{dir: t.TempDir(), ev: f.disks}
	dm.install(f.s)
	steps := func(t *testing.T, want ...string) {
		t.Helper()
		if got := f.disks.take(); !equalEvents(got, want) {
			t.Errorf("got disk operations %q, want %q", got, want)
		}
	}
	checkNames := func(t *testing.T, id string, active bool) {
		t.Helper()
		rt := f.get(t, id).Runtime
		if rt.RootfsBackend != "dm-snapshot" || rt.DMName != storage.RootfsDMName(id) {
			t.Errorf("got backend %q dm name %q, want dm-snapshot %q", rt.RootfsBackend, rt.DMName, storage.RootfsDMName(id))
		}
		if got := rt.DMDev != "" && rt.BaseLoop != "" && rt.COWLoop != ""; got != active || (!active && (rt.DMDev != "" || rt.BaseLoop != "" || rt.COWLoop != "")) {
			t.Errorf("got devices %q %q %q recorded, want active %v", rt.DMDev, rt.BaseLoop, rt.COWLoop, active)
		}
	}

	// Created and started at once: the devices of the create are used.
	rec := f.create(t, "dm", false)
	name := storage.RootfsDMName(rec.ID)
	steps(t, "create "+name, "work-disk")
	checkNames(t, rec.ID, true)
	if got := drv.lastSpec(t).Disks[0]; got != (vmm.Disk{ID: "system", Path: filepath.Join(dm.dir, name), Format: "raw"}) {
		t.Errorf("got system disk %+v, want the device-mapper device", got)
	}

	if _, err := f.s.Stop(t.Context(), rec.ID); err != nil {
		t.Fatalf("stop: %v", err)
	}
	steps(t, "deactivate "+name+" /dev/loop0 /dev/loop1")
	checkNames(t, rec.ID, false)

	if _, err := f.s.Start(t.Context(), rec.ID, nil); err != nil {
		t.Fatalf("start: %v", err)
	}
	steps(t, "activate "+name)
	checkNames(t, rec.ID, true)
	if got := drv.lastSpec(t).Disks[0].Path; got != filepath.Join(dm.dir, name) {
		t.Errorf("got system disk %s, want the device-mapper device", got)
	}
	if _, err := f.s.Stop(t.Context(), rec.ID); err != nil {
		t.Fatalf("stop: %v", err)
	}
	f.disks.take()

	// A failed start takes its devices down again.
	drv.startErr = errors.New("boom")
	if _, err := f.s.Start(t.Context(), rec.ID, nil); err == nil {
		t.Fatal("got a start with a failing vmm, want an error")
	}
	drv.startErr = nil
	steps(t, "activate "+name, "deactivate "+name+" /dev/loop4 /dev/loop5")
	checkNames(t, rec.ID, false)

	// Created without start: no devices are left active.
	idle := f.create(t, "idle", true)
	idleName := storage.RootfsDMName(idle.ID)
	steps(t, "create "+idleName, "work-disk", "deactivate "+idleName+" /dev/loop6 /dev/loop7")
	checkNames(t, idle.ID, false)

	// Devices a dead daemon left on a VM that does not run: reconcile
	// takes them down.
	left := f.get(t, idle.ID)
	left.Runtime.DMDev, left.Runtime.BaseLoop, left.Runtime.COWLoop = filepath.Join(dm.dir, idleName), "/dev/loop8", "/dev/loop9"
	if err := f.s.store.UpdateVM(t.Context(), left); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Reconcile(t.Context()); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	steps(t, "deactivate "+idleName+" /dev/loop8 /dev/loop9")
	checkNames(t, idle.ID, false)
	if drv.keep == nil || !drv.keep(rec.ID) || !drv.keep(idle.ID) || drv.keep("gone") {
		t.Errorf("got jail reaper keep function %v, want it to keep exactly the known vms", drv.keep != nil)
	}

	for _, r := range []model.VMRecord{rec, idle} {
		if _, err := f.s.Delete(t.Context(), r.ID); err != nil {
			t.Fatalf("delete: %v", err)
		}
		steps(t, "remove "+storage.RootfsDMName(r.ID)+" "+systemRootfsName)
	}
}

// TestCreateRollsBackRootfs: a create failing after the system disk
// removes it through its backend.
func TestCreateRollsBackRootfs(t *testing.T) {
	drv := &rawTestDriver{testDriver: &testDriver{t: t, name: "fake-raw"}}
	f := newLifecycleFixture(t, drv)
	dm := &fakeDM{dir: t.TempDir(), ev: f.disks}
	dm.install(f.s)
	f.s.disks.workDisk = func(context.Context, string, string, int64) error { return errors.New("disk full") }
	_, err := f.s.Create(t.Context(), model.VMCreateRequest{Name: "doomed", VCPUCount: 1, MemoryMiB: 256,
		SystemOverlaySizeByte: testDiskSize, WorkDiskSizeBytes: testDiskSize}, nil)
	if err == nil {
		t.Fatal("got no error, want the work disk failure")
	}
	got := f.disks.take()
	if len(got) != 2 || got[1] != "remove "+got[0][len("create "):]+" "+systemRootfsName {
		t.Errorf("got disk operations %q, want a create and the remove of that rootfs", got)
	}
	if recs, _ := f.s.store.ListVMs(t.Context()); len(recs) != 0 {
		t.Errorf("got %d records after a failed create, want none", len(recs))
	}
}

func TestVsockCID(t *testing.T) {
	tests := []struct {
		ip   string
		want uint32
	}{
		{"172.16.0.2", 172<<24 | 16<<16 | 2},
		{"10.0.0.9", 10<<24 | 9},
		{"0.0.0.1", 3},
		{"255.255.255.255", 3},
		{"not an ip", 3},
		{"fd00::2", 3},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := vsockCID(tt.ip); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// TestSamplerVMMMetrics: the VMM's own counters are read only for a
// machine of the driver that has them.
func TestSamplerVMMMetrics(t *testing.T) {
	tests := []struct {
		name    string
		driver  string
		metrics func(context.Context, vmm.Handle) (map[string]any, error)
		want    string
	}{
		{name: "same driver", driver: "firecracker", metrics: func(context.Context, vmm.Handle) (map[string]any, error) {
			return map[string]any{"block": 1}, nil
		}, want: "map[block:1]"},
		{name: "other driver", driver: "qemu", metrics: func(context.Context, vmm.Handle) (map[string]any, error) {
			t.Error("got metrics read for another driver's machine")
			return nil, nil
		}, want: "map[]"},
		{name: "read fails", driver: "firecracker", metrics: func(context.Context, vmm.Handle) (map[string]any, error) {
			return nil, errors.New("no sample yet")
		}, want: "map[]"},
		{name: "driver without metrics", driver: "firecracker", want: "map[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newSampler(nil, &locks{}, discardLogger())
			p.metrics, p.driver = tt.metrics, "firecracker"
			rec := model.VMRecord{Name: "m", Runtime: model.VMRuntime{VMM: tt.driver, PID: 1}}
			if got := fmt.Sprint(p.vmmMetrics(t.Context(), rec)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
