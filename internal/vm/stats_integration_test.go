//go:build integration

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"banger/internal/model"
	"banger/internal/store"
	"banger/internal/vmm"
)

// These tests pose ordinary processes (a busy shell loop, sleep) as VMMs:
// no VM boots and no network object is made. They need no root but run
// with the integration tests: make test-integration.

// fakeProc is an ordinary process posing as a VMM. It is reaped as
// soon as it exits, as a VMM's parent would, so it never lingers as a
// zombie.
type fakeProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// fakeVMM starts argv as a stand-in VMM and returns its handle; the
// process is killed when the test ends.
func fakeVMM(t *testing.T, argv ...string) (vmm.Handle, *fakeProc) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	p := &fakeProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	st, err := vmm.ReadProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("read stat of pid %d: %v", cmd.Process.Pid, err)
	}
	return vmm.Handle{Driver: "fake", PID: cmd.Process.Pid, StartTime: st.StartTime}, p
}

// kill kills the process and waits until it is reaped.
func (p *fakeProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

type fixture struct {
	store *store.Store
	image model.Image
	dir   string
	ips   int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(t.Context(), filepath.Join(dir, "banger.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	id, err := model.NewID()
	if err != nil {
		t.Fatal(err)
	}
	img := model.Image{ID: id, Name: "test-image", RootfsPath: filepath.Join(dir, "rootfs.ext4"), KernelPath: filepath.Join(dir, "vmlinux")}
	if err := st.CreateImage(t.Context(), img); err != nil {
		t.Fatalf("create image: %v", err)
	}
	return &fixture{store: st, image: img, dir: dir}
}

// addVM stores a VM in state with h as its VMM handle, a system overlay
// holding overlayData bytes and a 1 GiB sparse work disk holding
// workData bytes.
func (f *fixture) addVM(t *testing.T, name string, state model.VMState, h vmm.Handle, overlayData, workData int) model.VMRecord {
	t.Helper()
	id, err := model.NewID()
	if err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(f.dir, "vms", id[:12])
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(vmDir, "system.qcow2")
	work := filepath.Join(vmDir, "work.ext4")
	writeSparse(t, overlay, 0, overlayData)
	writeSparse(t, work, 1<<30, workData)
	f.ips++
	rec := model.VMRecord{
		ID:            id,
		Name:          name,
		ImageID:       f.image.ID,
		State:         state,
		LastTouchedAt: model.Now(),
		Spec:          model.VMSpec{VCPUCount: 1, MemoryMiB: 256},
		Runtime: model.VMRuntime{
			GuestIP:       fmt.Sprintf("172.31.99.%d", f.ips+1), // a record only: nothing is sent
			VMDir:         vmDir,
			SystemOverlay: overlay,
			WorkDiskPath:  work,
		},
	}
	mirror(&rec, handles{VMM: h})
	if state == model.VMStateRunning {
		if err := writeHandles(vmDir, handles{VMM: h}); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := f.store.CreateVM(t.Context(), rec, nil)
	if err != nil {
		t.Fatalf("create vm %s: %v", name, err)
	}
	return stored
}

// writeSparse makes a file of size bytes (at least n) with n bytes of
// data at its start.
func writeSparse(t *testing.T, path string, size int64, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n > 0 {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i) | 1
		}
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if size > int64(n) {
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, id string) model.VMRecord {
	t.Helper()
	rec, err := f.store.GetVM(t.Context(), id)
	if err != nil {
		t.Fatalf("get vm: %v", err)
	}
	return rec
}

func TestSamplerRunningProcess(t *testing.T) {
	f := newFixture(t)
	busyH, busy := fakeVMM(t, "sh", "-c", "while :; do :; done")
	rec := f.addVM(t, "busy", model.VMStateRunning, busyH, 1<<20, 64<<10)
	p := newSampler(f.store, &locks{}, discardLogger())
	ctx := t.Context()

	p.Sample(ctx, []string{rec.ID}, 0)
	first := f.get(t, rec.ID).Stats
	if first.CollectedAt.IsZero() {
		t.Fatalf("first sample: got zero CollectedAt, want a time")
	}
	if first.RSSBytes <= 0 || first.VSZBytes < first.RSSBytes {
		t.Errorf("first sample: got RSS %d, VSZ %d, want 0 < RSS <= VSZ", first.RSSBytes, first.VSZBytes)
	}
	if first.SystemOverlayBytes < 1<<20 || first.SystemOverlayBytes > 2<<20 {
		t.Errorf("overlay bytes: got %d, want about 1 MiB", first.SystemOverlayBytes)
	}
	if first.WorkDiskBytes < 64<<10 || first.WorkDiskBytes > 1<<20 {
		t.Errorf("work disk bytes: got %d, want about 64 KiB (sparse 1 GiB file)", first.WorkDiskBytes)
	}

	// The shell spins on one CPU: over a window of 1.5 s it shows near 100%.
	time.Sleep(1500 * time.Millisecond)
	p.Sample(ctx, []string{rec.ID}, 0)
	second := f.get(t, rec.ID).Stats
	if second.CPUPercent < 20 || second.CPUPercent > 110 {
		t.Errorf("cpu of a busy loop: got %.1f%%, want 20-110%%", second.CPUPercent)
	}
	ps, err := vmm.ReadProcStat(busyH.PID)
	if err != nil {
		t.Fatal(err)
	}
	if want := ps.RSSPages * int64(os.Getpagesize()); second.RSSBytes <= 0 || second.RSSBytes > 4*want {
		t.Errorf("rss: got %d, want about %d", second.RSSBytes, want)
	}
	if second.VSZBytes != ps.VSZ {
		t.Errorf("vsz: got %d, want %d", second.VSZBytes, ps.VSZ)
	}

	// A sample right after another keeps the last CPU figure.
	p.Sample(ctx, []string{rec.ID}, 0)
	if got := f.get(t, rec.ID).Stats.CPUPercent; got != second.CPUPercent {
		t.Errorf("cpu after a too short window: got %.1f, want the last figure %.1f", got, second.CPUPercent)
	}

	// The process exits: process figures go, disk figures stay.
	busy.kill()
	p.Sample(ctx, []string{rec.ID}, 0)
	gone := f.get(t, rec.ID)
	if gone.Stats.CPUPercent != 0 || gone.Stats.RSSBytes != 0 || gone.Stats.VSZBytes != 0 {
		t.Errorf("after exit: got cpu %.1f rss %d vsz %d, want zeros", gone.Stats.CPUPercent, gone.Stats.RSSBytes, gone.Stats.VSZBytes)
	}
	if gone.Stats.SystemOverlayBytes != first.SystemOverlayBytes || gone.Stats.WorkDiskBytes != first.WorkDiskBytes {
		t.Errorf("disks after exit: got %d/%d, want %d/%d", gone.Stats.SystemOverlayBytes, gone.Stats.WorkDiskBytes,
			first.SystemOverlayBytes, first.WorkDiskBytes)
	}
	if gone.State != model.VMStateRunning {
		t.Errorf("state: got %s, want running (the sampler does not settle VMs)", gone.State)
	}
}

func TestSamplerIdleProcess(t *testing.T) {
	f := newFixture(t)
	h, _ := fakeVMM(t, "sleep", "60")
	rec := f.addVM(t, "idle", model.VMStateRunning, h, 4096, 4096)
	p := newSampler(f.store, &locks{}, discardLogger())
	p.Sample(t.Context(), []string{rec.ID}, 0)
	time.Sleep(1100 * time.Millisecond)
	p.Sample(t.Context(), []string{rec.ID}, 0)
	got := f.get(t, rec.ID).Stats
	if got.CPUPercent > 5 {
		t.Errorf("cpu of sleep: got %.1f%%, want under 5%%", got.CPUPercent)
	}
	if got.RSSBytes <= 0 {
		t.Errorf("rss of sleep: got %d, want > 0", got.RSSBytes)
	}
}

func TestSamplerVerifiesProcess(t *testing.T) {
	f := newFixture(t)
	h, _ := fakeVMM(t, "sleep", "60")
	tests := []struct {
		name  string
		state model.VMState
		h     vmm.Handle
	}{
		// The pid runs but is not the process the VM started.
		{"reused pid", model.VMStateRunning, vmm.Handle{Driver: "fake", PID: h.PID, StartTime: h.StartTime + 1}},
		// A stopped VM's leftover pid is never read.
		{"stopped vm", model.VMStateStopped, h},
		{"no pid", model.VMStateRunning, vmm.Handle{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.addVM(t, fmt.Sprintf("vm-%d", i), tt.state, tt.h, 8192, 8192)
			rec.Stats = model.VMStats{CPUPercent: 12.5, RSSBytes: 1 << 20, VSZBytes: 2 << 20}
			if err := f.store.UpdateVM(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
			p := newSampler(f.store, &locks{}, discardLogger())
			p.Sample(t.Context(), []string{rec.ID}, 0)
			got := f.get(t, rec.ID).Stats
			if got.CPUPercent != 0 || got.RSSBytes != 0 || got.VSZBytes != 0 {
				t.Errorf("got cpu %.1f rss %d vsz %d, want zeros", got.CPUPercent, got.RSSBytes, got.VSZBytes)
			}
			if got.SystemOverlayBytes < 8192 || got.WorkDiskBytes < 8192 {
				t.Errorf("disks: got %d/%d, want at least 8192 each", got.SystemOverlayBytes, got.WorkDiskBytes)
			}
		})
	}
}

func TestSamplerSparesUnchangedStoppedVM(t *testing.T) {
	f := newFixture(t)
	rec := f.addVM(t, "stopped", model.VMStateStopped, vmm.Handle{}, 4096, 4096)
	p := newSampler(f.store, &locks{}, discardLogger())
	p.Sample(t.Context(), []string{rec.ID}, 0)
	first := f.get(t, rec.ID)
	if first.Stats.CollectedAt.IsZero() {
		t.Fatalf("first sample of a stopped vm: got zero CollectedAt, want its disk sizes recorded")
	}
	time.Sleep(1100 * time.Millisecond) // records keep whole seconds
	p.Sample(t.Context(), []string{rec.ID}, 0)
	if got := f.get(t, rec.ID); !got.UpdatedAt.Equal(first.UpdatedAt) || !got.Stats.CollectedAt.Equal(first.Stats.CollectedAt) {
		t.Errorf("unchanged stopped vm: got updated %v collected %v, want %v and %v (no write)",
			got.UpdatedAt, got.Stats.CollectedAt, first.UpdatedAt, first.Stats.CollectedAt)
	}
	writeSparse(t, rec.Runtime.WorkDiskPath, 1<<30, 256<<10)
	p.Sample(t.Context(), []string{rec.ID}, 0)
	if got := f.get(t, rec.ID).Stats.WorkDiskBytes; got < 256<<10 {
		t.Errorf("work disk after growth: got %d, want at least %d", got, 256<<10)
	}
}

// A lifecycle change made while the sampler waits for the VM's lock
// survives the sampler's write.
func TestSamplerKeepsConcurrentChange(t *testing.T) {
	f := newFixture(t)
	h, _ := fakeVMM(t, "sleep", "60")
	rec := f.addVM(t, "contended", model.VMStateRunning, h, 4096, 4096)
	l := &locks{}
	p := newSampler(f.store, l, discardLogger())

	unlock := l.lock(rec.ID)
	done := make(chan struct{})
	go func() {
		p.Sample(context.Background(), []string{rec.ID}, 0)
		close(done)
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("sample finished while the vm's lock was held, want it to wait")
	default:
	}
	changed := f.get(t, rec.ID)
	changed.State = model.VMStateStopped
	changed.Runtime.LastError = "changed by a lifecycle operation"
	if err := f.store.UpdateVM(t.Context(), changed); err != nil {
		t.Fatal(err)
	}
	unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sample did not finish after the lock was released")
	}
	got := f.get(t, rec.ID)
	if got.State != model.VMStateStopped || got.Runtime.LastError != changed.Runtime.LastError {
		t.Errorf("after sample: got state %s, last error %q, want the concurrent change kept", got.State, got.Runtime.LastError)
	}
	if got.Stats.CollectedAt.IsZero() || got.Stats.RSSBytes != 0 {
		t.Errorf("after sample: got stats %+v, want a sample of a stopped vm (disks only)", got.Stats)
	}
}

func TestSamplerWaitBounded(t *testing.T) {
	f := newFixture(t)
	rec := f.addVM(t, "locked", model.VMStateStopped, vmm.Handle{}, 4096, 4096)
	l := &locks{}
	p := newSampler(f.store, l, discardLogger())
	unlock := l.lock(rec.ID)
	start := time.Now()
	p.Sample(t.Context(), []string{rec.ID}, 300*time.Millisecond)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Sample with a held lock: returned after %v, want about 300ms", d)
	}
	unlock()
	// The sample finishes in the background once the lock is free.
	deadline := time.Now().Add(5 * time.Second)
	for f.get(t, rec.ID).Stats.CollectedAt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("background sample never recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSamplerRun(t *testing.T) {
	f := newFixture(t)
	h, _ := fakeVMM(t, "sh", "-c", "while :; do :; done")
	rec := f.addVM(t, "looped", model.VMStateRunning, h, 4096, 4096)
	p := newSampler(f.store, &locks{}, discardLogger())
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		p.Run(ctx, 300*time.Millisecond)
		close(stopped)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.get(t, rec.ID).Stats
		if got.CPUPercent > 0 && got.RSSBytes > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run: got stats %+v after 10s, want cpu and rss", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// failNetwork fails every call and records it: the stats and sweep
// paths never need the network for VMs without a TAP.
type failNetwork struct {
	mu    sync.Mutex
	calls []string
}

var errNoNetwork = errors.New("network must not be used")

func (n *failNetwork) record(call string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, call)
	return errNoNetwork
}

func (n *failNetwork) recorded() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

func (n *failNetwork) EnsureBridge(context.Context) error { return n.record("bridge") }
func (n *failNetwork) CreateTap(_ context.Context, name string) error {
	return n.record("create tap " + name)
}
func (n *failNetwork) DeleteTap(_ context.Context, name string) error {
	return n.record("delete tap " + name)
}
func (n *failNetwork) ListTaps(context.Context) ([]string, error) { return nil, n.record("list taps") }

// termDriver is a VMM driver whose power button is SIGTERM.
type termDriver struct{}

func (termDriver) Name() string { return "fake" }
func (termDriver) Start(context.Context, vmm.Spec) (vmm.Handle, error) {
	return vmm.Handle{}, errors.New("start: not supported by the test driver")
}
func (termDriver) Shutdown(_ context.Context, h vmm.Handle) error {
	return vmm.Signal(h, syscall.SIGTERM)
}

func newTestService(t *testing.T, f *fixture, cfg model.DaemonConfig) (*Service, *failNetwork) {
	t.Helper()
	net := &failNetwork{}
	s := New(Deps{Config: cfg, Store: f.store, Network: net, Driver: termDriver{}, Logger: discardLogger()})
	s.StopTimeout = 10 * time.Second
	return s, net
}

func TestServiceStatsSettlesExitedVM(t *testing.T) {
	f := newFixture(t)
	s, net := newTestService(t, f, model.DaemonConfig{})
	aliveH, _ := fakeVMM(t, "sleep", "60")
	deadH, dead := fakeVMM(t, "sleep", "60")
	alive := f.addVM(t, "alive", model.VMStateRunning, aliveH, 4096, 4096)
	exited := f.addVM(t, "exited", model.VMStateRunning, deadH, 4096, 4096)
	dead.kill()

	recs, err := s.NewSampler().Stats(t.Context(), nil)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if len(recs) != 2 {
		t.Fatalf("Stats: got %d records, want 2", len(recs))
	}
	byID := map[string]model.VMRecord{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	if got := byID[alive.ID]; got.State != model.VMStateRunning || got.Stats.RSSBytes <= 0 {
		t.Errorf("alive vm: got state %s rss %d, want running with rss", got.State, got.Stats.RSSBytes)
	}
	if got := byID[exited.ID]; got.State != model.VMStateStopped || got.Stats.RSSBytes != 0 || got.Stats.WorkDiskBytes < 4096 {
		t.Errorf("exited vm: got state %s stats %+v, want stopped with disk figures only", got.State, got.Stats)
	}

	named, err := s.NewSampler().Stats(t.Context(), []string{"alive", alive.ID[:8], "alive"})
	if err != nil {
		t.Fatalf("Stats(named): %v", err)
	}
	if len(named) != 1 || named[0].ID != alive.ID {
		t.Errorf("Stats(named, duplicates): got %d records, want only alive", len(named))
	}
	if _, err := s.NewSampler().Stats(t.Context(), []string{"nope"}); err == nil {
		t.Errorf("Stats(unknown): got nil error, want not found")
	}
	if calls := net.recorded(); len(calls) != 0 {
		t.Errorf("network calls: got %v, want none", calls)
	}
}

func TestSweeperStopsIdleVMs(t *testing.T) {
	f := newFixture(t)
	s, net := newTestService(t, f, model.DaemonConfig{AutoStopStaleAfter: time.Hour})
	idleH, idleCmd := fakeVMM(t, "sleep", "600")
	busyH, busyCmd := fakeVMM(t, "sleep", "600")
	idle := f.addVM(t, "idle", model.VMStateRunning, idleH, 0, 0)
	busy := f.addVM(t, "busy", model.VMStateRunning, busyH, 0, 0)
	sessionH, sessionCmd := fakeVMM(t, "sleep", "600")
	inSession := f.addVM(t, "in-session", model.VMStateRunning, sessionH, 0, 0)
	stoppedOld := f.addVM(t, "stopped-old", model.VMStateStopped, vmm.Handle{}, 0, 0)
	for _, id := range []string{idle.ID, stoppedOld.ID, inSession.ID} {
		rec := f.get(t, id)
		rec.LastTouchedAt = model.Now().Add(-3 * time.Hour)
		if err := f.store.UpdateVM(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}

	w := s.NewSweeper()
	if w.StaleAfter != time.Hour || w.Interval != model.DefaultStaleSweepInterval {
		t.Fatalf("NewSweeper: got StaleAfter %v Interval %v, want 1h and %v", w.StaleAfter, w.Interval, model.DefaultStaleSweepInterval)
	}
	w.Interval = 100 * time.Millisecond
	// An SSH session is open to in-session, untouched for hours.
	w.sessions = func(ip string) int {
		if ip == inSession.Runtime.GuestIP {
			return 1
		}
		return 0
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go w.Run(ctx)

	select {
	case <-idleCmd.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("idle vm's process still runs 15s after the sweep started")
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.get(t, idle.ID).State != model.VMStateStopped {
		if time.Now().After(deadline) {
			t.Fatalf("idle vm: got state %s, want stopped", f.get(t, idle.ID).State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A few more sweeps leave the touched VM alone.
	time.Sleep(400 * time.Millisecond)
	select {
	case <-busyCmd.exited:
		t.Error("recently touched vm was stopped, want it running")
	default:
	}
	if got := f.get(t, busy.ID).State; got != model.VMStateRunning {
		t.Errorf("recently touched vm: got state %s, want running", got)
	}
	select {
	case <-sessionCmd.exited:
		t.Error("vm with an open ssh session was stopped, want it running")
	default:
	}
	if got := f.get(t, inSession.ID); got.State != model.VMStateRunning || time.Since(got.LastTouchedAt) > time.Minute {
		t.Errorf("vm with an open ssh session: got state %s, touched %s ago; want running and touched by the sweep", got.State, time.Since(got.LastTouchedAt).Round(time.Second))
	}
	if got := f.get(t, stoppedOld.ID).State; got != model.VMStateStopped {
		t.Errorf("stopped vm: got state %s, want stopped", got)
	}
	if calls := net.recorded(); len(calls) != 0 {
		t.Errorf("network calls: got %v, want none", calls)
	}
}

// A VM touched after it was listed as stale, before the sweep stops it,
// is left running.
func TestSweeperRechecksUnderLock(t *testing.T) {
	f := newFixture(t)
	s, _ := newTestService(t, f, model.DaemonConfig{AutoStopStaleAfter: time.Hour})
	h, proc := fakeVMM(t, "sleep", "600")
	rec := f.addVM(t, "touched", model.VMStateRunning, h, 0, 0)
	rec.LastTouchedAt = model.Now().Add(-3 * time.Hour)
	if err := f.store.UpdateVM(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	w := s.NewSweeper()
	// The sweep's clock says the VM is stale; the record, touched while
	// the sweep waited for the lock, says otherwise.
	unlock := s.locks.lock(rec.ID)
	result := make(chan []string, 1)
	go func() { result <- w.Sweep(t.Context()) }()
	time.Sleep(200 * time.Millisecond)
	touched := f.get(t, rec.ID)
	touched.LastTouchedAt = model.Now()
	if err := f.store.UpdateVM(t.Context(), touched); err != nil {
		t.Fatal(err)
	}
	unlock()
	select {
	case got := <-result:
		if len(got) != 0 {
			t.Errorf("Sweep: got stopped %v, want none", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sweep did not return")
	}
	select {
	case <-proc.exited:
		t.Error("touched vm's process exited, want it running")
	default:
	}
}
