package guest

// The guest network, configured from the kernel command line by
// `banger-agent net` (banger-net.service, and the first-boot init of
// images without systemd). It uses the classic socket ioctls (as busybox
// ifconfig and route do, see netioctl.go), so it works on images without
// iproute2 (minimal container-derived root filesystems) and keeps netlink
// out of the agent.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

// NetConfig is what banger puts on the kernel command line for the guest network.
type NetConfig struct {
	Addr     netip.Prefix     // banger.ip=172.16.0.5/24 (zero: no address to set)
	Gateway  netip.Addr       // banger.gw=
	DNS      []netip.Addr     // banger.dns=a,b
	Hostname string           // banger.hostname=
	MAC      net.HardwareAddr // banger.mac= (case-insensitive)
}

// The NIC search: poll every nicPoll; take the link with the configured
// MAC as soon as it appears, any link but lo once nicMACWait has passed
// (or at once without a MAC); give up after nicWait. Variables so tests
// can shorten them.
var (
	nicPoll    = 100 * time.Millisecond
	nicMACWait = 2 * time.Second
	nicWait    = 10 * time.Second
)

// maxHostname is the kernel's limit (HOST_NAME_MAX).
const maxHostname = 64

// ParseCmdline reads the banger.* network parameters from a kernel command
// line. Other arguments are ignored; a parameter given twice takes its last
// value and an empty value counts as absent, as the kernel command line is read elsewhere. Every bad
// value is reported, each error naming its parameter.
func ParseCmdline(cmdline string) (NetConfig, error) {
	vals := map[string]string{}
	for _, arg := range strings.Fields(cmdline) {
		key, val, ok := strings.Cut(arg, "=")
		if ok && strings.HasPrefix(key, "banger.") {
			vals[key] = val
		}
	}
	var cfg NetConfig
	var errs []error
	bad := func(key, why string) {
		errs = append(errs, errdefs.Invalid(fmt.Errorf("kernel parameter %s=%q: %s", key, vals[key], why)))
	}
	if v := vals["banger.ip"]; v != "" {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() || p.Addr().IsUnspecified() {
			bad("banger.ip", "want an IPv4 address with prefix length, such as 172.16.0.5/24")
		} else {
			cfg.Addr = p
		}
	}
	if v := vals["banger.gw"]; v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			bad("banger.gw", "want an IPv4 address, such as 172.16.0.1")
		} else {
			cfg.Gateway = a
		}
	}
	if v := vals["banger.dns"]; v != "" {
		for s := range strings.SplitSeq(v, ",") {
			if s == "" {
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil || a.IsUnspecified() {
				bad("banger.dns", fmt.Sprintf("%q is not an IP address; want a comma-separated list such as 172.16.0.1,198.51.100.53", s))
				cfg.DNS = nil
				break
			}
			cfg.DNS = append(cfg.DNS, a)
		}
	}
	if v := vals["banger.hostname"]; v != "" {
		if why := checkHostname(v); why != "" {
			bad("banger.hostname", why)
		} else {
			cfg.Hostname = v
		}
	}
	if v := vals["banger.mac"]; v != "" {
		mac, err := net.ParseMAC(v)
		if err != nil || len(mac) != 6 {
			bad("banger.mac", "want an Ethernet address, such as 02:ab:cd:ef:01:23")
		} else {
			cfg.MAC = mac
		}
	}
	if err := errors.Join(errs...); err != nil {
		return NetConfig{}, err
	}
	return cfg, nil
}

// checkHostname says what is wrong with name as a hostname ("" if
// nothing): 1 to 64 characters of letters, digits, '-' and '.'.
func checkHostname(name string) string {
	if len(name) > maxHostname {
		return fmt.Sprintf("%d characters, at most %d allowed", len(name), maxHostname)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Sprintf("character %q not allowed; use letters, digits, '-' and '.'", rune(c))
		}
	}
	return ""
}

