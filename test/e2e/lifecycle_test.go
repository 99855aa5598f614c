//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"banger/internal/model"
	"banger/internal/vmm"
)

// stopBound is how long vm stop may take on a wedged guest: at most the
// service's graceful timeout (vm.Service.StopTimeout, 30 s; a VMM that
// does not take the power button request within 5 s is killed sooner),
// then a SIGKILL and the wait for it, with room for a loaded machine.
const stopBound = 30*time.Second + 15*time.Second

// unknownVMLine is the whole of stderr when one of several VMs given
// to a lifecycle command does not exist: that VM, the error, the op id.
var unknownVMLine = regexp.MustCompile(`^banger: nosuch: vm "nosuch" not found \[op-[0-9a-f]+\]$`)

// killBound is how long vm kill may take on a wedged guest.
const killBound = 15 * time.Second

// TestLifecycleTwoVMs runs the day-two commands on two VMs, booting each
// as few times as it can: several VMs in one lifecycle command (one of
// them unknown), a daemon kill -9 under two running VMs, vm set on a
// running VM applied by vm restart, vm logs (-f), vm kill with a signal,
// and a wedged (SIGSTOPped) VMM ended by vm stop and by vm kill.
func TestLifecycleTwoVMs(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	vms := []string{"alpha", "beta"}
	// Each step needs the state the steps before it left.
	step := func(name string, fn func(t *testing.T, e *env)) {
		if !t.Run(name, func(t *testing.T) { fn(t, e.withT(t)) }) {
			t.FailNow()
		}
	}

	step("start several", func(t *testing.T, e *env) {
		for _, name := range vms {
			e.ok("vm", "create", "--no-start", "--name", name)
		}
		r := e.ok("vm", "start", "alpha", "beta")
		wantStates(t, "vm start alpha beta", r, map[string]string{"alpha": "running", "beta": "running"})
		for _, name := range vms {
			if got := e.vm(name).State; got != model.VMStateRunning {
				t.Errorf("%s after vm start: state %q, want running", name, got)
			}
			e.guest(name, "echo "+name+"-data > /root/keep.txt && sync")
		}
		if got := len(e.qemuPIDs()); got != 2 {
			t.Errorf("after vm start alpha beta: %d qemu processes, want 2", got)
		}
	})

	step("daemon kill -9", func(t *testing.T, e *env) {
		before := map[string]model.VMRecord{}
		for _, name := range vms {
			before[name] = e.vm(name)
		}
		pids := sortedInts(e.qemuPIDs())
		old := e.daemonPID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 bangerd: %v", err)
		}
		waitGone(t, old)
		// The next command starts a new daemon, which reconciles.
		for _, name := range vms {
			after := e.vm(name)
			if after.State != model.VMStateRunning || after.Runtime.PID != before[name].Runtime.PID {
				t.Errorf("%s after the daemon restart: state %q vmm pid %d, want running with pid %d", name, after.State, after.Runtime.PID, before[name].Runtime.PID)
			}
			if got := e.guest(name, "cat /root/keep.txt"); got != name+"-data" {
				t.Errorf("%s after the daemon restart: /root/keep.txt = %q, want %q", name, got, name+"-data")
			}
		}
		if now := e.daemonPID(); now == old || !processAlive(now) {
			t.Errorf("daemon pid after restart: %d (alive %v), want a new live one (old %d)", now, processAlive(now), old)
		}
		if got := sortedInts(e.qemuPIDs()); !slices.Equal(got, pids) {
			t.Errorf("qemu processes after the daemon restart: %v, want the same as before %v", got, pids)
		}
		if got := len(e.taps()); got != 2 {
			t.Errorf("taps after the daemon restart: %d, want 2", got)
		}
	})

	step("set while running", func(t *testing.T, e *env) {
		r := e.ok("vm", "set", "alpha", "--vcpu", "1", "--memory", "1G")
		if !strings.Contains(r.stderr, "take effect at its next start") {
			t.Errorf("vm set on a running vm: stderr %q, want it to say the changes take effect at the next start", r.stderr)
		}
		rec := e.vm("alpha")
		if rec.State != model.VMStateRunning || rec.Spec.VCPUCount != 1 || rec.Spec.MemoryMiB != 1024 {
			t.Errorf("after vm set: state %q vcpu %d memory %d MiB, want running, 1, 1024", rec.State, rec.Spec.VCPUCount, rec.Spec.MemoryMiB)
		}
		// Not applied to the running guest.
		if nproc, mem := e.guestSize("alpha"); nproc != model.DefaultVCPUCount || mem <= 1024<<20 {
			t.Errorf("running guest after vm set: nproc %d MemTotal %d bytes, want the old %d vcpus and over 1 GiB until the next start", nproc, mem, model.DefaultVCPUCount)
		}
	})

	step("restart", func(t *testing.T, e *env) {
		bootID := e.guest("alpha", "cat /proc/sys/kernel/random/boot_id")
		oldPID := e.vm("alpha").Runtime.PID
		r := e.ok("vm", "restart", "alpha")
		wantStates(t, "vm restart alpha", r, map[string]string{"alpha": "running"})
		if got := e.guest("alpha", "cat /proc/sys/kernel/random/boot_id"); got == bootID || got == "" {
			t.Errorf("boot_id after vm restart: %q, want a new one (was %q)", got, bootID)
		}
		if processAlive(oldPID) {
			t.Errorf("the vmm before the restart (pid %d) still runs", oldPID)
		}
		if got := e.guest("alpha", "cat /root/keep.txt"); got != "alpha-data" {
			t.Errorf("after vm restart: /root/keep.txt = %q, want alpha-data", got)
		}
		nproc, mem := e.guestSize("alpha")
		if nproc != 1 {
			t.Errorf("after vm set --vcpu 1 and restart: nproc %d, want 1", nproc)
		}
		if mem <= 768<<20 || mem > 1024<<20 {
			t.Errorf("after vm set --memory 1G and restart: MemTotal %d bytes, want 768 MiB to 1 GiB", mem)
		}
		if got := len(e.qemuPIDs()); got != 2 {
			t.Errorf("after vm restart: %d qemu processes, want 2", got)
		}
	})

	step("logs", func(t *testing.T, e *env) {
		r := e.ok("vm", "logs", "alpha")
		if !strings.Contains(r.stdout, "Linux version") {
			t.Errorf("vm logs alpha: %d bytes without \"Linux version\"", len(r.stdout))
		}
		// -f prints what is there, then what the guest prints later,
		// until interrupted.
		f := e.startBanger("vm", "logs", "-f", "alpha")
		defer f.stop()
		f.waitOutput(t, "Linux version")
		marker := "banger-follow-" + randomHex(4)
		e.guest("alpha", "echo '<2>"+marker+"' > /dev/kmsg")
		f.waitOutput(t, marker)
		start := time.Now()
		code := f.interrupt(t)
		if code != 0 {
			t.Errorf("vm logs -f after SIGINT: exit %d, want 0\nstderr: %s", code, f.stderr.String())
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("vm logs -f took %s to exit after SIGINT, want under 3 s", took.Round(time.Millisecond))
		}
	})

	step("stop several with an unknown one and a wedged one", func(t *testing.T, e *env) {
		recs := map[string]model.VMRecord{"alpha": e.vm("alpha"), "beta": e.vm("beta")}
		e.wedge(t, "beta")
		start := time.Now()
		r := e.banger("vm", "stop", "alpha", "nosuch", "beta")
		took := time.Since(start)
		t.Logf("vm stop alpha nosuch beta (beta wedged) took %s", took.Round(time.Millisecond))
		if r.code != 1 {
			t.Errorf("vm stop alpha nosuch beta: exit %d, want 1\n%s", r.code, r)
		}
		if msg := strings.TrimSpace(r.stderr); !unknownVMLine.MatchString(msg) {
			t.Errorf("vm stop alpha nosuch beta: stderr %q, want one line naming the unknown vm (%s)", msg, unknownVMLine)
		}
		wantStates(t, "vm stop alpha nosuch beta", r, map[string]string{"alpha": "stopped", "beta": "stopped"})
		if took > stopBound {
			t.Errorf("vm stop with a wedged guest took %s, want at most %s", took.Round(time.Second), stopBound)
		}
		for name, rec := range recs {
			e.assertStopped(t, name, rec)
		}
		if !e.daemonLogHas("guest did not power off in time", "beta") {
			t.Errorf("daemon log does not say the wedged guest beta was killed after the graceful timeout")
		}
		if e.daemonLogHas("guest did not power off in time", "alpha") {
			t.Errorf("daemon log says alpha was killed; want it powered off gracefully")
		}
	})

	step("start several again", func(t *testing.T, e *env) {
		r := e.ok("vm", "start", "alpha", "beta")
		wantStates(t, "vm start alpha beta", r, map[string]string{"alpha": "running", "beta": "running"})
		for _, name := range vms {
			if got := e.guest(name, "cat /root/keep.txt"); got != name+"-data" {
				t.Errorf("%s after stop and start: /root/keep.txt = %q, want %q", name, got, name+"-data")
			}
		}
	})

	step("kill --signal TERM", func(t *testing.T, e *env) {
		rec := e.vm("alpha")
		r := e.ok("vm", "kill", "--signal", "TERM", "alpha")
		wantStates(t, "vm kill --signal TERM alpha", r, map[string]string{"alpha": "stopped"})
		e.assertStopped(t, "alpha", rec)
		// QEMU removes its pid file when it ends on a signal it handles;
		// a SIGKILL leaves it behind.
		if _, err := os.Stat(filepath.Join(rec.Runtime.VMDir, "qemu.pid")); !os.IsNotExist(err) {
			t.Errorf("after vm kill --signal TERM: qemu.pid still there (err %v): the vmm did not end on SIGTERM", err)
		}
	})

	step("kill a wedged vm", func(t *testing.T, e *env) {
		rec := e.vm("beta")
		e.wedge(t, "beta")
		start := time.Now()
		r := e.ok("vm", "kill", "-s", "KILL", "beta")
		took := time.Since(start)
		t.Logf("vm kill beta (wedged) took %s", took.Round(time.Millisecond))
		wantStates(t, "vm kill beta", r, map[string]string{"beta": "stopped"})
		if took > killBound {
			t.Errorf("vm kill of a wedged guest took %s, want at most %s", took.Round(time.Millisecond), killBound)
		}
		e.assertStopped(t, "beta", rec)
	})

	step("delete several", func(t *testing.T, e *env) {
		r := e.ok("vm", "delete", "alpha", "beta")
		wantStates(t, "vm delete alpha beta", r, map[string]string{"alpha": "deleted", "beta": "deleted"})
		e.assertClean("after vm delete alpha beta")
	})
}

