package network

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"

	"banger/internal/errdefs"
)

// TapPrefix starts the name of every TAP banger creates, so orphans can
// be found after a crash.
const TapPrefix = "bgr"

// tapIDLen is how many characters of a VM id go into its TAP name:
// len(TapPrefix)+tapIDLen is 15, the longest interface name Linux takes.
const tapIDLen = 12

// TapName returns the TAP name of a VM: TapPrefix and the first 12
// characters of its id.
func TapName(vmID string) string {
	if len(vmID) > tapIDLen {
		vmID = vmID[:tapIDLen]
	}
	return TapPrefix + vmID
}

// MACFromID derives a VM's MAC address from its id: a locally
// administered unicast address "02:xx:xx:xx:xx:xx" whose other five
// octets come from the SHA-256 of the id.
func MACFromID(vmID string) string {
	sum := sha256.Sum256([]byte(vmID))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3], sum[4])
}

// GuestCIDR joins a guest address and prefix length: "172.16.0.5/24".
func GuestCIDR(ip, cidr string) string {
	return ip + "/" + cidr
}

// AllocateIP returns the lowest host address of the bridge's subnet that
// is not the network or broadcast address, not the bridge address and not
// in used. Entries of used that are not IPv4 addresses of the subnet are
// ignored (an "a.b.c.d/n" entry counts as its address). A full subnet
// gives an errdefs.ErrUnavailable error.
func AllocateIP(bridgeIP, cidr string, used []string) (string, error) {
	p, err := bridgePrefix(bridgeIP, cidr)
	if err != nil {
		return "", fmt.Errorf("allocate guest address: %w", err)
	}
	subnet := p.Masked()
	taken := make(map[netip.Addr]struct{}, len(used)+1)
	taken[p.Addr()] = struct{}{}
	for _, u := range used {
		if ip, ok := parseUsed(u); ok && subnet.Contains(ip) {
			taken[ip] = struct{}{}
		}
	}
	// Every candidate is either taken or free, so this loop runs at most
	// len(taken)+1 times before it returns.
	last := Broadcast(subnet)
	for ip := subnet.Addr().Next(); ip.IsValid() && ip.Less(last); ip = ip.Next() {
		if _, ok := taken[ip]; !ok {
			return ip.String(), nil
		}
	}
	return "", errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("no free guest address in %s", subnet))
}

func parseUsed(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	return ip, ip.Is4()
}
