package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"banger/internal/model"
	"banger/internal/paths"
	"banger/internal/sshkey"
	"banger/internal/store"
	"banger/internal/vmm"
)

// These doubles run a whole VM lifecycle without tools, root or network:
// the "VMM" is a sleep process, disks come from test disk operations,
// and the guest is ready at once.

// testDriver is a QEMU-style driver (it takes qcow2): Start records the
// spec and runs `sleep` as the machine; Shutdown ends it.
type testDriver struct {
	t        *testing.T
	name     string
	startErr error

	mu    sync.Mutex
	specs []vmm.Spec
}

func (d *testDriver) Name() string { return d.name }

func (d *testDriver) Start(_ context.Context, spec vmm.Spec) (vmm.Handle, error) {
	d.mu.Lock()
	d.specs = append(d.specs, spec)
	d.mu.Unlock()
	if d.startErr != nil {
		return vmm.Handle{}, d.startErr
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		return vmm.Handle{}, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // reaped like a VMM's parent would
	d.t.Cleanup(func() { cmd.Process.Kill(); <-done })
	st, err := vmm.ReadProcStat(cmd.Process.Pid)
	if err != nil {
		return vmm.Handle{}, err
	}
	return vmm.Handle{Driver: d.name, PID: cmd.Process.Pid, StartTime: st.StartTime, AgentSocket: spec.AgentSocket}, nil
}

func (d *testDriver) Shutdown(_ context.Context, h vmm.Handle) error {
	return vmm.Signal(h, syscall.SIGTERM)
}

// lastSpec is the spec of the last Start.
func (d *testDriver) lastSpec(t *testing.T) vmm.Spec {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.specs) == 0 {
		t.Fatal("got no vmm start, want one")
	}
	return d.specs[len(d.specs)-1]
}

// rawTestDriver is a Firecracker-style driver: raw disks only, KVM, a
// jail per machine.
type rawTestDriver struct {
	*testDriver

	mu      sync.Mutex
	removed []string // RemoveJail calls
	keep    func(string) bool
}

func (d *rawTestDriver) RawDisksOnly() bool            { return true }
func (d *rawTestDriver) Accel() (accel, reason string) { return "kvm", "test" }

func (d *rawTestDriver) RemoveJail(vmID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.removed = append(d.removed, vmID)
	return nil
}

func (d *rawTestDriver) ReapJails(keep func(string) bool) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keep = keep
	return nil, nil
}

// testNetwork records TAP calls and succeeds.
type testNetwork struct {
	mu    sync.Mutex
	calls []string
}

func (n *testNetwork) record(call string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, call)
	return nil
}
func (n *testNetwork) EnsureBridge(context.Context) error { return nil }
func (n *testNetwork) CreateTap(_ context.Context, name string) error {
	return n.record("create " + name)
}
func (n *testNetwork) DeleteTap(_ context.Context, name string) error {
	return n.record("delete " + name)
}
func (n *testNetwork) ListTaps(context.Context) ([]string, error) { return nil, nil }

// testImages resolves every name to one image.
type testImages struct{ img model.Image }

func (i testImages) Resolve(context.Context, string, func(step, msg string)) (model.Image, error) {
	return i.img, nil
}

// diskEvents records the disk operations a test sees.
type diskEvents struct {
	mu     sync.Mutex
	events []string
}

func (e *diskEvents) add(ev string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *diskEvents) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.events
	e.events = nil
	return out
}

// lifecycleFixture is a Service over a real store in a temp state
// directory, with an image whose files exist.
type lifecycleFixture struct {
	s      *Service
	layout paths.Layout
	img    model.Image
	net    *testNetwork
	disks  *diskEvents
	// rootfsData is the start of the image rootfs.
	rootfsData []byte
}

const testDiskSize = 64 << 20 // the smallest disk a VM may ask for

func newLifecycleFixture(t *testing.T, driver vmm.Driver) *lifecycleFixture {
	t.Helper()
	home := t.TempDir()
	layout := paths.Layout{
		ConfigDir: home, StateDir: filepath.Join(home, "state"), CacheDir: filepath.Join(home, "cache"),
		RuntimeDir: filepath.Join(home, "run"), LogDir: filepath.Join(home, "logs"),
	}
	if err := layout.Ensure(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), layout.DBFile())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := sshkey.Ensure(layout.DefaultSSHKey())
	if err != nil {
		t.Fatal(err)
	}

	imgDir := filepath.Join(home, "image")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("banger rootfs "), 5000)[:1<<16]
	img := model.Image{
		Name:                          "test-image",
		RootfsPath:                    filepath.Join(imgDir, "rootfs.ext4"),
		KernelPath:                    filepath.Join(imgDir, "vmlinux"),
		WorkSeedPath:                  filepath.Join(imgDir, "work-seed.ext4"),
		SeededSSHPublicKeyFingerprint: key.Fingerprint, // no key to install
	}
	if img.ID, err = model.NewID(); err != nil {
		t.Fatal(err)
	}
	rootfs := append(data, make([]byte, 1<<20-len(data))...) // 1 MiB, sector multiple
	for path, content := range map[string][]byte{img.RootfsPath: rootfs, img.KernelPath: []byte("\x7fELF"), img.WorkSeedPath: nil} {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateImage(t.Context(), img); err != nil {
		t.Fatalf("create image: %v", err)
	}

	net := &testNetwork{}
	cfg := model.DaemonConfig{BridgeIP: model.DefaultBridgeIP, CIDR: model.DefaultCIDR, DefaultImageName: img.Name}
	s := New(Deps{
		Config: cfg, Layout: layout, Store: st, Network: net, Images: testImages{img}, Driver: driver,
		Key: key, KnownHosts: &sshkey.KnownHosts{Path: layout.KnownHosts()}, Logger: discardLogger(),
	})
	s.guestReady = func(context.Context, model.VMRecord, handles) error { return nil }
	s.StopTimeout = 5 * time.Second
	f := &lifecycleFixture{s: s, layout: layout, img: img, net: net, disks: &diskEvents{}, rootfsData: data}
	s.disks.workDisk = func(_ context.Context, seed, dst string, size int64) error {
		f.disks.add("work-disk")
		return makeSparse(dst, size)
	}
	s.disks.overlay = func(_ context.Context, base, overlay string, size int64) error {
		f.disks.add("qcow2 " + base + " " + overlay)
		return makeSparse(overlay, 0)
	}
	return f
}

// create makes a VM of 64 MiB disks.
func (f *lifecycleFixture) create(t *testing.T, name string, noStart bool) model.VMRecord {
	t.Helper()
	rec, err := f.s.Create(t.Context(), model.VMCreateRequest{
		Name: name, VCPUCount: 1, MemoryMiB: 256,
		SystemOverlaySizeByte: testDiskSize, WorkDiskSizeBytes: testDiskSize, NoStart: noStart,
	}, nil)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return rec
}

func (f *lifecycleFixture) get(t *testing.T, id string) model.VMRecord {
	t.Helper()
	rec, err := f.s.store.GetVM(t.Context(), id)
	if err != nil {
		t.Fatalf("get vm: %v", err)
	}
	return rec
}

func makeSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return errors.Join(f.Truncate(size), f.Close())
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func equalEvents(got, want []string) bool { return slices.Equal(got, want) }