// ApplyNet applies cfg: lo up; hostname (unix.Sethostname, <root>/etc/hostname, the 127.0.1.1 line of <root>/etc/hosts replaced or appended);
// <root>/etc/resolv.conf replaced (it may be a dangling symlink: remove then write) when DNS is set; then, when Addr is valid,
// finds the NIC (the link whose MAC equals cfg.MAC, waiting up to 2 s; after that, or with no MAC, the first non-lo link; give up after 10 s
// with an error), flushes its IPv4 addresses, adds Addr, sets it up, and replaces the default route via Gateway when set.
// root is "/" in the guest; tests pass a temp dir. It returns the NIC name ("" when no address was set).
//
// "First" is in name order, as a glob of /sys/class/net would give. It
// stops at the first failing step. The interface listing and the ioctls
// go to the network namespace of the calling thread, and the hostname to
// its UTS namespace.
func ApplyNet(ctx context.Context, cfg NetConfig, root string) (nic string, err error) {
	if cfg.Addr.IsValid() && !cfg.Addr.Addr().Is4() {
		return "", errdefs.Invalid(fmt.Errorf("apply network: address %s is not IPv4", cfg.Addr))
	}
	if cfg.Addr.IsValid() && cfg.Gateway.IsValid() && !cfg.Gateway.Is4() {
		return "", errdefs.Invalid(fmt.Errorf("apply network: gateway %s is not IPv4", cfg.Gateway))
	}
	// One socket, bound to this thread's namespace for every request.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open ioctl socket: %w", err)
	}
	defer unix.Close(fd)

	if err := setUp(fd, "lo"); err != nil {
		return "", fmt.Errorf("set lo up: %w", err)
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return "", fmt.Errorf("set hostname %q: %w", cfg.Hostname, err)
		}
		if err := writeHostname(root, cfg.Hostname); err != nil {
			return "", err
		}
	}
	if len(cfg.DNS) > 0 {
		if err := writeResolvConf(root, cfg.DNS); err != nil {
			return "", err
		}
	}
	if !cfg.Addr.IsValid() {
		return "", nil
	}

	nic, err = waitNIC(ctx, cfg.MAC)
	if err != nil {
		return "", err
	}
	if err := flushIPv4(fd, nic); err != nil {
		return "", err
	}
	// SIOCSIFADDR gives the address its classful mask; SIOCSIFNETMASK
	// then sets the real one (and the broadcast address with it).
	if err := setInet4(fd, unix.SIOCSIFADDR, nic, cfg.Addr.Addr()); err != nil {
		return "", fmt.Errorf("add address %s to %q: %w", cfg.Addr, nic, err)
	}
	mask, _ := netip.AddrFromSlice(net.CIDRMask(cfg.Addr.Bits(), 32))
	if err := setInet4(fd, unix.SIOCSIFNETMASK, nic, mask); err != nil {
		return "", fmt.Errorf("add address %s to %q: set netmask: %w", cfg.Addr, nic, err)
	}
	if err := setUp(fd, nic); err != nil {
		return "", fmt.Errorf("set %q up: %w", nic, err)
	}
	if cfg.Gateway.IsValid() {
		if err := replaceDefaultRoute(fd, nic, cfg.Gateway); err != nil {
			return "", fmt.Errorf("replace default route via %s on %q: %w", cfg.Gateway, nic, err)
		}
	}
	return nic, nil
}

// waitNIC polls the interfaces until pickNIC chooses one, or nicWait
// passes, and returns its name.
func waitNIC(ctx context.Context, mac net.HardwareAddr) (string, error) {
	start := time.Now()
	for {
		ifaces, err := net.Interfaces()
		if err != nil {
			return "", fmt.Errorf("list network interfaces: %w", err)
		}
		waited := time.Since(start)
		if name := pickNIC(ifaces, mac, waited >= nicMACWait); name != "" {
			return name, nil
		}
		if waited >= nicWait {
			return "", errdefs.NotFound(fmt.Errorf("find network interface: none but lo appeared within %s", nicWait))
		}
		t := time.NewTimer(nicPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("find network interface: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// pickNIC chooses the guest's NIC among ifaces and returns its name: the
// one whose MAC is mac; else, when mac is empty or anyLink is set, the
// first one but lo in name order; else "" (wait for it).
func pickNIC(ifaces []net.Interface, mac net.HardwareAddr, anyLink bool) string {
	ifaces = slices.Clone(ifaces)
	slices.SortFunc(ifaces, func(a, b net.Interface) int { return strings.Compare(a.Name, b.Name) })
	first := ""
	for _, ifc := range ifaces {
		if ifc.Name == "lo" {
			continue
		}
		if first == "" {
			first = ifc.Name
		}
		if len(mac) > 0 && bytes.Equal(ifc.HardwareAddr, mac) {
			return ifc.Name
		}
	}
	if len(mac) == 0 || anyLink {
		return first
	}
	return ""
}

// writeHostname writes name to <root>/etc/hostname and puts it on the
// 127.0.1.1 line of <root>/etc/hosts.
func writeHostname(root, name string) error {
	path := filepath.Join(root, "etc", "hostname")
	if err := os.WriteFile(path, []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	path = filepath.Join(root, "etc", "hosts")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, hostsWithName(old, name), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// hostsWithName returns the hosts file content with every 127.0.1.1 line
// replaced by "127.0.1.1\t<name>", or that line appended when none.
func hostsWithName(content []byte, name string) []byte {
	entry := "127.0.1.1\t" + name
	lines := strings.SplitAfter(string(content), "\n")
	found := false
	for i, line := range lines {
		rest, ok := strings.CutPrefix(line, "127.0.1.1")
		if ok && rest != "" && strings.ContainsRune(" \t\v\f\r", rune(rest[0])) {
			found = true
			lines[i] = entry
			if strings.HasSuffix(line, "\n") {
				lines[i] += "\n"
			}
		}
	}
	out := strings.Join(lines, "")
	if !found {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += entry + "\n"
	}
	return []byte(out)
}

// writeResolvConf replaces <root>/etc/resolv.conf, which may be a symlink
// (dangling in an image without a running resolver), with a file naming
// servers.
func writeResolvConf(root string, servers []netip.Addr) error {
	path := filepath.Join(root, "etc", "resolv.conf")
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
