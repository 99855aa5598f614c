package vm

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/nat"
	"banger/internal/network"
	"banger/internal/vmm"
)

// These tests stand for a daemon restart: VMs are made by one Service,
// the host is changed behind its back (a VMM dies, a pid is reused, a
// file is corrupted), and a new Service over the same store, host
// network and NAT reconciles. VMMs are sleep processes, so /proc checks
// are real.

// hostTaps is a Network whose TAPs live in a set, like the host's links.
type hostTaps struct {
	mu      sync.Mutex
	taps    map[string]bool
	deleted []string
}

func newHostTaps() *hostTaps { return &hostTaps{taps: map[string]bool{}} }

func (n *hostTaps) EnsureBridge(context.Context) error { return nil }

func (n *hostTaps) CreateTap(_ context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.taps[name] = true
	return nil
}

// DeleteTap is idempotent, like the network package's.
func (n *hostTaps) DeleteTap(_ context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.taps, name)
	n.deleted = append(n.deleted, name)
	return nil
}

func (n *hostTaps) ListTaps(context.Context) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name := range n.taps {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func (n *hostTaps) has(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.taps[name]
}

func (n *hostTaps) wasDeleted(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.deleted, name)
}

// hostNAT keeps the NAT rules per VM id, like the nft table.
type hostNAT struct {
	mu      sync.Mutex
	rules   map[string]nat.Entry
	removed []string
	syncs   int
}

func newHostNAT() *hostNAT { return &hostNAT{rules: map[string]nat.Entry{}} }

func (n *hostNAT) Add(_ context.Context, e nat.Entry) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rules[e.VMID] = e
	return nil
}

func (n *hostNAT) Remove(_ context.Context, vmID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.rules, vmID)
	n.removed = append(n.removed, vmID)
	return nil
}

func (n *hostNAT) Sync(_ context.Context, entries []nat.Entry) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.syncs++
	n.rules = map[string]nat.Entry{}
	for _, e := range entries {
		n.rules[e.VMID] = e
	}
	return nil
}

func (n *hostNAT) rule(vmID string) (nat.Entry, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.rules[vmID]
	return e, ok
}

// recoveringDriver is a driver that finds a VMM from its directory
// (vmm.Recoverer), as QEMU does from its pid file.
type recoveringDriver struct {
	*testDriver
	found map[string]vmm.Handle // by VM directory
}

func (d *recoveringDriver) Recover(dir string) (vmm.Handle, bool) {
	h, ok := d.found[dir]
	return h, ok
}

type reconcileFixture struct {
	*lifecycleFixture
	drv  vmm.Driver
	taps *hostTaps
	nat  *hostNAT
}

func newReconcileFixture(t *testing.T, drv vmm.Driver) *reconcileFixture {
	t.Helper()
	f := newLifecycleFixture(t, drv)
	rf := &reconcileFixture{lifecycleFixture: f, drv: drv, taps: newHostTaps(), nat: newHostNAT()}
	f.s.network, f.s.nat = rf.taps, rf.nat
	return rf
}

// restart returns a new Service over the same store and host, as a
// restarted daemon has: nothing is carried over in memory.
func (rf *reconcileFixture) restart() *Service {
	old := rf.s
	s := New(Deps{
		Config: old.cfg, Layout: old.layout, Store: old.store, Network: rf.taps, NAT: rf.nat,
		Images: old.images, Driver: rf.drv, Key: old.key, KnownHosts: old.knownHosts, Logger: discardLogger(),
	})
	s.disks, s.guestReady, s.StopTimeout = old.disks, old.guestReady, old.StopTimeout
	return s
}

// started creates and starts a VM and returns it with its handles.
func (rf *reconcileFixture) started(t *testing.T, name string, withNAT bool) (model.VMRecord, handles) {
	t.Helper()
	rec, err := rf.s.Create(t.Context(), model.VMCreateRequest{
		Name: name, VCPUCount: 1, MemoryMiB: 256, NATEnabled: withNAT,
		SystemOverlaySizeByte: testDiskSize, WorkDiskSizeBytes: testDiskSize,
	}, nil)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	h := readHandles(rec)
	if rec.State != model.VMStateRunning || !vmm.Alive(h.VMM) || h.Tap == "" || !rf.taps.has(h.Tap) {
		t.Fatalf("vm %s after create: state %s, handles %+v; want running with a live vmm and a tap", name, rec.State, h)
	}
	return rec, h
}

// kill ends a VMM as a crash would, behind the daemon's back.
func kill(t *testing.T, h vmm.Handle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := vmm.Kill(ctx, h); err != nil {
		t.Fatalf("kill vmm pid %d: %v", h.PID, err)
	}
}

