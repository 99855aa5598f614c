//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/model"
)

// TestRunRmKeepsFailedBoot checks that vm run --rm does not delete a VM
// whose guest never came up: it is kept, in state error, for
// inspection, and the CLI says so and how to remove it.
func TestRunRmKeepsFailedBoot(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	cache := imageCacheDir(t)
	// An empty root filesystem: it mounts, but holds no init, so the
	// boot ends in a panic (and with panic=-1 QEMU exits); the guest
	// never answers SSH.
	rootfs := filepath.Join(t.TempDir(), "rootfs.ext4")
	if err := os.WriteFile(rootfs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(rootfs, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "banger-root", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	e.ok("image", "register", "--name", "broken", "--rootfs", rootfs,
		"--work-seed", filepath.Join(cache, "work-seed.ext4"), "--kernel", filepath.Join(cache, "vmlinuz"),
		"--initrd", filepath.Join(cache, "initrd.img"))

	// Not a kernel at all is refused when registered.
	e.fails("is neither a bzImage nor an ELF kernel", "image", "register", "--name", "notkernel", "--rootfs", rootfs, "--kernel", rootfs)

	// Progress lines come first; the error is the last line.
	r := e.banger("vm", "run", "--rm", "--name", "dud", "--image", "broken", "--", "true")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if r.code == 0 || !strings.HasPrefix(last, `banger: start vm "dud": `) || !strings.Contains(last, "kept in state error for inspection") || !strings.Contains(last, "banger vm delete dud") {
		t.Fatalf("vm run --rm of a guest that never boots: got exit %d and last line %q, want a failure saying the vm is kept and how to delete it", r.code, last)
	}
	vms := e.vms()
	if len(vms) != 1 || vms[0].Name != "dud" || vms[0].State != model.VMStateError || vms[0].Runtime.LastError == "" {
		t.Fatalf("after vm run --rm of a failed boot: got %+v, want dud kept in state error with its last error", vms)
	}
	if pids := e.qemuPIDs(); len(pids) != 0 {
		t.Errorf("qemu processes left by the failed boot: %v", pids)
	}
	// The kernel's panic ended the VMM, and the start saw it at once
	// instead of waiting out its SSH timeout (reboot= on the command
	// line makes the reset reach QEMU).
	if !strings.Contains(last, "the vmm exited during boot") {
		t.Errorf("vm run of a guest that panics: last line %q, want it to say the vmm exited during boot", last)
	}
	// What is kept can be inspected, then removed.
	if console := e.ok("vm", "logs", "dud").stdout; !strings.Contains(console, "reboot=") || !strings.Contains(console, "No init found") {
		t.Errorf("console of the failed boot lacks the reboot= argument or the panic:\n%s", console)
	}
	e.ok("vm", "delete", "dud")
	e.ok("image", "delete", "broken")
	e.assertClean("after deleting the failed vm")
}
