// Package network manages banger's host networking: the bridge VMs hang
// off, one persistent TAP per VM (an isolated bridge port unless guests
// may reach each other; optionally taken from a Pool of TAPs made
// ahead), guest address allocation and the deterministic names and MACs
// derived from VM ids. All host changes go through netlink (no `ip`
// tool) and act on the network namespace New was called in (see
// Manager). Only the daemon, or a privileged helper acting for it,
// imports this package; the guest agent must not.
package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"banger/internal/errdefs"
)

// Prefix length bounds: /31 and /32 leave no room for a guest next to the
// bridge.
const (
	minPrefixLen = 1
	maxPrefixLen = 30
	// maxIfNameLen is IFNAMSIZ-1, the longest interface name Linux takes.
	maxIfNameLen = 15
)

// Config is the host side of banger's network: a bridge with one IPv4
// address that is also the guests' gateway.
type Config struct {
	BridgeName string // e.g. "br-fc"
	BridgeIP   string // e.g. "172.16.0.1"
	CIDR       string // prefix length, e.g. "24"
	// GuestToGuest lets guests reach each other across the bridge. When
	// false (the default), every TAP is an isolated bridge port: guests
	// reach the host (the bridge address) but not one another.
	GuestToGuest bool
}

// Validate reports every bad field at once. The error is errdefs.ErrInvalid.
func (c Config) Validate() error {
	var errs []error
	if err := ValidIfName(c.BridgeName); err != nil {
		errs = append(errs, fmt.Errorf("bridge_name %q: %w", c.BridgeName, err))
	}
	if _, err := parseIPv4(c.BridgeIP); err != nil {
		errs = append(errs, fmt.Errorf("bridge_ip %q: %w", c.BridgeIP, err))
	}
	if _, err := parsePrefixLen(c.CIDR); err != nil {
		errs = append(errs, fmt.Errorf("cidr %q: %w", c.CIDR, err))
	}
	if len(errs) == 0 {
		// Both parse: the bridge must be a host address of its subnet.
		if _, err := bridgePrefix(c.BridgeIP, c.CIDR); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errdefs.Invalid(fmt.Errorf("network config: %w", errors.Join(errs...)))
}

// Prefix returns the bridge address with its prefix length, e.g.
// 172.16.0.1/24.
func (c Config) Prefix() (netip.Prefix, error) {
	return bridgePrefix(c.BridgeIP, c.CIDR)
}

// Subnet returns the network the bridge and guests share, e.g.
// 172.16.0.0/24.
func (c Config) Subnet() (*net.IPNet, error) {
	p, err := c.Prefix()
	if err != nil {
		return nil, err
	}
	p = p.Masked()
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), 32),
	}, nil
}

// bridgePrefix parses a bridge address and prefix length and checks the
// address is a host address (not network, not broadcast) of its subnet.
func bridgePrefix(bridgeIP, cidr string) (netip.Prefix, error) {
	ip, err := parseIPv4(bridgeIP)
	if err != nil {
		return netip.Prefix{}, errdefs.Invalid(fmt.Errorf("bridge_ip %q: %w", bridgeIP, err))
	}
	bits, err := parsePrefixLen(cidr)
	if err != nil {
		return netip.Prefix{}, errdefs.Invalid(fmt.Errorf("cidr %q: %w", cidr, err))
	}
	p := netip.PrefixFrom(ip, bits)
	if ip == p.Masked().Addr() || ip == Broadcast(p) {
		return netip.Prefix{}, errdefs.Invalid(fmt.Errorf("bridge_ip %q: is the network or broadcast address of %s", bridgeIP, p.Masked()))
	}
	return p, nil
}

func parseIPv4(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, errors.New("not an IPv4 address")
	}
	return ip, nil
}

func parsePrefixLen(s string) (int, error) {
	errRange := fmt.Errorf("not a prefix length in %d..%d", minPrefixLen, maxPrefixLen)
	if len(s) == 0 || len(s) > 2 {
		return 0, errRange
	}
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errRange
		}
		n = n*10 + int(r-'0')
	}
	if n < minPrefixLen || n > maxPrefixLen {
		return 0, errRange
	}
	return n, nil
}

// ValidIfName accepts what Linux accepts as an interface name, narrowed
// to letters, digits, '-', '_' and '.' so names are safe in logs and
// shell commands.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("interface name is longer than %d bytes", maxIfNameLen)
	case name == "." || name == "..":
		return errors.New("interface name cannot be . or ..")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("interface name has invalid character %q (allowed: letters, digits, - _ .)", r)
		}
	}
	return nil
}

// Broadcast returns the last address of the IPv4 prefix p.
func Broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := be32(a) | host
	return netip.AddrFrom4(put32(v))
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

func put32(v uint32) [4]byte {
	return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
