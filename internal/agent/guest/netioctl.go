package guest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The network is set with the classic ioctls on an AF_INET socket, as
// busybox ifconfig and route do: no netlink, so the agent binary pulls in
// no netlink package.

// setUp sets the IFF_UP flag of the interface name.
func setUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// setInet4 issues the interface ioctl req (SIOCSIFADDR, SIOCSIFNETMASK)
// for label, an interface name or an alias ("eth0:1"), carrying a.
func setInet4(fd int, req uint, label string, a netip.Addr) error {
	ifr, err := unix.NewIfreq(label)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(a.AsSlice()); err != nil {
		return err
	}
	return unix.IoctlIfreq(fd, req, ifr)
}

// flushRounds bounds flushIPv4: one round normally removes everything.
const flushRounds = 4

// flushIPv4 removes every IPv4 address of nic, secondaries and aliases
// ("nic:1") included. Setting 0.0.0.0 on a label deletes that label's
// first address (as `ifconfig eth0 0.0.0.0`); SIOCGIFCONF lists what is
// left, one entry per address, by label. Deleting a primary takes its
// secondaries with it, or promotes one with promote_secondaries set:
// hence the rounds.
func flushIPv4(fd int, nic string) error {
	for range flushRounds {
		labels, err := ipv4Labels(fd, nic)
		if err != nil {
			return fmt.Errorf("list addresses of %q: %w", nic, err)
		}
		if len(labels) == 0 {
			return nil
		}
		for _, label := range labels {
			if err := setInet4(fd, unix.SIOCSIFADDR, label, netip.IPv4Unspecified()); err != nil {
				return fmt.Errorf("flush addresses of %q: delete one of %q: %w", nic, label, err)
			}
		}
	}
	return fmt.Errorf("flush addresses of %q: some left after %d rounds", nic, flushRounds)
}

// ifconf is the kernel's struct ifconf (include/uapi/linux/if.h) for
// SIOCGIFCONF; Go pads it as C does.
type ifconf struct {
	len int32
	buf *byte
}

// ifreqSize is sizeof(struct ifreq): 40 bytes on 64-bit Linux.
const ifreqSize = int(unsafe.Sizeof(unix.Ifreq{}))

// ipv4Labels returns, for each IPv4 address on nic or its aliases, the
// address's label.
func ipv4Labels(fd int, nic string) ([]string, error) {
	for n := 32; ; n *= 4 {
		buf := make([]byte, n*ifreqSize)
		ifc := ifconf{len: int32(len(buf)), buf: &buf[0]}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFCONF, uintptr(unsafe.Pointer(&ifc))); errno != 0 {
			return nil, errno
		}
		// A full buffer may have been cut short: ask again with more room.
		if int(ifc.len) < len(buf) || n >= 1<<16 {
			return ifconfLabels(buf[:ifc.len], nic), nil
		}
	}
}

// ifconfLabels picks out of a SIOCGIFCONF answer (struct ifreq entries,
// each naming an address's label) the labels of nic's addresses: nic
// itself or "nic:alias".
func ifconfLabels(buf []byte, nic string) []string {
	var labels []string
	for len(buf) >= ifreqSize {
		label := unix.ByteSliceToString(buf[:unix.IFNAMSIZ])
		if dev, _, _ := strings.Cut(label, ":"); dev == nic {
			labels = append(labels, label)
		}
		buf = buf[ifreqSize:]
	}
	return labels
}

// rtentry is the kernel's struct rtentry (include/uapi/linux/route.h) for
// SIOCADDRT and SIOCDELRT. C's unsigned long is uintptr on Go's Linux
// ports and Go aligns fields as C does: on linux/amd64 and linux/arm64
// (LP64) it is 120 bytes, rt_dev at offset 88 (checked by a test).
type rtentry struct {
	_       uintptr // rt_pad1
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	_       int16          // rt_pad2
	_       uintptr        // rt_pad3
	_       unsafe.Pointer // rt_pad4
	metric  int16          // priority + 1; 0: priority 0 (and "any" on delete)
	dev     *byte          // the kernel reads IFNAMSIZ-1 bytes from it
	mtu     uintptr
	window  uintptr
	irtt    uint16
}

// maxDefaultRoutes bounds the deletion of old default routes.
const maxDefaultRoutes = 64

// replaceDefaultRoute removes the default routes of the main table (all
// of them, whatever their device or metric: SIOCDELRT takes the first
// one left each time), then adds the default route via gw on nic. An
// already present identical route (EEXIST) is success.
func replaceDefaultRoute(fd int, nic string, gw netip.Addr) error {
	var dev [unix.IFNAMSIZ]byte
	if len(nic) >= len(dev) {
		return fmt.Errorf("interface name %q too long", nic)
	}
	copy(dev[:], nic)
	inet4 := func(a netip.Addr) unix.RawSockaddrInet4 {
		return unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	}
	zero := netip.IPv4Unspecified() // 0.0.0.0/0: the default route
	for range maxDefaultRoutes {
		del := rtentry{dst: inet4(zero), genmask: inet4(zero), flags: unix.RTF_UP}
		err := routeIoctl(fd, unix.SIOCDELRT, &del)
		if errors.Is(err, unix.ESRCH) {
			break
		}
		if err != nil {
			return fmt.Errorf("delete old default route: %w", err)
		}
	}
	add := rtentry{
		dst:     inet4(zero),
		gateway: inet4(gw),
		genmask: inet4(zero),
		flags:   unix.RTF_UP | unix.RTF_GATEWAY,
		dev:     &dev[0],
	}
	if err := routeIoctl(fd, unix.SIOCADDRT, &add); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// routeIoctl issues SIOCADDRT or SIOCDELRT with rt.
func routeIoctl(fd int, req uint, rt *rtentry) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(rt))); errno != 0 {
		return errno
	}
	return nil
}