// foreign starts a process that is not a VMM of banger's: what a reused
// pid points at. done is closed when it exits.
func foreign(t *testing.T) (h vmm.Handle, done <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	c := make(chan struct{})
	go func() { _ = cmd.Wait(); close(c) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-c })
	st, err := vmm.ReadProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("read stat of sleep: %v", err)
	}
	return vmm.Handle{Driver: "qemu", PID: cmd.Process.Pid, StartTime: st.StartTime}, c
}

// corruptHandles replaces a VM's handles file with bytes that do not parse.
func corruptHandles(t *testing.T, rec model.VMRecord) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(rec.Runtime.VMDir, handlesFile), []byte(`{"vmm": {"pid": 12`), 0o600); err != nil {
		t.Fatal(err)
	}
}

func reconcile(t *testing.T, s *Service) {
	t.Helper()
	if err := s.Reconcile(t.Context()); err != nil {
		t.Fatalf("reconcile: got %v, want nil", err)
	}
}

func TestReconcileAdoptsLiveVMs(t *testing.T) {
	tests := []struct {
		name    string
		withNAT bool
		corrupt bool // handles.json does not parse: the record's mirror names the vmm
	}{
		{name: "handles file", withNAT: true},
		{name: "without nat"},
		{name: "corrupt handles file, record mirror", withNAT: true, corrupt: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
			rec, h := rf.started(t, "live", tt.withNAT)
			if tt.corrupt {
				corruptHandles(t, rec)
			}
			s := rf.restart()
			reconcile(t, s)

			got := rf.get(t, rec.ID)
			if got.State != model.VMStateRunning || got.Runtime.LastError != "" {
				t.Errorf("state: got %s (last error %q), want running", got.State, got.Runtime.LastError)
			}
			if got.Runtime.PID != h.VMM.PID || got.Runtime.PIDStartTime != h.VMM.StartTime || got.Runtime.TapDevice != h.Tap {
				t.Errorf("record handles: got pid %d start %d tap %q, want pid %d start %d tap %q",
					got.Runtime.PID, got.Runtime.PIDStartTime, got.Runtime.TapDevice, h.VMM.PID, h.VMM.StartTime, h.Tap)
			}
			if gotH := readHandles(got); gotH.VMM.PID != h.VMM.PID || gotH.VMM.StartTime != h.VMM.StartTime || gotH.Tap != h.Tap {
				t.Errorf("handles: got %+v, want %+v", gotH, h)
			}
			if !vmm.Alive(h.VMM) {
				t.Errorf("vmm pid %d: got not alive, want it still running", h.VMM.PID)
			}
			if !rf.taps.has(h.Tap) || rf.taps.wasDeleted(h.Tap) {
				t.Errorf("tap %s: got present %v, deleted %v; want kept", h.Tap, rf.taps.has(h.Tap), rf.taps.wasDeleted(h.Tap))
			}
			e, ok := rf.nat.rule(rec.ID)
			if ok != tt.withNAT {
				t.Errorf("nat rule after reconcile: got %v, want %v", ok, tt.withNAT)
			}
			if ok && (e.Tap != h.Tap || e.IP.String() != rec.Runtime.GuestIP) {
				t.Errorf("nat rule: got tap %s ip %s, want tap %s ip %s", e.Tap, e.IP, h.Tap, rec.Runtime.GuestIP)
			}
			// The restarted daemon's view agrees and leaves the vm running.
			view, err := s.Get(t.Context(), rec.ID)
			if err != nil || view.State != model.VMStateRunning {
				t.Errorf("Get after reconcile: got %s, %v; want running", view.State, err)
			}
			if !exists(rec.Runtime.VMDir) || !exists(rec.Runtime.WorkDiskPath) {
				t.Errorf("vm directory or work disk gone after adopting the vm")
			}
		})
	}
}

