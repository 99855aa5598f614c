//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"banger/internal/model"
)

// TestCrashAtEveryStep kills the daemon right after each named step of
// create, start, stop and delete (a bangerd built with the faultinject
// tag does that when BANGER_FAULT_STEP names the step), starts a new
// daemon, and checks that its reconcile leaves no leaked process, TAP,
// directory or row, that every VM's state matches reality, and that the
// work disk keeps its data.
func TestCrashAtEveryStep(t *testing.T) {
	e := newEnv(t)
	e.bin = faultBinDir
	e.ensureImage()

	// crash runs one command with the fault armed, then brings up a clean
	// daemon (the next command starts it) and checks consistency.
	crash := func(t *testing.T, step string, args ...string) {
		t.Helper()
		e.banger("daemon", "stop")
		r := e.bangerEnv(10*time.Minute, []string{"BANGER_FAULT_STEP=" + step}, args...)
		if r.code == 0 {
			t.Fatalf("banger %s with the daemon dying at %s: succeeded, want a failure\n%s", strings.Join(args, " "), step, r)
		}
		e.waitDaemonGone(t)
		e.assertConsistent(t, "after a crash at "+step)
	}

	t.Run("create", func(t *testing.T) {
		for _, step := range []string{"record", "vm-dir", "system-overlay", "work-disk", "file-sync", "ready"} {
			t.Run(step, func(t *testing.T) {
				crash(t, step, "vm", "create", "--no-start", "--name", "c-"+step)
				vms := e.vms()
				switch step {
				case "ready":
					// Every step ran: the VM exists and is complete.
					if len(vms) != 1 || vms[0].Name != "c-ready" || vms[0].State != model.VMStateCreated {
						t.Fatalf("after a crash past the last create step: got %+v, want c-ready created", vms)
					}
					e.ok("vm", "delete", "c-ready")
				default:
					if len(vms) != 0 {
						t.Errorf("after a crash at %s: got %d vms, want the half-made one undone", step, len(vms))
					}
				}
				e.assertClean("create crash at " + step)
			})
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, step := range []string{"delete-kill", "delete-tap", "delete-dir"} {
			t.Run(step, func(t *testing.T) {
				e.ok("vm", "create", "--no-start", "--name", "d-"+step)
				crash(t, step, "vm", "delete", "d-"+step)
				e.assertClean("delete crash at " + step)
			})
		}
	})

	// One VM goes through start and stop crashes; its work disk keeps a
	// file written on its first boot.
	e.ok("vm", "run", "-d", "--name", "keeper", "--nat")
	e.ok("vm", "exec", "keeper", "--", "sh", "-c", "echo kept > /root/kept.txt && sync")
	e.ok("vm", "stop", "keeper")

	t.Run("start", func(t *testing.T) {
		for _, step := range []string{"work-disk-size", "bridge", "tap", "nat", "rootfs", "vmm-launched", "vmm", "ssh"} {
			t.Run(step, func(t *testing.T) {
				if step == "rootfs" && e.vm("keeper").Runtime.RootfsBackend == "" {
					t.Skip("the rootfs step runs only for drivers that take raw system disks (firecracker); this vm has a qcow2 overlay")
				}
				crash(t, step, "vm", "start", "keeper")
				rec := e.vm("keeper")
				switch step {
				case "work-disk-size", "bridge", "tap", "nat", "rootfs", "vmm-launched":
					// No vmm was recorded: one that was launched is found
					// through its pid file and killed.
					if rec.State == model.VMStateRunning {
						t.Errorf("after a crash at %s: state running, want not running", step)
					}
				default:
					if rec.State != model.VMStateRunning {
						t.Errorf("after a crash at %s: state %q, want running (the vmm was launched and adopted)", step, rec.State)
					}
					e.ok("vm", "kill", "keeper")
				}
				e.assertConsistent(t, "after settling "+step)
			})
		}
	})

	t.Run("stop", func(t *testing.T) {
		for _, step := range []string{"stop-vmm", "release-tap"} {
			t.Run(step, func(t *testing.T) {
				e.ok("vm", "start", "keeper")
				crash(t, step, "vm", "stop", "keeper")
				if got := e.vm("keeper").State; got != model.VMStateStopped {
					t.Errorf("after a crash at %s: state %q, want stopped", step, got)
				}
			})
		}
	})

	t.Run("work disk intact", func(t *testing.T) {
		e.ok("vm", "start", "keeper")
		r := e.ok("vm", "exec", "keeper", "--", "cat", "/root/kept.txt")
		if strings.TrimSpace(r.stdout) != "kept" {
			t.Errorf("/root/kept.txt = %q, want kept", r.stdout)
		}
		e.ok("vm", "delete", "keeper")
		e.assertClean("end")
	})
}

// waitDaemonGone waits until the daemon named by the pid file is gone.
func (e *env) waitDaemonGone(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.home, "run", "bangerd.pid")); err == nil {
		waitGone(t, e.daemonPID())
	}
}

// assertConsistent checks that the records match the host: running VMs
// and only they have a live VMM and a TAP, and every VM directory
// belongs to a record and the other way round.
func (e *env) assertConsistent(t *testing.T, context string) {
	t.Helper()
	vms := e.vms()
	var wantTaps, dirs []string
	wantPIDs := map[int]bool{}
	for _, v := range vms {
		dirs = append(dirs, filepath.Base(v.Runtime.VMDir))
		if _, err := os.Stat(v.Runtime.WorkDiskPath); err != nil {
			t.Errorf("%s: vm %s: work disk: %v", context, v.Name, err)
		}
		if v.Runtime.Intent != "" {
			t.Errorf("%s: vm %s still carries intent %q", context, v.Name, v.Runtime.Intent)
		}
		if v.State == model.VMStateRunning {
			wantPIDs[v.Runtime.PID] = true
			wantTaps = append(wantTaps, v.Runtime.TapDevice)
		}
	}
	for _, pid := range e.qemuPIDs() {
		if !wantPIDs[pid] {
			t.Errorf("%s: qemu pid %d runs but no running vm owns it", context, pid)
		}
	}
	if got := len(e.qemuPIDs()); got != len(wantPIDs) {
		t.Errorf("%s: %d qemu processes, want %d (running vms)", context, got, len(wantPIDs))
	}
	taps := e.taps()
	slices.Sort(taps)
	slices.Sort(wantTaps)
	if !slices.Equal(taps, wantTaps) {
		t.Errorf("%s: taps %v, want %v", context, taps, wantTaps)
	}
	got := e.vmDirs()
	slices.Sort(got)
	slices.Sort(dirs)
	if !slices.Equal(got, dirs) {
		t.Errorf("%s: vm directories %v, want %v (one per record)", context, got, dirs)
	}
	// NAT rules exactly for the running NAT VMs.
	rules := e.nftRuleset()
	for _, v := range vms {
		has := strings.Contains(rules, v.Runtime.GuestIP+" masquerade")
		if want := v.State == model.VMStateRunning && v.Spec.NATEnabled; has != want {
			t.Errorf("%s: vm %s (%s, nat %v): masquerade rule present %v, want %v", context, v.Name, v.State, v.Spec.NATEnabled, has, want)
		}
	}
}
