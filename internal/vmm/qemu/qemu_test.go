package qemu

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/vmm"
)

func TestNewAccel(t *testing.T) {
	kvmOK, _ := vmm.KVMUsable()
	autoWant := AccelTCG
	if kvmOK {
		autoWant = AccelKVM
	}
	tests := []struct {
		name      string
		accel     string
		want      string
		wantInWhy string
	}{
		{name: "default is auto", accel: "", want: autoWant},
		{name: "auto", accel: "auto", want: autoWant},
		{name: "kvm forced", accel: "kvm", want: AccelKVM, wantInWhy: "configuration"},
		{name: "tcg forced", accel: "tcg", want: AccelTCG, wantInWhy: "configuration"},
		{name: "invalid", accel: "hvf", want: "", wantInWhy: `invalid qemu accel "hvf"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			d := New(Options{Accel: tt.accel, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			got, why := d.Accel()
			if got != tt.want {
				t.Errorf("got accel %q (%s), want %q", got, why, tt.want)
			}
			if !strings.Contains(why, tt.wantInWhy) {
				t.Errorf("got reason %q, want it to contain %q", why, tt.wantInWhy)
			}
			warned := strings.Count(logs.String(), "using TCG software emulation")
			wantWarn := 0
			if (tt.accel == "" || tt.accel == "auto") && !kvmOK {
				wantWarn = 1
			}
			if warned != wantWarn {
				t.Errorf("got %d TCG warnings (%q), want %d", warned, logs.String(), wantWarn)
			}
		})
	}
	if d := New(Options{}); d.Name() != "qemu" || d.binary != "qemu-system-x86_64" {
		t.Errorf("got name %q binary %q, want qemu, qemu-system-x86_64", d.Name(), d.binary)
	}
}

func TestStartInvalidAccel(t *testing.T) {
	d := New(Options{Accel: "hvf"})
	_, err := d.Start(t.Context(), testSpec(t.TempDir()))
	if !errdefs.IsInvalid(err) {
		t.Errorf("got err %v, want invalid argument", err)
	}
}

// startFixture returns a spec whose files all exist, and a driver whose
// "qemu" is the shell script body.
func startFixture(t *testing.T, script string) (*Driver, vmm.Spec) {
	t.Helper()
	dir := t.TempDir()
	spec := testSpec(dir)
	spec.TapDevice = "" // Start checks that the TAP exists
	for _, f := range []string{spec.Kernel, spec.Initrd, spec.Disks[0].Path, spec.Disks[1].Path} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(t.TempDir(), "fake-qemu")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return New(Options{Binary: bin, Accel: "tcg"}), spec
}

func TestStartMissingKernel(t *testing.T) {
	d, spec := startFixture(t, "echo launched > \"$(dirname \"$0\")/launched\"\n")
	spec.Kernel = "/x/vmlinuz"
	_, err := d.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), `kernel "/x/vmlinuz": no such file`) || !errdefs.IsNotFound(err) {
		t.Fatalf("got err %v, want a not-found error naming the kernel", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.binary), "launched")); err == nil {
		t.Errorf("got qemu launched, want no launch for an invalid spec")
	}
}

func TestStartQEMUFails(t *testing.T) {
	d, spec := startFixture(t, "echo 'qemu-system-x86_64: -netdev tap,id=net0: could not open /dev/net/tun: No such device' >&2\nexit 1\n")
	_, err := d.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "could not open /dev/net/tun") {
		t.Fatalf("got err %v, want qemu's stderr in it", err)
	}
	if !strings.Contains(err.Error(), `start vm "demo"`) {
		t.Errorf("got err %q, want it to name the vm", err)
	}
}

// TestStartCleansUpSilentQEMU: QEMU started (its pid file names a live
// process) but never answers on QMP. Start must fail when ctx ends, kill
// the process and remove the pid file.
func TestStartCleansUpSilentQEMU(t *testing.T) {
	script := `for a; do pidfile="$a"; done
sleep 300 </dev/null >/dev/null 2>&1 &
echo $! > "$pidfile"
echo $! > "$(dirname "$0")/child.pid"
`
	d, spec := startFixture(t, script)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := d.Start(ctx, spec)
	if err == nil {
		t.Fatal("got nil error, want a qmp failure")
	}
	pid, perr := readPidfile(filepath.Join(filepath.Dir(d.binary), "child.pid"))
	if perr != nil {
		t.Fatalf("fake qemu did not run: %v", perr)
	}
	if st, err := vmm.ReadProcStat(pid); err == nil && st.State != 'Z' {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("got fake qemu pid %d still running (state %c), want it killed", pid, st.State)
	}
	paths, _ := PathsFor(spec.Dir)
	if _, err := os.Stat(paths.PIDFile); err == nil {
		t.Errorf("got pid file left behind, want it removed")
	}
}

func TestStartRefusesRunningMachine(t *testing.T) {
	d, spec := startFixture(t, "exit 0\n")
	paths, _ := PathsFor(spec.Dir)
	// A process whose command line names the pid file, like QEMU's.
	cmd := exec.Command("sh", "-c", "sleep 300; :", "sh", "-pidfile", paths.PIDFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := os.WriteFile(paths.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.Start(t.Context(), spec)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "already runs") {
		t.Errorf("got err %v, want a conflict", err)
	}
}

func TestStartMissingTap(t *testing.T) {
	d, spec := startFixture(t, "exit 0\n")
	spec.TapDevice = "tap-bqt-missing"
	_, err := d.Start(t.Context(), spec)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `tap "tap-bqt-missing": no such network device`) {
		t.Errorf("got err %v, want a not-found error naming the tap", err)
	}
}

func TestRunningFromPidfile(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "qemu.pid")
	tests := []struct {
		name    string
		content string
		want    bool
	}{
		{name: "missing file", content: "", want: false},
		{name: "garbage", content: "abc\n", want: false},
		{name: "live pid of another program", content: strconv.Itoa(os.Getpid()) + "\n", want: false},
		{name: "dead pid", content: "999999999\n", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(pidfile)
			if tt.content != "" {
				if err := os.WriteFile(pidfile, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, got := runningFromPidfile(pidfile); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestControlOfDeadMachine(t *testing.T) {
	d := New(Options{Accel: "tcg"})
	h := vmm.Handle{Driver: "qemu", PID: 999999999, ControlSocket: "/nonexistent/qmp.sock"}
	tests := []struct {
		name string
		run  func() error
	}{
		{name: "shutdown", run: func() error { return d.Shutdown(t.Context(), h) }},
		{name: "quit", run: func() error { return d.Quit(t.Context(), h) }},
		{name: "status", run: func() error { _, err := d.Status(t.Context(), h); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, vmm.ErrNotRunning) {
				t.Errorf("got err %v, want vmm.ErrNotRunning", err)
			}
		})
	}
}