func TestReconcileSettlesDeadVMs(t *testing.T) {
	tests := []struct {
		name    string
		state   model.VMState // the state the dead daemon recorded
		lastErr string
		corrupt bool
		// want
		wantState model.VMState
		wantErr   string
	}{
		{name: "running, vmm crashed", state: model.VMStateRunning, wantState: model.VMStateStopped},
		{
			name: "running, vmm crashed, corrupt handles file", state: model.VMStateRunning, corrupt: true,
			wantState: model.VMStateStopped,
		},
		{
			// A failed start whose rollback could not kill the vmm keeps
			// its handles; the vmm died later.
			name: "error with handles left", state: model.VMStateError, lastErr: "start vm: boom",
			wantState: model.VMStateError, wantErr: "start vm: boom",
		},
		{
			name: "error with handles left, corrupt handles file", state: model.VMStateError, lastErr: "start vm: boom", corrupt: true,
			wantState: model.VMStateError, wantErr: "start vm: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
			rec, h := rf.started(t, "dead", true)
			if tt.state != model.VMStateRunning {
				rec.State, rec.Runtime.LastError = tt.state, tt.lastErr
				if err := rf.s.store.UpdateVM(t.Context(), rec); err != nil {
					t.Fatal(err)
				}
			}
			kill(t, h.VMM)
			if tt.corrupt {
				corruptHandles(t, rec)
			}
			s := rf.restart()
			reconcile(t, s)

			got := rf.get(t, rec.ID)
			if got.State != tt.wantState || got.Runtime.LastError != tt.wantErr {
				t.Errorf("state: got %s (last error %q), want %s (last error %q)", got.State, got.Runtime.LastError, tt.wantState, tt.wantErr)
			}
			if got.Runtime.PID != 0 || got.Runtime.PIDStartTime != 0 || got.Runtime.TapDevice != "" {
				t.Errorf("record handles: got pid %d start %d tap %q, want all cleared", got.Runtime.PID, got.Runtime.PIDStartTime, got.Runtime.TapDevice)
			}
			if gotH := readHandles(got); gotH != (handles{}) {
				t.Errorf("handles file: got %+v, want empty", gotH)
			}
			if rf.taps.has(h.Tap) || !rf.taps.wasDeleted(h.Tap) {
				t.Errorf("tap %s: got present %v, want released", h.Tap, rf.taps.has(h.Tap))
			}
			if _, ok := rf.nat.rule(rec.ID); ok || !slices.Contains(rf.nat.removed, rec.ID) {
				t.Errorf("nat rules: got present %v, removed %q; want dropped for %s", ok, rf.nat.removed, rec.ID)
			}
			if !exists(rec.Runtime.WorkDiskPath) {
				t.Errorf("work disk %s: gone, want kept", rec.Runtime.WorkDiskPath)
			}
			// The daemon's view agrees and the vm starts again.
			if view, err := s.Get(t.Context(), rec.ID); err != nil || view.State != tt.wantState {
				t.Errorf("Get after reconcile: got %s, %v; want %s", view.State, err, tt.wantState)
			}
			again, err := s.Start(t.Context(), rec.ID, nil)
			if err != nil || again.State != model.VMStateRunning {
				t.Errorf("start after reconcile: got %s, %v; want running", again.State, err)
			}
		})
	}
}

// A pid the dead VMM had now belongs to another process: its start time
// differs, so the VM is dead and the other process is not touched.
func TestReconcileReusedPID(t *testing.T) {
	tests := []struct {
		name      string
		state     model.VMState
		corrupt   bool // the reused pid is found through the record's mirror
		wantState model.VMState
	}{
		{name: "running vm", state: model.VMStateRunning, wantState: model.VMStateStopped},
		{name: "running vm, corrupt handles file", state: model.VMStateRunning, corrupt: true, wantState: model.VMStateStopped},
		// A live vmm of a vm not recorded running is killed: it must be
		// the vm's own, never the reused pid's process.
		{name: "stopped vm", state: model.VMStateStopped, wantState: model.VMStateStopped},
		{name: "stopped vm, corrupt handles file", state: model.VMStateStopped, corrupt: true, wantState: model.VMStateStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
			rec, h := rf.started(t, "reused", true)
			kill(t, h.VMM)
			other, done := foreign(t)
			// The dead vmm's identity, with the pid now another process's.
			h.VMM.PID = other.PID
			h.VMM.StartTime = other.StartTime - 1
			rec.State = tt.state
			if err := rf.s.persistLocked(t.Context(), &rec, h); err != nil {
				t.Fatal(err)
			}
			if tt.corrupt {
				corruptHandles(t, rec)
			}
			if got := readHandles(rec).VMM; got.PID != other.PID || got.StartTime == other.StartTime {
				t.Fatalf("set-up: handles name pid %d start %d, want pid %d with another start time", got.PID, got.StartTime, other.PID)
			}
			s := rf.restart()
			reconcile(t, s)

			time.Sleep(100 * time.Millisecond) // a signal sent would have ended it by now
			select {
			case <-done:
				t.Fatalf("process %d under the reused pid exited, want it untouched", other.PID)
			default:
			}
			if !vmm.Alive(other) {
				t.Errorf("process %d under the reused pid: got not alive, want untouched", other.PID)
			}
			got := rf.get(t, rec.ID)
			if got.State != tt.wantState || got.Runtime.PID != 0 || got.Runtime.TapDevice != "" {
				t.Errorf("record: got state %s pid %d tap %q, want %s with handles cleared", got.State, got.Runtime.PID, got.Runtime.TapDevice, tt.wantState)
			}
			if rf.taps.has(h.Tap) {
				t.Errorf("tap %s: still present, want released", h.Tap)
			}
			if _, ok := rf.nat.rule(rec.ID); ok {
				t.Errorf("nat rule of %s: still present, want dropped", rec.ID)
			}
		})
	}
}

