//go:build integration

package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"banger/internal/agent"
	"banger/internal/vmm"
)

// requireVhostVsock skips unless the host can give guests vsock.
func requireVhostVsock(t *testing.T) {
	t.Helper()
	if ok, why := VhostVsock(); !ok {
		t.Skip(why)
	}
}

// qemuCmdline is the command line of the running QEMU of h.
func qemuCmdline(t *testing.T, h vmm.Handle) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(h.PID), "cmdline"))
	if err != nil {
		t.Fatalf("read qemu command line: %v", err)
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// TestVhostVsockProbe boots nothing: it checks what the driver's probe
// says about this host against the device node, and on a host with
// vhost-vsock that a CID one descriptor holds is refused to another.
func TestVhostVsockProbe(t *testing.T) {
	_, statErr := os.Stat(vhostVsockDevice)
	ok, why := VhostVsock()
	t.Logf("vhost-vsock: %v (%s)", ok, why)
	probeErr := probeVhostCID(vhostVsockDevice)(testCID)
	if errors.Is(statErr, os.ErrNotExist) {
		if ok || why != "no /dev/vhost-vsock: vhost_vsock module not loaded (modprobe vhost_vsock)" {
			t.Errorf("got (%v, %q) without the device, want false and the missing module", ok, why)
		}
		if !errors.Is(probeErr, unix.ENOENT) {
			t.Errorf("got probe error %v without the device, want ENOENT", probeErr)
		}
		return
	}
	requireVhostVsock(t)
	if probeErr != nil && !errors.Is(probeErr, unix.EADDRINUSE) {
		t.Fatalf("got probe error %v, want nil or EADDRINUSE", probeErr)
	}
	// Hold a free CID on a descriptor of our own, as QEMU does.
	cid, err := chooseCID(probeVhostCID(vhostVsockDevice), cidCandidates(testCID, t.Name()), nil)
	if err != nil {
		t.Fatalf("choose cid: %v", err)
	}
	fd, err := unix.Open(vhostVsockDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := uint64(cid)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&v))); errno != 0 {
		unix.Close(fd)
		t.Fatalf("claim cid %d: %v", cid, errno)
	}
	if err := probeVhostCID(vhostVsockDevice)(cid); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("got probe %v for a held cid, want EADDRINUSE", err)
	}
	next, err := chooseCID(probeVhostCID(vhostVsockDevice), cidCandidates(cid, t.Name()), nil)
	if err != nil || next == cid {
		t.Errorf("got choice %d, %v with cid %d held, want another cid", next, err, cid)
	}
	unix.Close(fd)
	if err := probeVhostCID(vhostVsockDevice)(cid); err != nil {
		t.Errorf("got probe %v after the holder closed, want the cid free", err)
	}
}

// TestStartWithoutVhostVsock: on a host without /dev/vhost-vsock (this
// one), a real start gives the guest the virtio-serial agent port and no
// vsock device, and GuestCID says so.
func TestStartWithoutVhostVsock(t *testing.T) {
	if ok, _ := VhostVsock(); ok {
		t.Skip("/dev/vhost-vsock opens here; this test is for hosts without it (TestVhostVsockAgent covers this one)")
	}
	im := requireImage(t)
	requireNetns(t)
	d := New(Options{Accel: "tcg"})
	spec := guestSpec(t, im, false)
	spec.VSockCID = testCID // the VM service always offers one
	h := startGuest(t, d, spec)

	args := qemuCmdline(t, h)
	for _, a := range args {
		if strings.HasPrefix(a, "vhost-vsock") {
			t.Errorf("got %q in qemu's command line, want no vsock device without /dev/vhost-vsock", a)
		}
	}
	if !slices.Contains(args, "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent") {
		t.Errorf("got qemu command line %q, want the virtio-serial agent port", args)
	}
	if cid, ok := GuestCID(h); ok {
		t.Errorf("got guest cid %d, want none", cid)
	}
	if err := d.Quit(t.Context(), h); err != nil {
		t.Fatalf("quit: %v", err)
	}
}

// TestVhostVsockAgent boots a guest with vsock and asks its agent for
// its health over vsock, and starts a second machine offered the same
// CID, which must get another one.
func TestVhostVsockAgent(t *testing.T) {
	requireVhostVsock(t)
	im := requireImage(t)
	requireNetns(t)
	d := New(Options{Accel: "tcg"})

	spec := guestSpec(t, im, false)
	spec.VSockCID = testCID
	h := startGuest(t, d, spec)
	cid, ok := GuestCID(h)
	if !ok {
		t.Fatalf("got no guest cid for %q, want a vhost-vsock device", qemuCmdline(t, h))
	}
	t.Logf("guest cid %d", cid)
	if !slices.Contains(qemuCmdline(t, h), "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent") {
		t.Errorf("got no virtio-serial agent port beside vsock, want both")
	}

	other := guestSpec(t, im, false)
	other.ID, other.Name = "fedcba9876543210", "qtest2"
	other.VSockCID = cid
	h2 := startGuest(t, d, other)
	cid2, ok := GuestCID(h2)
	if !ok || cid2 == cid {
		t.Errorf("got cid %d, %v for a second machine offered the taken cid %d, want another", cid2, ok, cid)
	}
	if err := d.Quit(t.Context(), h2); err != nil {
		t.Errorf("quit second machine: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var lastErr error
	for ctx.Err() == nil {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := agent.DialVsock(dctx, cid, 1024)
		if err == nil {
			health, herr := c.Health(dctx)
			c.Close()
			dcancel()
			if herr == nil {
				t.Logf("agent answered over vsock after %v: %+v", time.Since(start).Round(time.Second), health)
				return
			}
			err = herr
		} else {
			dcancel()
		}
		lastErr = err
		time.Sleep(time.Second)
	}
	t.Fatalf("the agent never answered over vsock cid %d: %v", cid, lastErr)
}
