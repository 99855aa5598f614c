//go:build integration

package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"banger/internal/hostexec"
	"banger/internal/model"
	"banger/internal/storage"
	"banger/internal/testutil/privnet"
	"banger/internal/vmm"
	"banger/internal/vmm/firecracker"
	"banger/internal/vmm/firecracker/fctest"
)

// These tests run the VM service's whole lifecycle with the Firecracker
// driver against the fake Firecracker of fctest (this test binary
// re-executed), which validates every API request against Firecracker's
// specification. No guest boots. They need root: TestMain re-executes the
// test binary under `unshare -n`, and the TAPs are made in that private
// network namespace, with no route anywhere; the SSH wait that never
// succeeds against a fake sends nothing out of it either. The disks are
// real: a sparse rootfs copy and an ext4 work disk (mkfs.ext4, debugfs).

const (
	fakeFCMainEnv = "BANGER_VM_FAKEFC_MAIN"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeFCMainEnv) == "1" {
		os.Exit(fctest.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	privnet.Main(m)
}

// requirePrivateNetns skips without root and fails unless the test runs
// in a network namespace other than the machine's.
func requirePrivateNetns(t *testing.T) {
	t.Helper()
	privnet.Require(t, "run `sudo go test -tags integration ./internal/vm/`")
	for _, tool := range []string{"ip", "mkfs.ext4", "debugfs", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: install it (iproute2, e2fsprogs, the Go toolchain)", tool)
		}
	}
}

// tapNetwork makes plain TAP devices in the test's namespace.
type tapNetwork struct{ testNetwork }

func (n *tapNetwork) CreateTap(ctx context.Context, name string) error {
	n.record("create " + name)
	_, err := hostexec.Run(ctx, "ip", "tuntap", "add", "dev", name, "mode", "tap")
	return err
}

func (n *tapNetwork) DeleteTap(ctx context.Context, name string) error {
	n.record("delete " + name)
	if _, err := hostexec.Run(ctx, "ip", "link", "show", "dev", name); err != nil {
		return nil // already gone
	}
	_, err := hostexec.Run(ctx, "ip", "link", "del", "dev", name)
	return err
}

func tapExists(t *testing.T, name string) bool {
	_, err := hostexec.Run(t.Context(), "ip", "link", "show", "dev", name)
	return err == nil
}

// handleRecorder is the Firecracker driver remembering the handles it
// returned.
type handleRecorder struct {
	*firecracker.Driver
	mu      sync.Mutex
	handles []vmm.Handle
}

func (d *handleRecorder) Start(ctx context.Context, spec vmm.Spec) (vmm.Handle, error) {
	h, err := d.Driver.Start(ctx, spec)
	if err == nil {
		d.mu.Lock()
		d.handles = append(d.handles, h)
		d.mu.Unlock()
	}
	return h, err
}

func (d *handleRecorder) last(t *testing.T) vmm.Handle {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.handles) == 0 {
		t.Fatal("got no firecracker started, want one")
	}
	return d.handles[len(d.handles)-1]
}

// fcFixture is a Service whose driver is the Firecracker driver running
// the fake, with real disks.
type fcFixture struct {
	*lifecycleFixture
	drv    *handleRecorder
	record string // the fake's request log
}

