package network

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzAllocateIP checks that whatever AllocateIP returns is a free host
// address of the bridge's subnet, and that it never panics.
func FuzzAllocateIP(f *testing.F) {
	f.Add("172.16.0.1", "24", "172.16.0.2,172.16.0.3")
	f.Add("10.0.0.1", "30", "10.0.0.2")
	f.Add("255.255.255.253", "30", "")
	f.Add("0.0.0.1", "1", "junk,,::1")
	f.Add("x", "33", "")
	f.Fuzz(func(t *testing.T, bridgeIP, cidr, usedList string) {
		used := strings.Split(usedList, ",")
		got, err := AllocateIP(bridgeIP, cidr, used)
		if err != nil {
			return
		}
		if cerr := (Config{BridgeName: "br", BridgeIP: bridgeIP, CIDR: cidr}).Validate(); cerr != nil {
			t.Fatalf("AllocateIP(%q, %q) = %q but the config is invalid: %v", bridgeIP, cidr, got, cerr)
		}
		ip, perr := netip.ParseAddr(got)
		if perr != nil || !ip.Is4() {
			t.Fatalf("AllocateIP = %q, want an IPv4 address", got)
		}
		p, _ := bridgePrefix(bridgeIP, cidr)
		subnet := p.Masked()
		switch {
		case !subnet.Contains(ip):
			t.Errorf("got %s, want an address in %s", ip, subnet)
		case ip == subnet.Addr() || ip == Broadcast(subnet):
			t.Errorf("got %s, the network or broadcast address of %s", ip, subnet)
		case ip == p.Addr():
			t.Errorf("got %s, the bridge address", ip)
		}
		for _, u := range used {
			if a, ok := parseUsed(u); ok && a == ip {
				t.Errorf("got %s, which is in used (%q)", ip, u)
			}
		}
		// It is the lowest free one: everything below it is taken.
		taken := map[netip.Addr]bool{p.Addr(): true}
		for _, u := range used {
			if a, ok := parseUsed(u); ok {
				taken[a] = true
			}
		}
		for a := subnet.Addr().Next(); a.Less(ip); a = a.Next() {
			if !taken[a] {
				t.Errorf("got %s, but lower address %s is free", ip, a)
				break
			}
		}
	})
}

// FuzzConfigValidate checks that Validate never panics and that a config
// it accepts yields a subnet and a guest address.
func FuzzConfigValidate(f *testing.F) {
	f.Add("br-fc", "172.16.0.1", "24")
	f.Add("", "", "")
	f.Add("abcdefghijklmnop", "1.2.3.4", "30")
	f.Add("br0", "10.0.0.0", "8")
	f.Fuzz(func(t *testing.T, name, ip, cidr string) {
		c := Config{BridgeName: name, BridgeIP: ip, CIDR: cidr}
		if err := c.Validate(); err != nil {
			return
		}
		if len(name) == 0 || len(name) > maxIfNameLen {
			t.Errorf("Validate accepted bridge name %q", name)
		}
		sub, err := c.Subnet()
		if err != nil {
			t.Fatalf("valid config %+v: Subnet: %v", c, err)
		}
		if ones, bits := sub.Mask.Size(); bits != 32 || ones < minPrefixLen || ones > maxPrefixLen {
			t.Errorf("valid config %+v: got mask /%d of %d bits", c, ones, bits)
		}
		if _, err := AllocateIP(ip, cidr, nil); err != nil {
			t.Errorf("valid config %+v: AllocateIP with nothing used: %v", c, err)
		}
	})
}
