//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"banger/internal/model"
)

// TestVMLifecycle walks the path a new user takes: run a command in a
// fresh VM, inspect it, keep data across stop/start and a daemon crash,
// and delete it without leaving anything behind.
func TestVMLifecycle(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()

	r := e.ok("vm", "run", "--name", "demo", "--", "cat", "/etc/os-release")
	if !strings.Contains(r.stdout, `VERSION_ID="12"`) || !strings.Contains(r.stdout, "Debian GNU/Linux") {
		t.Fatalf("vm run cat /etc/os-release: got %q, want Debian 12", r.stdout)
	}

	t.Run("exit status", func(t *testing.T) {
		r := e.banger("vm", "exec", "demo", "--", "sh", "-c", "exit 7")
		if r.code != 7 {
			t.Errorf("vm exec sh -c 'exit 7': got exit %d, want 7\n%s", r.code, r)
		}
	})

	t.Run("stdout and stderr apart", func(t *testing.T) {
		r := e.ok("vm", "exec", "demo", "--", "sh", "-c", "echo to-out; echo to-err >&2")
		if strings.TrimSpace(r.stdout) != "to-out" || strings.TrimSpace(r.stderr) != "to-err" {
			t.Errorf("got stdout %q stderr %q, want to-out and to-err", r.stdout, r.stderr)
		}
	})

	t.Run("list json", func(t *testing.T) {
		vms := e.vms()
		if len(vms) != 1 {
			t.Fatalf("got %d vms, want 1", len(vms))
		}
		v := vms[0]
		if v.Name != "demo" || v.State != model.VMStateRunning || v.Runtime.GuestIP != "172.16.0.2" || v.ImageName != model.DefaultImageName {
			t.Errorf("got name %q state %q ip %q image %q, want demo running 172.16.0.2 %s", v.Name, v.State, v.Runtime.GuestIP, v.ImageName, model.DefaultImageName)
		}
	})

	t.Run("dns", func(t *testing.T) {
		rcode, addrs := e.queryVM("demo.vm")
		if rcode != mdns.RcodeSuccess || len(addrs) != 1 || addrs[0] != "172.16.0.2" {
			t.Errorf("demo.vm: rcode %d addrs %v, want NOERROR 172.16.0.2", rcode, addrs)
		}
		if rcode, _ := e.queryVM("nosuch.vm"); rcode != mdns.RcodeNameError {
			t.Errorf("nosuch.vm: rcode %d, want NXDOMAIN", rcode)
		}
	})

	t.Run("guest identity", func(t *testing.T) {
		r := e.ok("vm", "exec", "demo", "--", "sh", "-c", "hostname; findmnt -no SOURCE,FSTYPE /root; ip -4 -o addr show eth0")
		for _, want := range []string{"demo", "ext4", "172.16.0.2/24"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("guest report %q lacks %q", r.stdout, want)
			}
		}
	})

	e.ok("vm", "exec", "demo", "--", "sh", "-c", "echo precious > /root/keep.txt && sync")

	t.Run("work disk survives stop and start", func(t *testing.T) {
		e.ok("vm", "stop", "demo")
		if got := e.vm("demo").State; got != model.VMStateStopped {
			t.Fatalf("after stop: state %q, want stopped", got)
		}
		if pids := e.qemuPIDs(); len(pids) != 0 {
			t.Fatalf("after stop: qemu still runs: %v", pids)
		}
		if taps := e.taps(); len(taps) != 0 {
			t.Errorf("after stop: taps left: %v", taps)
		}
		e.fails("work disks only grow", "vm", "set", "demo", "--disk-size", "4G")
		e.ok("vm", "set", "demo", "--disk-size", "10G", "--vcpu", "1")
		e.ok("vm", "start", "demo")
		r := e.ok("vm", "exec", "demo", "--", "sh", "-c", "nproc; df -B1 --output=size /root | tail -1")
		fields := strings.Fields(r.stdout)
		if len(fields) != 2 || fields[0] != "1" {
			t.Errorf("after vm set --vcpu 1: nproc and /root size = %q, want 1 vcpu", r.stdout)
		} else if size, _ := strconv.ParseInt(fields[1], 10, 64); size < 9<<30 {
			t.Errorf("after vm set --disk-size 10G: /root is %d bytes, want over 9 GiB", size)
		}
		r = e.ok("vm", "exec", "demo", "--", "cat", "/root/keep.txt")
		if strings.TrimSpace(r.stdout) != "precious" {
			t.Errorf("after restart: /root/keep.txt = %q, want precious", r.stdout)
		}
	})

	t.Run("daemon crash and restart", func(t *testing.T) {
		before := e.vm("demo")
		pid := e.daemonPID()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill daemon: %v", err)
		}
		waitGone(t, pid)
		// The next command starts a new daemon, which adopts the VM.
		after := e.vm("demo")
		if after.State != model.VMStateRunning || after.Runtime.PID != before.Runtime.PID {
			t.Fatalf("after daemon restart: state %q pid %d, want running pid %d", after.State, after.Runtime.PID, before.Runtime.PID)
		}
		r := e.ok("vm", "exec", "demo", "--", "cat", "/root/keep.txt")
		if strings.TrimSpace(r.stdout) != "precious" {
			t.Errorf("after daemon restart: /root/keep.txt = %q, want precious", r.stdout)
		}
	})

	t.Run("vmm killed by hand", func(t *testing.T) {
		pid := e.vm("demo").Runtime.PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill qemu: %v", err)
		}
		// daemon status counts what the store holds, without refreshing:
		// the daemon's own poll must notice the exit.
		deadline := time.Now().Add(12 * time.Second)
		for {
			var st struct {
				VMsRunning int `json:"vms_running"`
			}
			json.Unmarshal([]byte(e.ok("daemon", "status", "--json").stdout), &st)
			if st.VMsRunning == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the daemon still counts %d running vms 12 s after the vmm was killed", st.VMsRunning)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if got := e.vm("demo").State; got != model.VMStateStopped {
			t.Errorf("after the vmm was killed: state %q, want stopped", got)
		}
		if taps := e.taps(); len(taps) != 0 {
			t.Errorf("after the vmm was killed: taps left: %v", taps)
		}
	})

	t.Run("delete leaves nothing", func(t *testing.T) {
		rec := e.vm("demo")
		e.ok("vm", "delete", "demo")
		e.assertClean("after delete")
		// Records follow state changes within moments.
		rcode := -1
		for i := 0; i < 12 && rcode != mdns.RcodeNameError; i++ {
			if i > 0 {
				time.Sleep(250 * time.Millisecond)
			}
			rcode, _ = e.queryVM("demo.vm")
		}
		if rcode != mdns.RcodeNameError {
			t.Errorf("demo.vm after delete: rcode %d, want NXDOMAIN", rcode)
		}
		if _, err := os.Stat(rec.Runtime.VMDir); !os.IsNotExist(err) {
			t.Errorf("vm dir %s still exists", rec.Runtime.VMDir)
		}
		if data, _ := os.ReadFile(filepath.Join(e.home, "state", "ssh", "known_hosts")); strings.Contains(string(data), rec.Runtime.GuestIP) {
			t.Errorf("known_hosts still pins %s", rec.Runtime.GuestIP)
		}
	})

	t.Run("prune", func(t *testing.T) {
		e.ok("vm", "run", "-d", "--name", "old")
		e.ok("vm", "stop", "old")
		e.ok("vm", "create", "--no-start", "--name", "fresh")
		e.ok("vm", "prune", "-f")
		vms := e.vms()
		if len(vms) != 1 || vms[0].Name != "fresh" {
			t.Errorf("after prune: got %d vms, want only the never-started one", len(vms))
		}
		e.ok("vm", "delete", "fresh")
		e.assertClean("after prune")
	})

	t.Run("run --rm", func(t *testing.T) {
		r := e.banger("vm", "run", "--rm", "--", "sh", "-c", "exit 3")
		if r.code != 3 {
			t.Errorf("vm run --rm -- sh -c 'exit 3': got exit %d, want 3\n%s", r.code, r)
		}
		e.assertClean("after run --rm")
	})
}