// A VMM launched by a daemon that died before it recorded the pid: the
// driver finds it, and as the VM is not recorded running it is killed.
func TestReconcileKillsRecoveredVMM(t *testing.T) {
	drv := &recoveringDriver{testDriver: &testDriver{t: t, name: "qemu"}, found: map[string]vmm.Handle{}}
	rf := newReconcileFixture(t, drv)
	rec := rf.create(t, "half-started", true)
	tap := network.TapName(rec.ID)
	// The start's tap step ran (handles name the tap), its vmm step did not.
	if err := rf.s.persistLocked(t.Context(), &rec, handles{Tap: tap}); err != nil {
		t.Fatal(err)
	}
	if err := rf.taps.CreateTap(t.Context(), tap); err != nil {
		t.Fatal(err)
	}
	launched, done := foreign(t)
	drv.found[rec.Runtime.VMDir] = launched

	reconcile(t, rf.restart())

	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("recovered vmm pid %d still runs, want it killed", launched.PID)
	}
	got := rf.get(t, rec.ID)
	if got.State != model.VMStateCreated || got.Runtime.PID != 0 || got.Runtime.TapDevice != "" {
		t.Errorf("record: got state %s pid %d tap %q, want created with handles cleared", got.State, got.Runtime.PID, got.Runtime.TapDevice)
	}
	if rf.taps.has(tap) {
		t.Errorf("tap %s: still present, want released", tap)
	}
}

// TAPs and NAT rules no running VM owns are removed; those of an
// adopted VM stay.
func TestReconcileRemovesLeakedTapsAndRules(t *testing.T) {
	rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
	live, lh := rf.started(t, "live", true)
	stopped := rf.create(t, "idle", true)
	for _, id := range []string{"0123456789abcdef0123456789abcdef", stopped.ID} {
		if err := rf.nat.Add(t.Context(), nat.Entry{VMID: id, IP: netip.MustParseAddr("172.16.0.99"), Tap: network.TapName(id)}); err != nil {
			t.Fatal(err)
		}
	}
	leaked := []string{
		network.TapPrefix + "0123456789ab", // no record at all
		network.TapName(stopped.ID),        // a vm that does not run
	}
	for _, tap := range leaked {
		if err := rf.taps.CreateTap(t.Context(), tap); err != nil {
			t.Fatal(err)
		}
	}
	reconcile(t, rf.restart())

	got, _ := rf.taps.ListTaps(t.Context())
	if want := []string{lh.Tap}; !slices.Equal(got, want) {
		t.Errorf("taps after reconcile: got %q, want %q", got, want)
	}
	for _, tap := range leaked {
		if !rf.taps.wasDeleted(tap) {
			t.Errorf("tap %s: not deleted, want removed", tap)
		}
	}
	rf.nat.mu.Lock()
	rules := slices.Sorted(maps.Keys(rf.nat.rules))
	rf.nat.mu.Unlock()
	if want := []string{live.ID}; !slices.Equal(rules, want) {
		t.Errorf("nat rules after reconcile: got vm ids %q, want %q", rules, want)
	}
	if st := rf.get(t, live.ID).State; st != model.VMStateRunning {
		t.Errorf("live vm: got %s, want running", st)
	}
	if st := rf.get(t, stopped.ID).State; st != model.VMStateCreated {
		t.Errorf("idle vm: got %s, want created", st)
	}
}

