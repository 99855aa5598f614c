package vm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// tcpEstablished is the st column of /proc/net/tcp for an established
// connection.
const tcpEstablished = "01"

// sshSessions counts the established TCP connections from this network
// namespace (the daemon's, where banger vm ssh, ssh NAME.vm and editors'
// remote SSH connect from) to ip port 22, read from /proc/net/tcp and
// /proc/net/tcp6. An unreadable table counts as none.
func sshSessions(ip string) int {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return 0
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		c, _ := countEstablished(data, netip.AddrPortFrom(addr, 22))
		n += c
	}
	return n
}

// countEstablished counts the rows of a /proc/net/tcp or tcp6 table that
// are established connections to remote (IPv4 ones also in their
// IPv4-mapped IPv6 form).
func countEstablished(table []byte, remote netip.AddrPort) (int, error) {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st ...
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != tcpEstablished {
			continue
		}
		ap, err := parseProcAddr(f[2])
		if err != nil {
			return n, err
		}
		if ap.Port() == remote.Port() && ap.Addr().Unmap() == remote.Addr().Unmap() {
			n++
		}
	}
	return n, sc.Err()
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the address in
// hex, as the kernel holds it (32-bit words in host order, little endian
// here), a colon, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("tcp table address %q: no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("tcp table address %q: %w", s, err)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("tcp table address %q: bad address", s)
	}
	// Each 32-bit word is in little-endian order.
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
