package network

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

func TestTapName(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want string
	}{
		{name: "full id", id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: "bgr0123456789ab"},
		{name: "exactly twelve", id: "0123456789ab", want: "bgr0123456789ab"},
		{name: "short id", id: "abc", want: "bgrabc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TapName(tt.id)
			if got != tt.want {
				t.Errorf("TapName(%q) = %q, want %q", tt.id, got, tt.want)
			}
			if len(got) > maxIfNameLen {
				t.Errorf("TapName(%q) = %q is %d bytes, want <= %d", tt.id, got, len(got), maxIfNameLen)
			}
			if !strings.HasPrefix(got, TapPrefix) {
				t.Errorf("TapName(%q) = %q lacks prefix %q", tt.id, got, TapPrefix)
			}
			if err := ValidIfName(got); err != nil {
				t.Errorf("TapName(%q) = %q is not a valid interface name: %v", tt.id, got, err)
			}
		})
	}
}

var macRE = regexp.MustCompile(`^02(:[0-9a-f]{2}){5}$`)

func TestMACFromID(t *testing.T) {
	ids := []string{"", "a", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "another-vm"}
	seen := map[string]string{}
	for _, id := range ids {
		t.Run("id "+id, func(t *testing.T) {
			got := MACFromID(id)
			if again := MACFromID(id); again != got {
				t.Errorf("MACFromID(%q) gave %q then %q, want the same", id, got, again)
			}
			if !macRE.MatchString(got) {
				t.Errorf("MACFromID(%q) = %q, want format 02:xx:xx:xx:xx:xx", id, got)
			}
			hw, err := net.ParseMAC(got)
			if err != nil {
				t.Fatalf("net.ParseMAC(%q): %v", got, err)
			}
			if hw[0]&0x02 == 0 {
				t.Errorf("MACFromID(%q) = %q: locally administered bit clear", id, got)
			}
			if hw[0]&0x01 != 0 {
				t.Errorf("MACFromID(%q) = %q: multicast bit set", id, got)
			}
			if other, ok := seen[got]; ok {
				t.Errorf("MACFromID(%q) = MACFromID(%q) = %q, want distinct", id, other, got)
			}
			seen[got] = id
		})
	}
}

func TestGuestCIDR(t *testing.T) {
	if got, want := GuestCIDR("172.16.0.5", "24"), "172.16.0.5/24"; got != want {
		t.Errorf("GuestCIDR = %q, want %q", got, want)
	}
}

func TestAllocateIP(t *testing.T) {
	tests := []struct {
		name     string
		bridgeIP string
		cidr     string
		used     []string
		want     string
		wantErr  string
		wantKind error
	}{
		{name: "empty subnet", bridgeIP: "172.16.0.1", cidr: "24", want: "172.16.0.2"},
		{name: "skips used", bridgeIP: "172.16.0.1", cidr: "24", used: []string{"172.16.0.2", "172.16.0.3"}, want: "172.16.0.4"},
		{name: "fills a hole", bridgeIP: "172.16.0.1", cidr: "24", used: []string{"172.16.0.3", "172.16.0.2", "172.16.0.5"}, want: "172.16.0.4"},
		{name: "bridge not first", bridgeIP: "172.16.0.254", cidr: "24", want: "172.16.0.1"},
		{name: "bridge in middle", bridgeIP: "10.0.0.2", cidr: "24", used: []string{"10.0.0.1"}, want: "10.0.0.3"},
		{
			name: "garbage used ignored", bridgeIP: "172.16.0.1", cidr: "24",
			used: []string{"", "junk", "172.16.0", "999.1.1.1", "fd00::2", "10.0.0.2", "172.16.1.2", "172.16.0.2/24", " 172.16.0.3 ", "::ffff:172.16.0.4"},
			want: "172.16.0.5",
		},
		{name: "slash 30 one guest", bridgeIP: "10.9.9.1", cidr: "30", want: "10.9.9.2"},
		{name: "slash 30 bridge high", bridgeIP: "10.9.9.2", cidr: "30", want: "10.9.9.1"},
		{name: "slash 30 full", bridgeIP: "10.9.9.1", cidr: "30", used: []string{"10.9.9.2"}, wantErr: "no free guest address in 10.9.9.0/30", wantKind: errdefs.ErrUnavailable},
		{name: "slash 24 full", bridgeIP: "172.16.0.1", cidr: "24", used: hostsOf("172.16.0.0/24"), wantErr: "no free guest address in 172.16.0.0/24", wantKind: errdefs.ErrUnavailable},
		{name: "slash 24 last free", bridgeIP: "172.16.0.1", cidr: "24", used: hostsOf("172.16.0.0/24")[:253], want: "172.16.0.254"},
		{name: "top of address space", bridgeIP: "255.255.255.253", cidr: "30", want: "255.255.255.254"},
		{name: "bad bridge ip", bridgeIP: "x", cidr: "24", wantErr: `bridge_ip "x": not an IPv4 address`, wantKind: errdefs.ErrInvalid},
		{name: "bad cidr", bridgeIP: "172.16.0.1", cidr: "31", wantErr: `cidr "31"`, wantKind: errdefs.ErrInvalid},
		{name: "bridge is network address", bridgeIP: "172.16.0.0", cidr: "24", wantErr: "network or broadcast", wantKind: errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocateIP(tt.bridgeIP, tt.cidr, tt.used)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("AllocateIP = %q, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, tt.wantKind) {
					t.Errorf("got error %v, want kind %v", err, tt.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatalf("AllocateIP: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// hostsOf lists every address of p except network and broadcast.
func hostsOf(p string) []string {
	pfx := netip.MustParsePrefix(p)
	last := Broadcast(pfx)
	var out []string
	for ip := pfx.Addr().Next(); ip.Less(last); ip = ip.Next() {
		out = append(out, ip.String())
	}
	return out
}
