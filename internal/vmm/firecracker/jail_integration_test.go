//go:build integration

package firecracker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"banger/internal/vmm"
)

// These tests need root: device nodes, bind mounts and chown to another
// user. Run `sudo go test -tags integration ./internal/vmm/firecracker/`.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, bind mounts): run `sudo go test -tags integration ./internal/vmm/firecracker/`")
	}
}

func sameFS(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev
}

// TestPrepareJailRoot: a disk on another filesystem is bind-mounted into
// the jail (never copied), a block device becomes a device node, both
// owned by the jail's user; removing the jail unmounts before deleting
// and leaves the disk intact.
func TestPrepareJailRoot(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	other, err := os.MkdirTemp("/dev/shm", "bfc-disk")
	if err != nil || sameFS(base, other) {
		t.Skipf("no second filesystem for a cross-filesystem disk (/dev/shm): %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var st unix.Stat_t
	if err := unix.Stat("/dev/loop0", &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Skip("no /dev/loop0 block device node to expose")
	}
	const uid, gid = 4242, 4242
	j := Jail{Base: base, ExecName: "firecracker", ID: "vm-root"}
	spec := minimalSpec()
	spec.Initrd = ""
	spec.Disks = []vmm.Disk{
		{ID: "work", Path: filepath.Join(other, "work.ext4"), Format: "raw"},
		{ID: "system", Path: "/dev/loop0", Format: "raw"},
		// A shared read-only disk readable by all keeps its owner.
		{ID: "modules", Path: filepath.Join(base, "modules.ext4"), Format: "raw", ReadOnly: true},
	}
	os.WriteFile(spec.Disks[0].Path, []byte("user data"), 0o600)
	os.WriteFile(spec.Disks[2].Path, []byte("modules"), 0o644)
	kernel := filepath.Join(base, "vmlinux")
	os.WriteFile(kernel, []byte("k"), 0o644)

	l, err := prepareJail(j, spec, kernel, uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeJail(j) })
	work := filepath.Join(j.Root(), strings.TrimPrefix(l.Drives[0], "/"))
	info, _ := os.ReadFile("/proc/self/mountinfo")
	if m := mountsUnder(string(info), j.Dir()); len(m) != 1 || m[0] != work {
		t.Fatalf("got mounts %q, want the work disk bind-mounted at %s", m, work)
	}
	os.WriteFile(work, []byte("written in jail"), 0o600)
	if data, _ := os.ReadFile(spec.Disks[0].Path); string(data) != "written in jail" {
		t.Errorf("got %q in the image, want writes through the jail to reach it", data)
	}
	var ws unix.Stat_t
	unix.Stat(spec.Disks[0].Path, &ws)
	if ws.Uid != uid || ws.Gid != gid {
		t.Errorf("got image owner %d:%d, want %d:%d", ws.Uid, ws.Gid, uid, gid)
	}
	var ms unix.Stat_t
	if err := unix.Stat(filepath.Join(j.Root(), strings.TrimPrefix(l.Drives[2], "/")), &ms); err != nil || ms.Uid != 0 || ms.Gid != 0 {
		t.Errorf("got read-only disk in the jail %+v, %v, want it there and still owned by root", ms, err)
	}
	var ds unix.Stat_t
	if err := unix.Stat(filepath.Join(j.Root(), strings.TrimPrefix(l.Drives[1], "/")), &ds); err != nil ||
		ds.Mode&unix.S_IFMT != unix.S_IFBLK || ds.Rdev != st.Rdev || ds.Uid != uid {
		t.Errorf("got device node %+v, %v, want a block device %d owned by %d", ds, err, st.Rdev, uid)
	}

	if err := removeJail(j); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(j.Dir()); !os.IsNotExist(err) {
		t.Errorf("got %v, want the jail gone", err)
	}
	if data, err := os.ReadFile(spec.Disks[0].Path); err != nil || string(data) != "written in jail" {
		t.Errorf("got %q, %v, want the disk intact after removing the jail", data, err)
	}
}

// TestJailedFirecracker checks the real jailer and Firecracker pair where
// the host has them and KVM is usable.
func TestJailedFirecracker(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/usr/bin/jailer"); err != nil {
		t.Skip("no jailer at /usr/bin/jailer (install a Firecracker release) to run a jailed machine")
	}
	if ok, why := vmm.KVMUsable(); !ok {
		t.Skip("kvm not usable: " + why)
	}
	d := New(Options{Binary: "firecracker", Jailer: JailerOptions{Enabled: true}})
	v, err := d.Version(t.Context())
	if err != nil {
		t.Fatalf("got %v, want a supported jailer and firecracker pair", err)
	}
	t.Logf("jailer and firecracker %s", v)
}
