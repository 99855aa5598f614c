package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/paths"
	"banger/internal/vmm"
	"banger/internal/vmm/firecracker/fctest"
)

// fakeMainEnv makes the test binary act as the fake Firecracker,
// fakeJailerEnv as the fake jailer.
const (
	fakeMainEnv   = "BANGER_FAKEFC_MAIN"
	fakeJailerEnv = "BANGER_FAKEJAILER_MAIN"
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(fakeMainEnv) == "1":
		os.Exit(fctest.Main(os.Args[1:], os.Stdout, os.Stderr))
	case os.Getenv(fakeJailerEnv) == "1":
		os.Exit(fctest.JailerMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// fixture is a driver whose Firecracker is the fake (this test binary
// re-executed), and a spec whose files exist.
type fixture struct {
	d      *Driver
	spec   vmm.Spec
	record string
}

// fakeBinaries returns the path of Firecracker's API specification the
// fake validates against, and this test binary, which plays the fakes.
func fakeBinaries(t *testing.T) (specPath, self string) {
	t.Helper()
	specPath, err := fctest.SDKSpecPath()
	if err != nil {
		t.Fatal(err)
	}
	self, err = os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return specPath, self
}

func newFixture(t *testing.T, env map[string]string) fixture {
	t.Helper()
	specPath, self := fakeBinaries(t)
	bin := filepath.Join(t.TempDir(), "firecracker")
	record := filepath.Join(t.TempDir(), "requests.jsonl")
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&script, "export %s=1 %s=%q %s=%q\n", fakeMainEnv, fctest.EnvSpec, specPath, fctest.EnvRecord, record)
	for k, v := range env {
		fmt.Fprintf(&script, "export %s=%q\n", k, v)
	}
	fmt.Fprintf(&script, "exec %q \"$@\"\n", self)
	if err := os.WriteFile(bin, []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	// A short directory: socket paths must fit in 108 bytes.
	vmDir, err := os.MkdirTemp("/tmp", "bfc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(vmDir) })
	spec := fullSpec()
	spec.Kernel = filepath.Join(dir, "vmlinux")
	spec.Initrd = filepath.Join(dir, "initrd.img")
	spec.Dir = vmDir
	spec.ConsoleLog = filepath.Join(vmDir, "console.log")
	spec.AgentSocket = filepath.Join(vmDir, "agent.sock")
	for i := range spec.Disks {
		spec.Disks[i].Path = filepath.Join(dir, spec.Disks[i].ID+".img")
	}
	for _, f := range []string{spec.Initrd, spec.Disks[0].Path, spec.Disks[1].Path, spec.Disks[2].Path} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(spec.Kernel, []byte("\x7fELF fake kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := New(Options{Binary: bin})
	d.checkTap = func(string) error { return nil }
	return fixture{d: d, spec: spec, record: record}
}

// start starts the machine and kills it when the test ends.
func (f fixture) start(t *testing.T) vmm.Handle {
	t.Helper()
	h, err := f.d.Start(t.Context(), f.spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { vmm.Kill(context.Background(), h) })
	return h
}

// TestLifecycle runs the driver against the fake through start, status,
// metrics, a daemon restart (a new driver with the persisted handle) and
// a graceful stop.
func TestLifecycle(t *testing.T) {
	f := newFixture(t, nil)
	h := f.start(t)
	if h.Driver != "firecracker" || h.PID <= 0 || h.StartTime == 0 || h.ControlSocket != filepath.Join(f.spec.Dir, apiSockName) {
		t.Errorf("got handle %+v, want driver, pid, start time and the api socket in the vm dir", h)
	}

	// Every request the fake saw was valid and in the order built.
	recs, err := fctest.ReadRecord(f.record)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ConfigRequests(f.spec, layoutFor(f.spec), Version{1, 7, 0})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Status/100 != 2 {
			t.Errorf("%s %s: got status %d (%s), want success", r.Method, r.Path, r.Status, r.Error)
		}
		if r.Method == "PUT" {
			got = append(got, r.Path)
		}
	}
	var wantPaths []string
	for _, r := range append(want, StartRequest()) {
		wantPaths = append(wantPaths, r.Path)
	}
	if strings.Join(got, " ") != strings.Join(wantPaths, " ") {
		t.Errorf("got PUTs %v, want %v", got, wantPaths)
	}

	info, err := f.d.Status(t.Context(), h)
	if err != nil || info.State != StateRunning || info.ID != f.spec.ID || info.VMMVersion != "1.7.0" {
		t.Errorf("got status %+v, %v, want Running, id %s, version 1.7.0", info, err, f.spec.ID)
	}
	m, err := f.d.Metrics(t.Context(), h)
	if err != nil || m["block"] == nil {
		t.Errorf("got metrics %v, %v, want a sample with block counters", m, err)
	}
	console, _ := os.ReadFile(f.spec.ConsoleLog)
	if !bytes.Contains(console, []byte("Linux version")) {
		t.Errorf("got console %q, want the guest's boot output", console)
	}

	// Daemon restart: the handle goes through JSON, a new driver uses it.
	data, _ := json.Marshal(h)
	var h2 vmm.Handle
	json.Unmarshal(data, &h2)
	d2 := New(Options{Binary: f.d.binary})
	d2.checkTap = f.d.checkTap
	if info, err := d2.Status(t.Context(), h2); err != nil || info.State != StateRunning {
		t.Errorf("after restart: got status %+v, %v, want Running", info, err)
	}
	if rh, ok := d2.Recover(f.spec.Dir); !ok || rh != h {
		t.Errorf("after restart: got recovered %+v, %v, want %+v", rh, ok, h)
	}
	if _, err := d2.Start(t.Context(), f.spec); !errdefs.IsConflict(err) {
		t.Errorf("start while running: got %v, want a conflict", err)
	}

	if err := d2.Stop(t.Context(), h2, 5*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if vmm.Alive(h) {
		t.Errorf("got firecracker alive after stop, want it gone")
	}
	if _, err := d2.Status(t.Context(), h2); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("status after stop: got %v, want ErrNotRunning", err)
	}
	last := recs[len(recs)-1]
	if recs, _ = fctest.ReadRecord(f.record); !strings.Contains(string(recs[len(recs)-1].Body), ActionSendCtrlAltDel) {
		t.Errorf("got last request %+v (before: %+v), want SendCtrlAltDel", recs[len(recs)-1], last)
	}
}

// TestStopKillsStubbornGuest: a guest that ignores Ctrl-Alt-Del is
// killed when the grace period ends.
func TestStopKillsStubbornGuest(t *testing.T) {
	f := newFixture(t, map[string]string{fctest.EnvIgnoreCAD: "1"})
	h := f.start(t)
	begin := time.Now()
	if err := f.d.Stop(t.Context(), h, 300*time.Millisecond); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if vmm.Alive(h) {
		t.Fatal("got firecracker alive after stop, want it killed")
	}
	if took := time.Since(begin); took < 300*time.Millisecond {
		t.Errorf("got stop after %v, want it to wait the 300ms grace first", took)
	}
}

// TestCrash: the VMM process dies; the driver reports it gone, cleans up
// idempotently, and starts the machine again over the leftovers.
func TestCrash(t *testing.T) {
	f := newFixture(t, nil)
	h := f.start(t)
	if err := syscall.Kill(h.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := vmm.WaitExit(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Status(t.Context(), h); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("status: got %v, want ErrNotRunning", err)
	}
	if err := f.d.Shutdown(t.Context(), h); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("shutdown: got %v, want ErrNotRunning", err)
	}
	if err := f.d.Kill(t.Context(), h); err != nil {
		t.Errorf("kill: got %v, want nil for a gone process", err)
	}
	if _, ok := f.d.Recover(f.spec.Dir); ok {
		t.Errorf("recover: got a handle for a dead process, want none")
	}
	// The stale api and vsock sockets are in the way of a new start.
	h2 := f.start(t)
	if h2.PID == h.PID && h2.StartTime == h.StartTime {
		t.Errorf("got the old process back, want a new one")
	}
	if info, err := f.d.Status(t.Context(), h2); err != nil || info.State != StateRunning {
		t.Errorf("restarted: got %+v, %v, want Running", info, err)
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		edit    func(*vmm.Spec)
		wantErr string
		kind    func(error) bool
	}{
		{name: "version too old", env: map[string]string{fctest.EnvVersion: "1.4.2"}, wantErr: "firecracker 1.4.2 is not supported: banger needs Firecracker 1.5.0 or later", kind: errdefs.IsInvalid},
		{name: "api error", env: map[string]string{fctest.EnvFailPath: "/drives/work"}, wantErr: "PUT /drives/work: 400: injected failure"},
		{name: "qcow2 disk", edit: func(s *vmm.Spec) { s.Disks[0].Format = "qcow2" }, wantErr: `format "qcow2", want raw`, kind: errdefs.IsInvalid},
		{name: "missing kernel", edit: func(s *vmm.Spec) { s.Kernel = "/nonexistent/vmlinux" }, wantErr: "no such file", kind: errdefs.IsNotFound},
		{name: "compressed kernel without cache", edit: func(s *vmm.Spec) { os.WriteFile(s.Kernel, []byte("MZ bzImage"), 0o644) }, wantErr: "no kernel cache", kind: errdefs.IsInvalid},
		{name: "vsock cid", edit: func(s *vmm.Spec) { s.VSockCID = 1 }, wantErr: "vsock cid 1", kind: errdefs.IsInvalid},
		{name: "socket path too long", edit: func(s *vmm.Spec) { s.AgentSocket = "/" + strings.Repeat("a", 120) }, wantErr: "a unix socket path holds at most 107", kind: errdefs.IsInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.env)
			if tt.edit != nil {
				tt.edit(&f.spec)
			}
			h, err := f.d.Start(t.Context(), f.spec)
			if err == nil {
				vmm.Kill(context.Background(), h)
				t.Fatalf("got no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.kind != nil && !tt.kind(err) {
				t.Errorf("got %v, want another error kind", err)
			}
			// Nothing is left running and no state is recorded.
			if _, ok := f.d.Recover(f.spec.Dir); ok {
				t.Errorf("got a running machine after a failed start")
			}
			if pids := processesNaming(f.spec.Dir); len(pids) > 0 {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				t.Errorf("got firecracker pids %v left running after a failed start", pids)
			}
			if _, err := os.Stat(filepath.Join(f.spec.Dir, stateName)); err == nil {
				t.Errorf("got %s left after a failed start", stateName)
			}
		})
	}
}

// TestAgentSocketIsVsockBridge: the vsock unix socket answers CONNECT
// the way Firecracker's does.
func TestAgentSocketIsVsockBridge(t *testing.T) {
	f := newFixture(t, nil)
	h := f.start(t)
	conn, err := DialUnix(t.Context(), h.AgentSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT 52\n")
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "OK ") {
		t.Errorf("got %q, want OK <port>", buf[:n])
	}
}

// TestDialUnixLongPath reaches a socket whose path is longer than a
// socket address holds.
func TestDialUnixLongPath(t *testing.T) {
	f := newFixture(t, nil)
	h := f.start(t)
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(deep, "fc.sock")
	if err := os.Link(h.ControlSocket, long); err != nil {
		t.Skipf("cannot hard-link a socket here: %v", err)
	}
	if len(long) <= paths.MaxSocketPath {
		t.Fatalf("got a %d-byte path, the test needs more than %d", len(long), paths.MaxSocketPath)
	}
	h.ControlSocket = long
	if info, err := f.d.Status(t.Context(), h); err != nil || info.State != StateRunning {
		t.Errorf("got %+v, %v through a %d-byte path, want Running", info, err, len(long))
	}
}

// processesNaming returns the pids whose command line mentions s (a
// fake Firecracker is started with its socket in the VM's dir). Zombies
// do not count.
func processesNaming(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), s) {
			continue
		}
		if st, err := vmm.ReadProcStat(pid); err == nil && st.State != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}
