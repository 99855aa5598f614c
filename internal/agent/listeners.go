package agent

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The socket tables under /proc/net and what they hold.
var socketTables = []struct{ file, proto string }{
	{"net/tcp", "tcp"}, {"net/tcp6", "tcp"}, {"net/udp", "udp"}, {"net/udp6", "udp"},
}

// Socket states in /proc/net/{tcp,udp}: TCP_LISTEN, and TCP_CLOSE, which
// is what an unconnected UDP socket shows.
const (
	stateListen = "0A"
	stateClose  = "07"
)

// socketEntry is one row of a socket table that counts as a listener.
type socketEntry struct {
	Proto string
	Addr  netip.Addr
	Port  int
	Inode uint64
}

// ReadListeners returns the guest's listening TCP sockets and bound,
// unconnected UDP sockets from the procfs mounted at root, each with the
// lowest pid holding it and that process's name when one is found,
// sorted by protocol, port and address, one per protocol, address and
// port. A missing table (no IPv6) is skipped.
func ReadListeners(ctx context.Context, root string) ([]Listener, error) {
	var entries []socketEntry
	for _, t := range socketTables {
		data, err := os.ReadFile(filepath.Join(root, t.file))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", t.file, err)
		}
		es, err := parseSocketTable(data, t.proto)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", t.file, err)
		}
		entries = append(entries, es...)
	}
	entries = dedupeEntries(entries)
	inodes := make(map[uint64]int, len(entries))
	for _, e := range entries {
		if e.Inode != 0 {
			inodes[e.Inode] = 0
		}
	}
	if err := socketOwners(ctx, root, inodes); err != nil {
		return nil, err
	}
	comms := map[int]string{}
	out := make([]Listener, 0, len(entries))
	for _, e := range entries {
		l := Listener{Proto: e.Proto, Address: e.Addr.String(), Port: e.Port, PID: inodes[e.Inode]}
		if l.PID != 0 {
			name, ok := comms[l.PID]
			if !ok {
				b, _ := os.ReadFile(filepath.Join(root, strconv.Itoa(l.PID), "comm"))
				name = strings.TrimSpace(string(b))
				comms[l.PID] = name
			}
			l.Process = name
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Listener) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Address, b.Address))
	})
	return out, nil
}

// parseSocketTable returns the listeners in one /proc/net/{tcp,tcp6,udp,
// udp6} table: TCP sockets in LISTEN, UDP sockets bound to a port with no
// remote end.
func parseSocketTable(data []byte, proto string) ([]socketEntry, error) {
	var out []socketEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		state := f[3]
		if (proto == "tcp" && state != stateListen) || (proto == "udp" && state != stateClose) {
			continue
		}
		addr, port, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, err
		}
		if port == 0 {
			continue
		}
		if proto == "udp" {
			raddr, rport, err := parseHexAddrPort(f[2])
			if err != nil {
				return nil, err
			}
			if !raddr.IsUnspecified() || rport != 0 {
				continue
			}
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad inode %q: %w", f[9], err)
		}
		out = append(out, socketEntry{Proto: proto, Addr: addr, Port: port, Inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddrPort parses "0100007F:0016" (IPv4) or 32 hex digits and a
// port (IPv6). The kernel prints each 32-bit word of the address in host
// byte order, little-endian on the guests banger runs (amd64, arm64); the
// port is a plain hex number.
func parseHexAddrPort(s string) (netip.Addr, int, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("bad socket address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bad port in %q", s)
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("bad address in %q", s)
	}
	for w := 0; w < len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	if len(raw) == 4 {
		return netip.AddrFrom4([4]byte(raw)), int(port), nil
	}
	return netip.AddrFrom16([16]byte(raw)), int(port), nil
}

// dedupeEntries keeps the first entry of each protocol, address and port
// (SO_REUSEPORT groups, a socket seen twice while the table changes).
func dedupeEntries(entries []socketEntry) []socketEntry {
	type key struct {
		proto string
		addr  netip.Addr
		port  int
	}
	seen := map[key]bool{}
	out := entries[:0]
	for _, e := range entries {
		k := key{e.Proto, e.Addr, e.Port}
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// socketOwners fills inodes (socket inode -> pid) with the lowest pid that
// has each socket open, from the "socket:[INODE]" links in /proc/PID/fd.
// Processes that vanish or cannot be read are skipped; it stops once every
// inode has an owner.
func socketOwners(ctx context.Context, root string, inodes map[uint64]int) error {
	if len(inodes) == 0 {
		return nil
	}
	d, err := os.Open(root)
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	left := len(inodes)
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return err
		}
		fdDir := filepath.Join(root, strconv.Itoa(pid), "fd")
		f, err := os.Open(fdDir)
		if err != nil {
			continue
		}
		fds, _ := f.Readdirnames(-1)
		f.Close()
		for _, fd := range fds {
			link, err := os.Readlink(fdDir + "/" + fd)
			if err != nil {
				continue
			}
			inode, ok := socketInode(link)
			if !ok {
				continue
			}
			if owner, want := inodes[inode]; want && owner == 0 {
				inodes[inode] = pid
				if left--; left == 0 {
					return nil
				}
			}
		}
	}
	return nil
}

// socketInode parses "socket:[12345]".
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
