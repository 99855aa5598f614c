package firecracker

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/vmm"
)

func TestJailerArgs(t *testing.T) {
	j := Jail{Base: "/srv/jailer", ExecName: "firecracker", ID: "abc-123"}
	got := JailerArgs(j, "/usr/bin/firecracker", 1000, 1001)
	want := []string{"--id", "abc-123", "--exec-file", "/usr/bin/firecracker", "--uid", "1000", "--gid", "1001",
		"--chroot-base-dir", "/srv/jailer", "--", "--api-sock", "/firecracker.sock"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := j.Root(), "/srv/jailer/firecracker/abc-123/root"; got != want {
		t.Errorf("got root %s, want %s", got, want)
	}
	if got, want := j.PIDFile(), "/srv/jailer/firecracker/abc-123/root/firecracker.pid"; got != want {
		t.Errorf("got pid file %s, want %s", got, want)
	}
	if got := FirecrackerArgs("/vm/firecracker.sock", "vm1"); !reflect.DeepEqual(got, []string{"--api-sock", "/vm/firecracker.sock", "--id", "vm1"}) {
		t.Errorf("got %q", got)
	}
}

func TestJailValidate(t *testing.T) {
	tests := []struct {
		name    string
		j       Jail
		wantErr string
	}{
		{name: "ok", j: Jail{Base: "/srv/jailer", ExecName: "firecracker-v1.7", ID: strings.Repeat("a", 64)}},
		{name: "id too long", j: Jail{Base: "/srv/jailer", ExecName: "firecracker", ID: strings.Repeat("a", 65)}, wantErr: "jailer id"},
		{name: "id with slash", j: Jail{Base: "/srv/jailer", ExecName: "firecracker", ID: "../x"}, wantErr: "jailer id"},
		{name: "relative base", j: Jail{Base: "jail", ExecName: "firecracker", ID: "a"}, wantErr: "not an absolute path"},
		{name: "exec name", j: Jail{Base: "/srv/jailer", ExecName: "fc", ID: "a"}, wantErr: `contains "firecracker"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.j.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("got %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errdefs.IsInvalid(err) {
				t.Errorf("got %v, want an invalid-argument error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMountsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 8:1 /var/lib/banger/vms/a/work.ext4 /srv/jailer/firecracker/a/root/drive-work rw - ext4 /dev/sda1 rw
91 22 8:1 /x /srv/jailer/firecracker/a/root/sub/deeper rw - ext4 /dev/sda1 rw
92 22 8:1 /y /srv/jailer/firecracker/ab/root/drive-work rw - ext4 /dev/sda1 rw
93 22 8:1 /z /srv/jailer/firecracker/a/root/with\040space rw - ext4 /dev/sda1 rw
`
	got := mountsUnder(info, "/srv/jailer/firecracker/a")
	want := []string{
		"/srv/jailer/firecracker/a/root/sub/deeper",
		"/srv/jailer/firecracker/a/root/drive-work",
		"/srv/jailer/firecracker/a/root/with space",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q (deepest first, not the sibling jail ab)", got, want)
	}
}

// TestPrepareJail builds a jail as the current user with disk images on
// the jail's filesystem (hard links) and a kernel on another filesystem
// where the host has one (a copy). Device nodes and bind mounts need
// root: see the integration tests.
func TestPrepareJail(t *testing.T) {
	base := t.TempDir()
	src := t.TempDir()
	j := Jail{Base: base, ExecName: "firecracker", ID: "vm-1"}
	spec := fullSpec()
	spec.Initrd = filepath.Join(src, "initrd.img")
	spec.AgentSocket = "/vms/demo/agent.sock"
	kernel := filepath.Join(src, "vmlinux")
	// A kernel on another filesystem, if /dev/shm is one.
	if shm, err := os.MkdirTemp("/dev/shm", "bfc-kernel"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		kernel = filepath.Join(shm, "vmlinux")
	}
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	os.WriteFile(spec.Initrd, []byte("initrd"), 0o600) // not readable by others: copied
	for i := range spec.Disks {
		spec.Disks[i].Path = filepath.Join(base, spec.Disks[i].ID+".img")
		os.WriteFile(spec.Disks[i].Path, []byte(spec.Disks[i].ID), 0o600)
	}

	l, err := prepareJail(j, spec, kernel, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{Kernel: "/vmlinux", Initrd: "/initrd", Vsock: "/vsock.sock", Log: "/firecracker.log", Metrics: "/firecracker-metrics.json",
		Drives: []string{"/drive-system", "/drive-work", "/drive-seed"}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("got layout %+v, want %+v", l, want)
	}
	for i, d := range spec.Disks {
		inJail := filepath.Join(j.Root(), l.Drives[i])
		a, _ := os.Stat(d.Path)
		b, err := os.Stat(inJail)
		if err != nil || !os.SameFile(a, b) {
			t.Errorf("disk %s: got %v, want %s hard-linked to the image", d.ID, err, inJail)
		}
	}
	for _, f := range []string{"vmlinux", "initrd", logName, metricsName} {
		if _, err := os.Stat(filepath.Join(j.Root(), f)); err != nil {
			t.Errorf("got %v, want %s in the jail", err, f)
		}
	}
	fi, _ := os.Stat(filepath.Join(j.Root(), "initrd"))
	if fi.Mode().Perm()&0o004 == 0 {
		t.Errorf("got initrd mode %v in the jail, want a readable copy", fi.Mode())
	}

	if err := removeJail(j); err != nil {
		t.Fatalf("remove jail: %v", err)
	}
	if _, err := os.Stat(j.Dir()); !os.IsNotExist(err) {
		t.Errorf("got %v, want the jail gone", err)
	}
	for _, d := range spec.Disks {
		if data, err := os.ReadFile(d.Path); err != nil || string(data) != d.ID {
			t.Errorf("disk %s: got %q, %v after removing the jail, want it intact", d.ID, data, err)
		}
	}
	if err := removeJail(j); err != nil {
		t.Errorf("removing a missing jail: got %v, want nil", err)
	}
}

func TestReapJails(t *testing.T) {
	base := t.TempDir()
	d := New(Options{Binary: "/usr/bin/firecracker", Jailer: JailerOptions{Enabled: true, ChrootBase: base}})
	jail := func(execName, id string, marked bool) string {
		dir := filepath.Join(base, execName, id)
		os.MkdirAll(filepath.Join(dir, "root"), 0o755)
		if marked {
			os.WriteFile(filepath.Join(dir, jailMarker), nil, 0o644)
		}
		return dir
	}
	keep := jail("firecracker", "keep-me", true)
	jail("firecracker", "orphan", true)
	// A jail of an older binary's name (firecracker was a link to it).
	jail("firecracker-v1.6.0-x86_64", "old-orphan", true)
	// Another user of the jailer shares the default chroot base.
	foreign := jail("firecracker", "not-banger", false)
	other := jail("other-vmm", "x", true)

	removed, err := d.ReapJails(func(id string) bool { return id == "keep-me" })
	slices.Sort(removed)
	if err != nil || !reflect.DeepEqual(removed, []string{"old-orphan", "orphan"}) {
		t.Errorf("got %v, %v, want [old-orphan orphan]", removed, err)
	}
	for _, dir := range []string{keep, foreign, other} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("got %v, want %s left in place", err, dir)
		}
	}

	jail("firecracker-v1.6.0-x86_64", "keep-me", true)
	if err := d.RemoveJail("keep-me"); err != nil {
		t.Errorf("remove jail: %v", err)
	}
	for _, name := range []string{"firecracker", "firecracker-v1.6.0-x86_64"} {
		if _, err := os.Stat(filepath.Join(base, name, "keep-me")); !os.IsNotExist(err) {
			t.Errorf("got %v, want the jail under %s removed", err, name)
		}
	}
	if err := d.RemoveJail("../x"); !errdefs.IsInvalid(err) {
		t.Errorf("remove jail ../x: got %v, want an invalid-argument error", err)
	}
}

// TestJailExecName: the jailer names the jail's directory after the
// binary --exec-file resolves to, not after a link to it.
func TestJailExecName(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "firecracker-v1.7.0-x86_64")
	os.WriteFile(release, []byte("#!/bin/sh\n"), 0o755)
	link := filepath.Join(dir, "firecracker")
	if err := os.Symlink(filepath.Base(release), link); err != nil {
		t.Fatal(err)
	}
	d := New(Options{Binary: link, Jailer: JailerOptions{Enabled: true, ChrootBase: "/srv/jailer"}})
	j, err := d.jailFor("vm-1")
	if err != nil || j.Dir() != "/srv/jailer/firecracker-v1.7.0-x86_64/vm-1" {
		t.Errorf("got %s, %v, want /srv/jailer/firecracker-v1.7.0-x86_64/vm-1", j.Dir(), err)
	}
}

// TestWaitPIDFileJailerGone: a jailer that exits without writing the
// pid file fails the wait at once, not after the timeout.
func TestWaitPIDFileJailerGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := vmm.Handle{PID: cmd.Process.Pid}
	if st, err := vmm.ReadProcStat(h.PID); err == nil {
		h.StartTime = st.StartTime
	}
	cmd.Wait()
	begin := time.Now()
	_, _, err := waitPIDFile(t.Context(), filepath.Join(t.TempDir(), "firecracker.pid"), h, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before firecracker was up") {
		t.Errorf("got %v, want the jailer's exit reported", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("got the error after %v, want it at once", took)
	}
}

func TestJailerValidation(t *testing.T) {
	d := New(Options{Binary: "/opt/fc/fc-bin", Jailer: JailerOptions{Enabled: true, ChrootBase: t.TempDir()}})
	d.checkTap = func(string) error { return nil }
	spec := minimalSpec()
	spec.ID = "not/valid"
	err := d.validate(spec)
	for _, want := range []string{"jailer id", `contains "firecracker"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
}
