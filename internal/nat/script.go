package nat

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/network"
)

// guestPortPattern matches the bridge ports of banger's guests: every TAP
// banger makes, per VM or pooled, starts with network.TapPrefix. The
// anti-spoofing rules only look at frames entering through such ports,
// so other bridges and their ports in the namespace are left alone (the
// kernel here lacks nft's bridge meta expressions, so the rules cannot
// name the bridge itself).
const guestPortPattern = "bgr*"

// commentPrefix starts the comment of every per-VM rule; the comment
// carries the entry, so the kernel's table is the record of what is
// installed and Entries can read it back after a restart.
const commentPrefix = "banger vm="

// maxCommentLen is the longest comment nft stores (128 bytes with NUL).
const maxCommentLen = 127

// maxVMIDLen bounds a VM id so every comment fits maxCommentLen.
const maxVMIDLen = 64

// TableName is the name of banger's tables for a bridge: "banger_" and
// the bridge name. Both the inet table (NAT, forwarding) and the bridge
// table (anti-spoofing) carry it, so two daemons with different bridges
// in one network namespace never touch each other's rules.
func TableName(bridge string) string { return "banger_" + bridge }

// validate checks the configuration; the error is errdefs.ErrInvalid.
func (c Config) validate() error {
	var errs []error
	if err := network.ValidIfName(c.Bridge); err != nil {
		errs = append(errs, fmt.Errorf("bridge %q: %w", c.Bridge, err))
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 30 {
		errs = append(errs, fmt.Errorf("subnet %s: want an IPv4 prefix of /30 or wider", c.Subnet))
	}
	if c.StateFile == "" {
		errs = append(errs, errors.New("state file: must not be empty"))
	}
	if len(errs) == 0 {
		return nil
	}
	return errdefs.Invalid(fmt.Errorf("nat config: %w", errors.Join(errs...)))
}

// validate checks an entry against the configuration; the error is
// errdefs.ErrInvalid and names the VM.
func (e Entry) validate(c Config) error {
	var errs []error
	switch {
	case e.VMID == "":
		errs = append(errs, errors.New("vm id is empty"))
	case len(e.VMID) > maxVMIDLen:
		errs = append(errs, fmt.Errorf("vm id is longer than %d bytes", maxVMIDLen))
	case strings.Trim(e.VMID, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != "":
		errs = append(errs, errors.New("vm id has characters other than letters, digits, - and _"))
	}
	switch {
	case !e.IP.Is4():
		errs = append(errs, fmt.Errorf("ip %s: not an IPv4 address", e.IP))
	case !c.Subnet.Masked().Contains(e.IP):
		errs = append(errs, fmt.Errorf("ip %s: not in the bridge subnet %s", e.IP, c.Subnet.Masked()))
	case e.IP == c.Subnet.Masked().Addr() || e.IP == network.Broadcast(c.Subnet):
		errs = append(errs, fmt.Errorf("ip %s: is the network or broadcast address of %s", e.IP, c.Subnet.Masked()))
	}
	if err := network.ValidIfName(e.Tap); err != nil {
		errs = append(errs, fmt.Errorf("tap %q: %w", e.Tap, err))
	} else if e.Tap == c.Bridge {
		errs = append(errs, fmt.Errorf("tap %q: is the bridge", e.Tap))
	}
	if e.MAC != "" {
		if hw, err := net.ParseMAC(e.MAC); err != nil || len(hw) != 6 {
			errs = append(errs, fmt.Errorf("mac %q: not an Ethernet address", e.MAC))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errdefs.Invalid(fmt.Errorf("nat entry for vm %q: %w", e.VMID, errors.Join(errs...)))
}

// normalize returns entries validated, with MACs in canonical form, sorted
// by VM id. Two entries for one VM, IP or TAP are an errdefs.ErrConflict.
func normalize(c Config, entries []Entry) ([]Entry, error) {
	out := make([]Entry, 0, len(entries))
	byIP := map[netip.Addr]string{}
	byTap := map[string]string{}
	byID := map[string]bool{}
	var errs []error
	for _, e := range entries {
		if err := e.validate(c); err != nil {
			errs = append(errs, err)
			continue
		}
		if e.MAC != "" {
			hw, _ := net.ParseMAC(e.MAC)
			e.MAC = hw.String()
		}
		switch {
		case byID[e.VMID]:
			errs = append(errs, errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("nat entry for vm %q: listed twice", e.VMID)))
			continue
		case byIP[e.IP] != "":
			errs = append(errs, errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("nat entry for vm %q: ip %s is already vm %q's", e.VMID, e.IP, byIP[e.IP])))
			continue
		case byTap[e.Tap] != "":
			errs = append(errs, errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("nat entry for vm %q: tap %q is already vm %q's", e.VMID, e.Tap, byTap[e.Tap])))
			continue
		}
		byID[e.VMID], byIP[e.IP], byTap[e.Tap] = true, e.VMID, e.VMID
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.VMID, b.VMID) })
	return out, nil
}

