//go:build integration

// These tests attach real loop devices (root and /dev/loop-control) and,
// where the kernel has device-mapper, make real snapshots. Run with
//
//	sudo go test -tags integration -run Rootfs ./internal/storage/
package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"banger/internal/hostexec"
)

// requireLoops skips unless loop devices can be attached, and fails the
// test if it leaves one attached.
func requireLoops(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root: run go test -tags integration as root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control: load the loop module (modprobe loop)")
	}
	requireTools(t, "losetup")
	before := loopList(t)
	t.Cleanup(func() {
		if after := loopList(t); after != before {
			t.Errorf("loop devices changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// loopList is `losetup -a`, one attached loop device a line.
func loopList(t *testing.T) string {
	t.Helper()
	out, err := hostexec.Run(context.Background(), "losetup", "-a")
	if err != nil {
		t.Fatalf("losetup -a: %v", err)
	}
	return string(out)
}

// requireDM skips unless this host can make dm-snapshots.
func requireDM(t *testing.T) {
	t.Helper()
	if ok, why := DeviceMapperAvailable(t.Context()); !ok {
		t.Skipf("device-mapper not available on this host (%s)", why)
	}
}

// sysLoop reads an attribute of a loop device under /sys/block/loopN,
// such as "ro" or "loop/backing_file".
func sysLoop(t *testing.T, dev, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), file))
	if err != nil {
		t.Fatalf("read %s of %s: %v", file, dev, err)
	}
	return strings.TrimSpace(string(data))
}

// TestRootfsDMRollbackWithRealLoops runs the dm-snapshot setup with real
// loop devices and a dmsetup create that fails, as on a host whose
// device-mapper rejects the table: both loops must be detached again and
// the COW file removed.
func TestRootfsDMRollbackWithRealLoops(t *testing.T) {
	requireLoops(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "rootfs.ext4")
	holeyImage(t, base, 8<<20)
	cow := filepath.Join(dir, "system.cow")

	var sawCreate bool
	o := hostDevOps
	o.run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
		if name != "dmsetup" {
			return hostexec.Run(ctx, name, args...)
		}
		if args[0] == "create" {
			sawCreate = true
			// The table names the two loops, attached as asked.
			f := strings.Fields(args[3])
			baseLoop, cowLoop := f[3], f[4]
			if got := sysLoop(t, baseLoop, "loop/backing_file"); got != base {
				t.Errorf("base loop backs %q, want %q", got, base)
			}
			if got := sysLoop(t, baseLoop, "ro"); got != "1" {
				t.Errorf("base loop ro = %s, want 1", got)
			}
			if got := sysLoop(t, cowLoop, "loop/backing_file"); got != cow {
				t.Errorf("cow loop backs %q, want %q", got, cow)
			}
			return nil, &hostexec.Error{Name: "dmsetup", ExitCode: 1, Stderr: "device-mapper: reload ioctl failed: Invalid argument", Err: errors.New("exit status 1")}
		}
		return nil, &hostexec.Error{Name: "dmsetup", ExitCode: 1, Stderr: "remove ioctl failed: No such device or address", Err: errors.New("exit status 1")}
	}
	_, err := createRootfs(t.Context(), o, RootfsRequest{Backend: RootfsDMSnapshot, Base: base, Path: cow, DMName: "banger-test-rollback", Size: 16 << 20})
	if err == nil {
		t.Fatal("createRootfs: got nil error, want the dmsetup failure")
	}
	if !sawCreate {
		t.Fatal("dmsetup create never ran")
	}
	if strings.Contains(err.Error(), "rollback: ") {
		t.Errorf("rollback failed: %v", err)
	}
	if _, err := os.Stat(cow); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cow file after rollback: got %v, want removed", err)
	}
}

