package qemu

import (
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"banger/internal/vmm"
)

// A guest gets vsock from QEMU's vhost-vsock-device, which the host
// kernel's vhost_vsock module backs through /dev/vhost-vsock. A guest's
// context id (CID) is global to the host: every VMM and every banger
// daemon on it draws from the same space, and the kernel refuses a CID
// another guest holds (QEMU then exits at start with "vhost-vsock: unable
// to set guest cid: Address already in use"). Start therefore asks the
// kernel before the launch which candidate is free, by claiming it on a
// throwaway descriptor of the device and letting it go, and when the
// launch fails while the CID it chose has been taken meanwhile, starts
// again with the next candidate.

// vhostVsockDevice is the host device behind vhost-vsock-device.
const vhostVsockDevice = "/dev/vhost-vsock"

// vhostVsockSetGuestCID is VHOST_VSOCK_SET_GUEST_CID from
// linux/vhost.h: _IOW(VHOST_VIRTIO 0xAF, 0x60, __u64).
const vhostVsockSetGuestCID = 0x4008AF60

// Bounds of the search for a free CID.
const (
	// maxCIDProbes is how many candidates a start asks the kernel
	// about before it goes without vsock.
	maxCIDProbes = 16
	// maxCIDLaunches is how many launches a start makes when each
	// fails because its CID was taken between the probe and QEMU.
	maxCIDLaunches = 3
)

// Guest CIDs: 0 to 2 are the hypervisor, local and host addresses, and
// the kernel refuses 2^32-1 (VMADDR_CID_ANY).
const (
	minGuestCID = 3
	maxGuestCID = math.MaxUint32 - 1
)

// errNoFreeCID says every candidate CID was taken.
var errNoFreeCID = errors.New("no free guest cid")

// cidProbe tells whether the host kernel would give a guest the CID
// cid: nil when it is free, an error wrapping unix.EADDRINUSE when
// another guest holds it, any other error when the host cannot give
// guests vsock at all.
type cidProbe func(cid uint32) error

// probeVhostCID claims the CID on a new descriptor of device and closes
// it again, which gives the CID back at once.
func probeVhostCID(device string) cidProbe {
	return func(cid uint32) error {
		fd, err := unix.Open(device, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", device, err)
		}
		defer unix.Close(fd)
		v := uint64(cid)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&v)))
		if errno != 0 {
			return fmt.Errorf("claim guest cid %d on %s: %w", cid, device, errno)
		}
		return nil
	}
}

// VhostVsock reports whether QEMU can give guests on this host a vsock
// device: /dev/vhost-vsock must open read-write. The string says why
// not, or that it can.
func VhostVsock() (bool, string) { return vhostVsockUsable(vhostVsockDevice) }

func vhostVsockUsable(device string) (bool, string) {
	fd, err := unix.Open(device, unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case noVhostDevice(err):
		return false, "no " + device + ": vhost_vsock module not loaded (modprobe vhost_vsock)"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return false, device + " is not accessible read-write (permission denied)"
	case err != nil:
		return false, fmt.Sprintf("%s does not open read-write: %v", device, err)
	}
	unix.Close(fd)
	return true, device + " opens read-write"
}

// noVhostDevice reports whether err says the host has no vhost-vsock
// device: no node, or a node without the module behind it.
func noVhostDevice(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO)
}

// cidCandidates yields the CIDs a machine tries, in order: first (the
// spec's, when it is a guest CID), then a sequence drawn from a hash of
// key (the VM id), so machines that collide once rarely collide again.
// The sequence is the same on every start of the same machine.
func cidCandidates(first uint32, key string) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		if first >= minGuestCID && first <= maxGuestCID {
			if !yield(first) {
				return
			}
		}
		h := fnv.New64a()
		h.Write([]byte(key))
		x := h.Sum64()
		for {
			x = splitmix64(x)
			cid := minGuestCID + uint32(x%(maxGuestCID-minGuestCID+1))
			if cid == first {
				continue
			}
			if !yield(cid) {
				return
			}
		}
	}
}

// splitmix64 is one step of the SplitMix64 generator.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	z := x
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// chooseCID returns the first of at most maxCIDProbes candidates that
// probe finds free, skipping those in skip. It returns errNoFreeCID when
// all are taken, and the probe's error when the host cannot give guests
// vsock.
func chooseCID(probe cidProbe, candidates iter.Seq[uint32], skip map[uint32]bool) (uint32, error) {
	n := 0
	for cid := range candidates {
		if n == maxCIDProbes {
			break
		}
		n++
		if skip[cid] {
			continue
		}
		err := probe(cid)
		if err == nil {
			return cid, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%w among %d candidates", errNoFreeCID, n)
}

// cidTaken reports whether probe finds cid held by another guest now.
func cidTaken(probe cidProbe, cid uint32) bool {
	return errors.Is(probe(cid), unix.EADDRINUSE)
}

// vsockDeviceArg is the -device value of a guest with vsock CID cid.
func vsockDeviceArg(cid uint32) string {
	return "vhost-vsock-device,id=vsock0,guest-cid=" + strconv.FormatUint(uint64(cid), 10)
}

// GuestCID returns the vsock CID of the guest of the running machine h:
// the guest-cid of the vhost-vsock-device its QEMU was started with. It
// reads the process's command line, so it holds after a daemon restart,
// and checks that the process is still the one h names: while it runs,
// the kernel keeps the CID for it and no other guest can answer on it.
// ok is false for a machine without vsock, or one that is gone.
func GuestCID(h vmm.Handle) (cid uint32, ok bool) {
	if !vmm.Alive(h) {
		return 0, false
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(h.PID), "cmdline"))
	if err != nil {
		return 0, false
	}
	cid, ok = guestCIDFromArgs(strings.Split(string(data), "\x00"))
	// The pid may have been reused between the check and the read.
	if !ok || !vmm.Alive(h) {
		return 0, false
	}
	return cid, true
}

// guestCIDFromArgs finds the guest-cid of the vhost-vsock-device in a
// QEMU command line.
func guestCIDFromArgs(args []string) (uint32, bool) {
	for i := 0; i+1 < len(args); i++ {
		dev, opts, _ := strings.Cut(args[i+1], ",")
		if args[i] != "-device" || dev != "vhost-vsock-device" {
			continue
		}
		for opt := range strings.SplitSeq(opts, ",") {
			v, ok := strings.CutPrefix(opt, "guest-cid=")
			if !ok {
				continue
			}
			cid, err := strconv.ParseUint(v, 10, 32)
			if err != nil || cid < minGuestCID || cid > maxGuestCID {
				return 0, false
			}
			return uint32(cid), true
		}
	}
	return 0, false
}