func newFCFixture(t *testing.T) *fcFixture {
	t.Helper()
	requirePrivateNetns(t)
	specPath, err := fctest.SDKSpecPath()
	if err != nil {
		t.Skipf("needs the Firecracker API specification: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "firecracker")
	record := filepath.Join(t.TempDir(), "requests.jsonl")
	script := fmt.Sprintf("#!/bin/sh\nexport %s=1 %s=%q %s=%q\nexec %q \"$@\"\n",
		fakeFCMainEnv, fctest.EnvSpec, specPath, fctest.EnvRecord, record, self)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	drv := &handleRecorder{Driver: firecracker.New(firecracker.Options{Binary: bin, Logger: discardLogger()})}
	f := newLifecycleFixture(t, drv)
	// A short state directory: socket paths must fit in 108 bytes.
	state, err := os.MkdirTemp("/tmp", "bvfc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	f.s.layout.StateDir = state
	f.layout.StateDir = state
	f.s.network = &tapNetwork{}
	// Real disks, the rootfs as a sparse copy whatever the host offers.
	f.s.disks = hostDisks
	f.s.disks.chooseRootfs = func(context.Context, string) (storage.RootfsBackend, string) {
		return storage.RootfsSparse, "test"
	}
	f.s.cfg.DefaultImageName = f.img.Name
	img := f.img
	img.WorkSeedPath, img.SeededSSHPublicKeyFingerprint = "", "" // mkfs.ext4 and the key install
	if err := f.s.store.UpdateImage(t.Context(), img); err != nil {
		t.Fatal(err)
	}
	f.s.images = testImages{img}
	f.img = img
	return &fcFixture{lifecycleFixture: f, drv: drv, record: record}
}

// requests returns the fake's PUT bodies by path.
func (f *fcFixture) requests(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	recs, err := fctest.ReadRecord(f.record)
	if err != nil {
		t.Fatalf("read the fake's record: %v", err)
	}
	out := map[string]json.RawMessage{}
	for _, r := range recs {
		if r.Status/100 != 2 {
			t.Errorf("%s %s: got status %d (%s), want success", r.Method, r.Path, r.Status, r.Error)
		}
		if r.Method == "PUT" {
			out[r.Path] = r.Body
		}
	}
	return out
}

// TestFirecrackerLifecycle: create, start, stats, stop, start, delete
// through the Firecracker driver, the guest declared ready at once.
func TestFirecrackerLifecycle(t *testing.T) {
	f := newFCFixture(t)
	rec := f.create(t, "fc", false)
	h := f.drv.last(t)
	stored := f.get(t, rec.ID)
	sysDisk := filepath.Join(rec.Runtime.VMDir, systemRootfsName)
	if stored.State != model.VMStateRunning || stored.Runtime.VMM != "firecracker" || stored.Runtime.Accel != "kvm" ||
		stored.Runtime.RootfsBackend != "sparse" || stored.Runtime.SystemOverlay != sysDisk ||
		stored.Runtime.APISockPath != filepath.Join(rec.Runtime.VMDir, "firecracker.sock") {
		t.Errorf("got %s runtime %+v, want running on firecracker (kvm) with a sparse system disk %s", stored.State, stored.Runtime, sysDisk)
	}
	if !vmm.Alive(h) {
		t.Fatalf("got firecracker pid %d gone, want it running", h.PID)
	}

	var drive firecracker.Drive
	var vsock firecracker.Vsock
	reqs := f.requests(t)
	if err := json.Unmarshal(reqs["/drives/system"], &drive); err != nil || drive.PathOnHost != sysDisk || drive.IsReadOnly {
		t.Errorf("got system drive %s (%v), want the writable disk %s", reqs["/drives/system"], err, sysDisk)
	}
	if err := json.Unmarshal(reqs["/drives/work"], &drive); err != nil || drive.PathOnHost != rec.Runtime.WorkDiskPath {
		t.Errorf("got work drive %s (%v), want %s", reqs["/drives/work"], err, rec.Runtime.WorkDiskPath)
	}
	if err := json.Unmarshal(reqs["/vsock"], &vsock); err != nil || vsock.UDSPath != stored.Runtime.VSockPath || vsock.GuestCID != vsockCID(rec.Runtime.GuestIP) {
		t.Errorf("got vsock %s (%v), want uds %s cid %d", reqs["/vsock"], err, stored.Runtime.VSockPath, vsockCID(rec.Runtime.GuestIP))
	}
	if data, err := os.ReadFile(sysDisk); err != nil || !strings.HasPrefix(string(data), string(f.rootfsData)) {
		t.Errorf("got system disk unreadable or not a copy of the rootfs (%v)", err)
	}

	recs, err := f.s.NewSampler().Stats(t.Context(), []string{rec.ID})
	if err != nil || len(recs) != 1 {
		t.Fatalf("stats: got %d records, %v", len(recs), err)
	}
	if recs[0].Stats.MetricsRaw["block"] == nil {
		t.Errorf("got metrics %v, want firecracker's sample with block counters", recs[0].Stats.MetricsRaw)
	}

	if _, err := f.s.Stop(t.Context(), rec.ID); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if vmm.Alive(h) {
		t.Errorf("got firecracker alive after stop, want it gone")
	}
	if recs, err = f.s.NewSampler().Stats(t.Context(), []string{rec.ID}); err != nil || len(recs) != 1 {
		t.Fatalf("stats after stop: got %d records, %v", len(recs), err)
	}
	if got := recs[0]; got.State != model.VMStateStopped || got.Stats.MetricsRaw != nil {
		t.Errorf("got state %s metrics %v after stop, want stopped without metrics", got.State, got.Stats.MetricsRaw)
	}
	if _, err := f.s.Start(t.Context(), rec.ID, nil); err != nil {
		t.Fatalf("start again: %v", err)
	}
	h2 := f.drv.last(t)
	if !vmm.Alive(h2) || h2.PID == h.PID {
		t.Errorf("got handle %+v after restart, want a new running firecracker", h2)
	}

	tap := f.get(t, rec.ID).Runtime.TapDevice
	if _, err := f.s.Delete(t.Context(), rec.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if vmm.Alive(h2) || exists(rec.Runtime.VMDir) || tapExists(t, tap) {
		t.Errorf("after delete: got firecracker alive %v, vm dir %v, tap %v; want all gone", vmm.Alive(h2), exists(rec.Runtime.VMDir), tapExists(t, tap))
	}
}

// TestFirecrackerStartRollsBack: the guest never answers SSH (the fake
// boots nothing); the start fails after its short wait and leaves no
// firecracker, no TAP and no handle, and the VM in state error.
func TestFirecrackerStartRollsBack(t *testing.T) {
	f := newFCFixture(t)
	f.s.guestReady = nil // the real SSH wait
	f.s.SSHTimeout = time.Second
	rec := f.create(t, "fc-noboot", true)
	_, err := f.s.Start(t.Context(), rec.ID, nil)
	if err == nil || !strings.Contains(err.Error(), "ssh") {
		t.Fatalf("got %v, want the ssh wait to fail", err)
	}
	h := f.drv.last(t)
	got := f.get(t, rec.ID)
	tap := f.s.network.(*tapNetwork)
	if vmm.Alive(h) {
		t.Errorf("got firecracker pid %d alive after the failed start, want it killed", h.PID)
	}
	if got.State != model.VMStateError || got.Runtime.PID != 0 || got.Runtime.TapDevice != "" || readHandles(got).VMM.PID != 0 {
		t.Errorf("got state %s pid %d tap %q, want error with no process or tap recorded", got.State, got.Runtime.PID, got.Runtime.TapDevice)
	}
	tap.mu.Lock()
	calls := append([]string(nil), tap.calls...)
	tap.mu.Unlock()
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "create ") || calls[1] != "delete "+strings.TrimPrefix(calls[0], "create ") {
		t.Errorf("got tap calls %q, want a create and its delete", calls)
	} else if tapExists(t, strings.TrimPrefix(calls[0], "create ")) {
		t.Errorf("got tap %s left after the failed start", calls[0])
	}
	if !exists(got.Runtime.SystemOverlay) {
		t.Errorf("got the system disk removed by a failed start, want it kept for the next")
	}
	if _, err := f.s.Delete(t.Context(), rec.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if exists(rec.Runtime.VMDir) {
		t.Errorf("got vm directory left after delete")
	}
}