// withT returns a copy of e whose helpers fail t (a subtest) rather
// than the test that made e.
func (e *env) withT(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// guest runs script in vm's shell and returns its trimmed stdout.
func (e *env) guest(vm, script string) string {
	e.t.Helper()
	return strings.TrimSpace(e.ok("vm", "exec", vm, "--", "sh", "-c", script).stdout)
}

// guestSize returns the guest's online CPUs and MemTotal in bytes.
func (e *env) guestSize(vm string) (int, int64) {
	e.t.Helper()
	out := e.guest(vm, "nproc; awk '/^MemTotal:/ {print $2}' /proc/meminfo")
	fields := strings.Fields(out)
	if len(fields) != 2 {
		e.t.Fatalf("%s: nproc and MemTotal: got %q", vm, out)
	}
	nproc, err1 := strconv.Atoi(fields[0])
	kib, err2 := strconv.ParseInt(fields[1], 10, 64)
	if err1 != nil || err2 != nil {
		e.t.Fatalf("%s: nproc and MemTotal: got %q", vm, out)
	}
	return nproc, kib << 10
}

// wedge SIGSTOPs vm's VMM process, as a hung hypervisor would be: it
// answers neither the guest's power button nor QMP.
func (e *env) wedge(t *testing.T, vm string) int {
	t.Helper()
	pid := e.vm(vm).Runtime.PID
	if pid <= 0 || !processAlive(pid) {
		t.Fatalf("%s: vmm pid %d does not run", vm, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s's vmm: %v", vm, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := vmm.ReadProcStat(pid)
		if err == nil && st.State == 'T' {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's vmm pid %d not stopped 5 s after SIGSTOP (state %q, %v)", vm, pid, st.State, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertStopped checks that vm, which ran as before, is stopped and its
// VMM process and TAP are gone.
func (e *env) assertStopped(t *testing.T, vm string, before model.VMRecord) {
	t.Helper()
	if got := e.vm(vm).State; got != model.VMStateStopped {
		t.Errorf("%s: state %q, want stopped", vm, got)
	}
	if processAlive(before.Runtime.PID) {
		t.Errorf("%s: vmm pid %d still runs", vm, before.Runtime.PID)
	}
	if before.Runtime.TapDevice == "" {
		t.Errorf("%s: the running vm recorded no tap", vm)
	} else if slices.Contains(e.taps(), before.Runtime.TapDevice) {
		t.Errorf("%s: tap %s left after the vm stopped", vm, before.Runtime.TapDevice)
	}
}

// daemonLogHas reports whether one line of the daemon log holds every
// one of words.
func (e *env) daemonLogHas(words ...string) bool {
	data, err := os.ReadFile(filepath.Join(e.home, "logs", "bangerd.log"))
	if err != nil {
		e.t.Fatalf("read daemon log: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}

// wantStates checks the "NAME<TAB>STATE" lines a lifecycle command
// printed: exactly want.
func wantStates(t *testing.T, what string, r result, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if name, state, ok := strings.Cut(line, "\t"); ok {
			got[name] = state
		} else if line != "" {
			t.Errorf("%s: stdout line %q is not NAME<TAB>STATE", what, line)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: printed %v, want %v", what, got, want)
	}
	for name, state := range want {
		if got[name] != state {
			t.Errorf("%s: printed %s %q, want %q", what, name, got[name], state)
		}
	}
}

// background is a banger command left running.
type background struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error
}

// startBanger starts the CLI in the env's namespace, in its own process
// group, without waiting for it.
func (e *env) startBanger(args ...string) *background {
	e.t.Helper()
	b := &background{done: make(chan struct{})}
	full := append([]string{"netns", "exec", e.netns, filepath.Join(e.bin, "banger")}, args...)
	b.cmd = exec.Command("ip", full...)
	b.cmd.Env = append(os.Environ(), "BANGER_HOME="+e.home)
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		e.t.Fatalf("start banger %v: %v", args, err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	return b
}

// waitOutput waits up to 30 s for want on stdout.
func (b *background) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(b.stdout.String(), want) {
		select {
		case <-b.done:
			t.Fatalf("command exited (%v) before printing %q\nstderr: %s", b.err, want, b.stderr.String())
		case <-deadline:
			t.Fatalf("command did not print %q within 30 s (printed %d bytes)", want, len(b.stdout.String()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C would, and returns the exit code.
func (b *background) interrupt(t *testing.T) int {
	t.Helper()
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("command still runs 10 s after SIGINT")
	}
	if exit, ok := b.err.(*exec.ExitError); ok {
		return exit.ExitCode()
	} else if b.err != nil {
		t.Fatalf("wait: %v", b.err)
	}
	return 0
}

// stop kills the command if it still runs.
func (b *background) stop() {
	select {
	case <-b.done:
	default:
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and other readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func sortedInts(s []int) []int {
	slices.Sort(s)
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