// buildScript renders the nft script that replaces banger's tables for
// c.Bridge with exactly the given entries, in one atomic transaction.
// entries must come from normalize. Each table is first declared (a
// no-op when it exists) and deleted, so the script works whatever is
// installed, then written anew.
//
// Why the rules look the way they do: routed packets from a guest reach
// the inet forward hook with iifname = the bridge, not the guest's TAP,
// so the forward and masquerade rules key on the guest's /32. The source
// address is only a trustworthy key if no other guest can send from it,
// so the bridge-family table pins each NAT guest's address (IPv4 and ARP)
// and MAC to its TAP: a frame carrying them that enters through any other
// guest port is dropped before the bridge forwards or routes it. Together
// this is a rule keyed on the TAP, which is what a NAT entry means.
//
// The base rules make forwarding for one NAT guest open nothing else:
// anything else that arrives from the bridge and would leave through
// another interface (IPv6 too) is dropped, and, unless GuestToGuest,
// traffic the host would route from one guest back onto the bridge is
// dropped as well, so port isolation cannot be bypassed through the
// host. No input or output chain exists: traffic to the host itself (DNS
// on the bridge address, SSH from the host) is never touched.
func buildScript(c Config, entries []Entry) string {
	var b strings.Builder
	table := TableName(c.Bridge)
	br := c.Bridge
	fmt.Fprintf(&b, "# banger rules for bridge %q: generated, replaced as a whole\n", br)
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\n", table, table)
	fmt.Fprintf(&b, "table inet %s {\n", table)
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\toifname %q ip daddr %s ct state established,related accept comment %q\n",
		br, c.Subnet.Masked(), "banger: replies to nat guests")
	for _, e := range entries {
		fmt.Fprintf(&b, "\t\tiifname %q oifname != %q ip saddr %s accept comment %q\n", br, br, e.IP, forwardComment(e))
	}
	if !c.GuestToGuest {
		fmt.Fprintf(&b, "\t\tiifname %q oifname %q drop comment %q\n", br, br, "banger: guest to guest through the host (guest_to_guest = false)")
	}
	fmt.Fprintf(&b, "\t\tiifname %q oifname != %q drop comment %q\n", br, br, "banger: guests without nat")
	b.WriteString("\t}\n")
	b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "\t\toifname != %q ip saddr %s masquerade comment %q\n", br, e.IP, natComment(e))
	}
	b.WriteString("\t}\n}\n")

	// The bridge table exists only while it has rules: an empty base
	// chain would still be run for every frame on every bridge.
	fmt.Fprintf(&b, "table bridge %s {}\ndelete table bridge %s\n", table, table)
	if len(entries) > 0 {
		fmt.Fprintf(&b, "table bridge %s {\n", table)
		b.WriteString("\tchain prerouting {\n\t\ttype filter hook prerouting priority filter; policy accept;\n")
		for _, e := range entries {
			c := commentPrefix + e.VMID
			fmt.Fprintf(&b, "\t\tiifname %q iifname != %q ip saddr %s drop comment %q\n", guestPortPattern, e.Tap, e.IP, c)
			fmt.Fprintf(&b, "\t\tiifname %q iifname != %q arp saddr ip %s drop comment %q\n", guestPortPattern, e.Tap, e.IP, c)
			if e.MAC != "" {
				fmt.Fprintf(&b, "\t\tiifname %q iifname != %q ether saddr %s drop comment %q\n", guestPortPattern, e.Tap, e.MAC, c)
			}
		}
		b.WriteString("\t}\n}\n")
	}
	return b.String()
}