// TestDetachLoopChecksBackingFile attaches a real loop device and checks
// that teardown leaves it alone when it backs another file.
func TestDetachLoopChecksBackingFile(t *testing.T) {
	requireLoops(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	holeyImage(t, img, 1<<20)
	dev, err := hostDevOps.attachLoop(t.Context(), img, true)
	if err != nil {
		t.Fatalf("attachLoop: %v", err)
	}
	t.Cleanup(func() { hostexec.Run(context.Background(), "losetup", "--detach", dev) })
	if got := sysLoop(t, dev, "ro"); got != "1" {
		t.Errorf("read-only loop: ro = %s, want 1", got)
	}
	if err := hostDevOps.detachLoop(t.Context(), dev, filepath.Join(dir, "other.img")); err == nil {
		t.Error("detachLoop with the wrong backing file: got nil, want an error")
	}
	if got := sysLoop(t, dev, "loop/backing_file"); got != img {
		t.Fatalf("after refused detach: loop backs %q, want %q still", got, img)
	}
	if err := hostDevOps.detachLoop(t.Context(), dev, img); err != nil {
		t.Fatalf("detachLoop: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/block", filepath.Base(dev), "loop")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("loop still attached after detach: %v", err)
	}
	if err := hostDevOps.detachLoop(t.Context(), dev, img); err != nil {
		t.Errorf("second detachLoop: got %v, want nil (idempotent)", err)
	}
}

// TestRootfsDMSnapshot makes a real snapshot, writes through it, and
// checks the image stays untouched and the changes survive deactivation.
func TestRootfsDMSnapshot(t *testing.T) {
	requireLoops(t)
	requireDM(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "rootfs.ext4")
	holeyImage(t, base, 16<<20)
	orig, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	cow := filepath.Join(dir, "system.cow")
	r, err := CreateRootfs(t.Context(), RootfsRequest{Backend: RootfsDMSnapshot, Base: base, Path: cow, DMName: "banger-test-" + filepath.Base(dir), Size: 16 << 20})
	if err != nil {
		t.Fatalf("CreateRootfs: %v", err)
	}
	t.Cleanup(func() {
		if err := RemoveRootfs(context.Background(), r); err != nil {
			t.Errorf("RemoveRootfs: %v", err)
		}
	})
	write := bytes.Repeat([]byte{9}, 4096)
	dev, err := os.OpenFile(r.Device, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open %s: %v", r.Device, err)
	}
	if _, err := dev.WriteAt(write, 4096); err != nil {
		t.Fatalf("write to snapshot: %v", err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	if got, _ := os.ReadFile(base); !bytes.Equal(got, orig) {
		t.Error("image rootfs changed under a snapshot")
	}
	if err := DeactivateRootfs(t.Context(), r); err != nil {
		t.Fatalf("DeactivateRootfs: %v", err)
	}
	r, err = ActivateRootfs(t.Context(), r)
	if err != nil {
		t.Fatalf("ActivateRootfs: %v", err)
	}
	got, err := os.ReadFile(r.Device)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[4096:8192], write) || !bytes.Equal(got[8192:], orig[8192:]) {
		t.Error("snapshot content after reactivation: want the write kept and the rest as the image")
	}
}

// TestRootfsReflinkOnXFS runs the reflink backend for real on a loop
// XFS with reflink support: the backend is chosen there, the copy has
// the image's bytes, and it shares the image's blocks instead of
// writing them again.
func TestRootfsReflinkOnXFS(t *testing.T) {
	requireLoops(t)
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		t.Skip("mkfs.xfs not found: install xfsprogs (make deps) to test reflink copies")
	}
	img := filepath.Join(t.TempDir(), "xfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount the xfs image: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})

	backend, reason := ChooseRootfsBackend(t.Context(), mnt)
	if backend != RootfsReflink {
		t.Fatalf("backend on xfs with reflink=1: got %s (%s), want reflink", backend, reason)
	}
	base := filepath.Join(mnt, "rootfs.ext4")
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(base, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var before unix.Statfs_t
	if err := unix.Statfs(mnt, &before); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(mnt, "system.ext4")
	r, err := CreateRootfs(t.Context(), RootfsRequest{Backend: RootfsReflink, Base: base, Path: dst, Size: int64(len(data))})
	if err != nil {
		t.Fatalf("CreateRootfs: %v", err)
	}
	var after unix.Statfs_t
	if err := unix.Statfs(mnt, &after); err != nil {
		t.Fatal(err)
	}
	if used := int64(before.Bfree-after.Bfree) * int64(after.Bsize); used > 4<<20 {
		t.Errorf("reflink copy of 64 MiB used %d bytes of the filesystem, want the blocks shared", used)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("reflink copy content: %d bytes, %v; want the image's %d bytes", len(got), err, len(data))
	}
	if err := RemoveRootfs(t.Context(), r); err != nil {
		t.Errorf("RemoveRootfs: %v", err)
	}
}