// A VM directory no record owns is moved to state/orphans with its
// contents, never deleted; the records and their directories stay.
func TestReconcileQuarantinesOrphanDirs(t *testing.T) {
	rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
	live, _ := rf.started(t, "live", false)
	idle := rf.create(t, "idle", true)
	const orphan = "0123456789abcdef"
	work := []byte("a user's work")
	makeOrphan := func() {
		dir := filepath.Join(rf.layout.VMsDir(), orphan)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "work.ext4"), work, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	makeOrphan()
	s := rf.restart()
	reconcile(t, s)

	orphans := filepath.Join(rf.layout.StateDir, "orphans")
	if exists(filepath.Join(rf.layout.VMsDir(), orphan)) {
		t.Errorf("orphan directory still in %s, want it moved", rf.layout.VMsDir())
	}
	if data, err := os.ReadFile(filepath.Join(orphans, orphan, "work.ext4")); err != nil || string(data) != string(work) {
		t.Errorf("quarantined work disk: got %q, %v; want %q", data, err, work)
	}
	entries, err := os.ReadDir(rf.layout.VMsDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{filepath.Base(live.Runtime.VMDir), filepath.Base(idle.Runtime.VMDir)}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("vm directories after reconcile: got %q, want %q", names, want)
	}
	recs, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Errorf("records after reconcile: got %d, want 2", len(recs))
	}
	for _, r := range recs {
		if !exists(r.Runtime.WorkDiskPath) {
			t.Errorf("vm %s: work disk %s gone", r.Name, r.Runtime.WorkDiskPath)
		}
	}

	// The same name orphaned again does not overwrite the first.
	makeOrphan()
	reconcile(t, s)
	entries, err = os.ReadDir(orphans)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name() != orphan || !strings.HasPrefix(entries[1].Name(), orphan+"-") {
		t.Errorf("orphans after a second reconcile: got %d entries %v, want %s and %s-TIMESTAMP", len(entries), entries, orphan, orphan)
	}
}

// A create or delete the dead daemon did not finish is completed: the
// record, its directory and its TAP go.
func TestReconcileFinishesInterruptedOperations(t *testing.T) {
	for _, intent := range []string{model.IntentCreating, model.IntentDeleting} {
		t.Run(intent, func(t *testing.T) {
			rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
			keep := rf.create(t, "keep", true)
			rec := rf.create(t, "half", true)
			rec.Runtime.Intent = intent
			if err := rf.s.store.UpdateVM(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
			tap := network.TapName(rec.ID)
			if err := rf.taps.CreateTap(t.Context(), tap); err != nil {
				t.Fatal(err)
			}
			reconcile(t, rf.restart())

			if _, err := rf.s.store.GetVM(t.Context(), rec.ID); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("record after reconcile: got %v, want not found", err)
			}
			if exists(rec.Runtime.VMDir) {
				t.Errorf("vm directory %s: still there, want removed", rec.Runtime.VMDir)
			}
			if exists(filepath.Join(rf.layout.StateDir, "orphans")) {
				t.Errorf("orphans directory exists, want the directory removed, not quarantined")
			}
			if rf.taps.has(tap) {
				t.Errorf("tap %s: still present, want removed", tap)
			}
			if got := rf.get(t, keep.ID); got.State != model.VMStateCreated || !exists(got.Runtime.VMDir) {
				t.Errorf("other vm: got state %s, dir present %v; want untouched", got.State, exists(got.Runtime.VMDir))
			}
		})
	}
}

// A VM whose work disk went away is flagged, not silently started later.
func TestReconcileMissingWorkDisk(t *testing.T) {
	rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
	rec := rf.create(t, "diskless", true)
	if err := os.Remove(rec.Runtime.WorkDiskPath); err != nil {
		t.Fatal(err)
	}
	reconcile(t, rf.restart())
	got := rf.get(t, rec.ID)
	if got.State != model.VMStateError || !strings.Contains(got.Runtime.LastError, rec.Runtime.WorkDiskPath) {
		t.Errorf("got state %s (last error %q), want error naming %s", got.State, got.Runtime.LastError, rec.Runtime.WorkDiskPath)
	}
}

// TestReconcileRunningWithoutWorkDisk checks that a running VM whose
// work disk file was removed from the host stays running: its VMM still
// has the disk open, and the record matches the process.
func TestReconcileRunningWithoutWorkDisk(t *testing.T) {
	rf := newReconcileFixture(t, &testDriver{t: t, name: "qemu"})
	rec, h := rf.started(t, "unlinked", false)
	if err := os.Remove(rec.Runtime.WorkDiskPath); err != nil {
		t.Fatal(err)
	}
	reconcile(t, rf.restart())
	got := rf.get(t, rec.ID)
	if got.State != model.VMStateRunning || got.Runtime.PID != h.VMM.PID || !vmm.Alive(h.VMM) {
		t.Errorf("got state %s, pid %d (vmm alive %v); want running with pid %d", got.State, got.Runtime.PID, vmm.Alive(h.VMM), h.VMM.PID)
	}
	if !rf.taps.has(h.Tap) {
		t.Errorf("tap %s of the running vm was removed", h.Tap)
	}
}