// teardownScript deletes both of banger's tables for bridge, whether or
// not they exist.
func teardownScript(bridge string) string {
	t := TableName(bridge)
	return fmt.Sprintf("table inet %s {}\ndelete table inet %s\ntable bridge %s {}\ndelete table bridge %s\n", t, t, t, t)
}

// natComment is the masquerade rule's comment: the VM, its address and
// its TAP. forwardComment is the forward rule's: the VM, its address and
// its MAC. Between them they hold the whole entry.
func natComment(e Entry) string {
	return fmt.Sprintf("%s%s ip=%s tap=%s", commentPrefix, e.VMID, e.IP, e.Tap)
}

func forwardComment(e Entry) string {
	s := fmt.Sprintf("%s%s ip=%s", commentPrefix, e.VMID, e.IP)
	if e.MAC != "" {
		s += " mac=" + e.MAC
	}
	return s
}

// nftList is the part of `nft -j list table` output that Entries reads.
type nftList struct {
	Nftables []struct {
		Rule *struct {
			Family  string `json:"family"`
			Table   string `json:"table"`
			Chain   string `json:"chain"`
			Comment string `json:"comment"`
		} `json:"rule"`
	} `json:"nftables"`
}

// parseEntries reads the entries back from the JSON listing of banger's
// inet table: every rule whose comment starts with commentPrefix adds its
// key=value fields to its VM's entry. Rules of other tables or without
// such a comment are ignored; an entry missing its address or TAP is an
// error, since the table was then changed by hand.
func parseEntries(data []byte, bridge string) ([]Entry, error) {
	var l nftList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("parse nft listing: %w", err)
	}
	table := TableName(bridge)
	byID := map[string]*Entry{}
	var ids []string
	for _, obj := range l.Nftables {
		r := obj.Rule
		if r == nil || r.Family != "inet" || r.Table != table {
			continue
		}
		rest, ok := strings.CutPrefix(r.Comment, commentPrefix)
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		id := fields[0]
		e := byID[id]
		if e == nil {
			e = &Entry{VMID: id}
			byID[id] = e
			ids = append(ids, id)
		}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ip":
				ip, err := netip.ParseAddr(v)
				if err != nil {
					return nil, fmt.Errorf("rule comment %q: bad ip: %w", r.Comment, err)
				}
				e.IP = ip
			case "tap":
				e.Tap = v
			case "mac":
				e.MAC = v
			}
		}
	}
	slices.Sort(ids)
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		e := byID[id]
		if !e.IP.IsValid() || e.Tap == "" {
			return nil, fmt.Errorf("table inet %s: rules of vm %q lack its ip or tap (edited by hand?): run Sync to rebuild", table, id)
		}
		out = append(out, *e)
	}
	return out, nil
}

// tableNames reads the (family, name) pairs of `nft -j list tables`.
func tableNames(data []byte) ([][2]string, error) {
	var l struct {
		Nftables []struct {
			Table *struct {
				Family string `json:"family"`
				Name   string `json:"name"`
			} `json:"table"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("parse nft table list: %w", err)
	}
	var out [][2]string
	for _, obj := range l.Nftables {
		if obj.Table != nil {
			out = append(out, [2]string{obj.Table.Family, obj.Table.Name})
		}
	}
	return out, nil
}
