package nat

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/network"
)

func testCfg() Config {
	return Config{Bridge: "br-fc", Subnet: netip.MustParsePrefix("172.16.0.0/24"), StateFile: "/state/nat-ip-forward"}
}

const longID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func entry(id, ip, tap, mac string) Entry {
	return Entry{VMID: id, IP: netip.MustParseAddr(ip), Tap: tap, MAC: mac}
}

func TestGuestPortPatternMatchesTapPrefix(t *testing.T) {
	if got, want := guestPortPattern, network.TapPrefix+"*"; got != want {
		t.Errorf("guestPortPattern = %q, want %q (network.TapPrefix changed?)", got, want)
	}
}

func TestTableName(t *testing.T) {
	tests := []struct{ bridge, want string }{
		{"br-fc", "banger_br-fc"},
		{"br.0", "banger_br.0"},
		{"abcdefghijklmno", "banger_abcdefghijklmno"},
	}
	for _, tt := range tests {
		t.Run(tt.bridge, func(t *testing.T) {
			if got := TableName(tt.bridge); got != tt.want {
				t.Errorf("TableName(%q) = %q, want %q", tt.bridge, got, tt.want)
			}
		})
	}
}

func TestBuildScript(t *testing.T) {
	cfg := testCfg()
	entries, err := normalize(cfg, []Entry{
		entry("bbbb", "172.16.0.3", "bgrbbbb", ""),
		entry("aaaa", "172.16.0.2", "bgrpaaaa", "02:AA:BB:CC:DD:EE"),
	})
	if err != nil {
		t.Fatalf("normalize: %v", err)
	}
	want := `# banger rules for bridge "br-fc": generated, replaced as a whole
table inet banger_br-fc {}
delete table inet banger_br-fc
table inet banger_br-fc {
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "br-fc" ip daddr 172.16.0.0/24 ct state established,related accept comment "banger: replies to nat guests"
		iifname "br-fc" oifname != "br-fc" ip saddr 172.16.0.2 accept comment "banger vm=aaaa ip=172.16.0.2 mac=02:aa:bb:cc:dd:ee"
		iifname "br-fc" oifname != "br-fc" ip saddr 172.16.0.3 accept comment "banger vm=bbbb ip=172.16.0.3"
		iifname "br-fc" oifname "br-fc" drop comment "banger: guest to guest through the host (guest_to_guest = false)"
		iifname "br-fc" oifname != "br-fc" drop comment "banger: guests without nat"
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname != "br-fc" ip saddr 172.16.0.2 masquerade comment "banger vm=aaaa ip=172.16.0.2 tap=bgrpaaaa"
		oifname != "br-fc" ip saddr 172.16.0.3 masquerade comment "banger vm=bbbb ip=172.16.0.3 tap=bgrbbbb"
	}
}
table bridge banger_br-fc {}
delete table bridge banger_br-fc
table bridge banger_br-fc {
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname "bgr*" iifname != "bgrpaaaa" ip saddr 172.16.0.2 drop comment "banger vm=aaaa"
		iifname "bgr*" iifname != "bgrpaaaa" arp saddr ip 172.16.0.2 drop comment "banger vm=aaaa"
		iifname "bgr*" iifname != "bgrpaaaa" ether saddr 02:aa:bb:cc:dd:ee drop comment "banger vm=aaaa"
		iifname "bgr*" iifname != "bgrbbbb" ip saddr 172.16.0.3 drop comment "banger vm=bbbb"
		iifname "bgr*" iifname != "bgrbbbb" arp saddr ip 172.16.0.3 drop comment "banger vm=bbbb"
	}
}
`
	if got := buildScript(cfg, entries); got != want {
		t.Errorf("buildScript:\ngot:\n%s\nwant:\n%s", got, want)
	}

	t.Run("no entries", func(t *testing.T) {
		got := buildScript(cfg, nil)
		if strings.Contains(got, "banger vm=") || strings.Contains(got, "masquerade") {
			t.Errorf("script without entries has per-vm rules:\n%s", got)
		}
		if !strings.HasSuffix(got, "table bridge banger_br-fc {}\ndelete table bridge banger_br-fc\n") {
			t.Errorf("script without entries should end by deleting the bridge table, got:\n%s", got)
		}
		if !strings.Contains(got, `iifname "br-fc" oifname != "br-fc" drop`) {
			t.Errorf("script without entries lacks the drop for guests without nat:\n%s", got)
		}
	})
	t.Run("guest to guest allowed", func(t *testing.T) {
		c := cfg
		c.GuestToGuest = true
		got := buildScript(c, entries)
		if strings.Contains(got, `oifname "br-fc" drop`) {
			t.Errorf("GuestToGuest script drops bridge-to-bridge traffic:\n%s", got)
		}
	})
}

func TestCommentsFit(t *testing.T) {
	e := entry(longID, "172.16.255.254", "abcdefghijklmno", "02:aa:bb:cc:dd:ee")
	for _, c := range []string{natComment(e), forwardComment(e), commentPrefix + e.VMID} {
		if len(c) > maxCommentLen {
			t.Errorf("comment %q is %d bytes, want <= %d", c, len(c), maxCommentLen)
		}
	}
}

func TestNormalize(t *testing.T) {
	cfg := testCfg()
	tests := []struct {
		name     string
		entries  []Entry
		wantIDs  []string
		wantErr  []string
		wantKind error
	}{
		{name: "empty"},
		{name: "sorted by id", entries: []Entry{entry("b", "172.16.0.3", "bgrb", ""), entry("a", "172.16.0.2", "bgra", "")}, wantIDs: []string{"a", "b"}},
		{name: "longest id", entries: []Entry{entry(longID, "172.16.0.2", "bgr0123456789ab", "")}, wantIDs: []string{longID}},
		{name: "id too long", entries: []Entry{entry(longID+"0", "172.16.0.2", "bgra", "")}, wantErr: []string{"longer than 64"}, wantKind: errdefs.ErrInvalid},
		{name: "id empty", entries: []Entry{entry("", "172.16.0.2", "bgra", "")}, wantErr: []string{"vm id is empty"}, wantKind: errdefs.ErrInvalid},
		{name: "id with quote", entries: []Entry{entry(`a"b`, "172.16.0.2", "bgra", "")}, wantErr: []string{"characters other than"}, wantKind: errdefs.ErrInvalid},
		{name: "id with space", entries: []Entry{entry("a b", "172.16.0.2", "bgra", "")}, wantErr: []string{"characters other than"}, wantKind: errdefs.ErrInvalid},
		{name: "ip outside subnet", entries: []Entry{entry("a", "10.0.0.2", "bgra", "")}, wantErr: []string{"not in the bridge subnet 172.16.0.0/24"}, wantKind: errdefs.ErrInvalid},
		{name: "ip is network", entries: []Entry{entry("a", "172.16.0.0", "bgra", "")}, wantErr: []string{"network or broadcast"}, wantKind: errdefs.ErrInvalid},
		{name: "ip is broadcast", entries: []Entry{entry("a", "172.16.0.255", "bgra", "")}, wantErr: []string{"network or broadcast"}, wantKind: errdefs.ErrInvalid},
		{name: "ip zero", entries: []Entry{{VMID: "a", Tap: "bgra"}}, wantErr: []string{"not an IPv4 address"}, wantKind: errdefs.ErrInvalid},
		{name: "ip v6", entries: []Entry{entry("a", "fd00::2", "bgra", "")}, wantErr: []string{"not an IPv4 address"}, wantKind: errdefs.ErrInvalid},
		{name: "tap empty", entries: []Entry{entry("a", "172.16.0.2", "", "")}, wantErr: []string{`tap "": interface name is empty`}, wantKind: errdefs.ErrInvalid},
		{name: "tap with quote", entries: []Entry{entry("a", "172.16.0.2", `bgr"x`, "")}, wantErr: []string{"invalid character"}, wantKind: errdefs.ErrInvalid},
		{name: "tap wildcard", entries: []Entry{entry("a", "172.16.0.2", "bgr*", "")}, wantErr: []string{"invalid character"}, wantKind: errdefs.ErrInvalid},
		{name: "tap is bridge", entries: []Entry{entry("a", "172.16.0.2", "br-fc", "")}, wantErr: []string{"is the bridge"}, wantKind: errdefs.ErrInvalid},
		{name: "bad mac", entries: []Entry{entry("a", "172.16.0.2", "bgra", "02:zz")}, wantErr: []string{`mac "02:zz"`}, wantKind: errdefs.ErrInvalid},
		{name: "long mac", entries: []Entry{entry("a", "172.16.0.2", "bgra", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01")}, wantErr: []string{"not an Ethernet address"}, wantKind: errdefs.ErrInvalid},
		{name: "id twice", entries: []Entry{entry("a", "172.16.0.2", "bgra", ""), entry("a", "172.16.0.3", "bgrb", "")}, wantErr: []string{"listed twice"}, wantKind: errdefs.ErrConflict},
		{name: "ip twice", entries: []Entry{entry("a", "172.16.0.2", "bgra", ""), entry("b", "172.16.0.2", "bgrb", "")}, wantErr: []string{`ip 172.16.0.2 is already vm "a"'s`}, wantKind: errdefs.ErrConflict},
		{name: "tap twice", entries: []Entry{entry("a", "172.16.0.2", "bgra", ""), entry("b", "172.16.0.3", "bgra", "")}, wantErr: []string{`tap "bgra" is already vm "a"'s`}, wantKind: errdefs.ErrConflict},
		{
			name:    "every field bad at once",
			entries: []Entry{{VMID: "", Tap: "", MAC: "x"}},
			wantErr: []string{"vm id is empty", "not an IPv4 address", "tap", `mac "x"`}, wantKind: errdefs.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalize(cfg, tt.entries)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("normalize = %v, want error containing %q", got, tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("got error %q, want it to contain %q", err, w)
					}
				}
				if !errdefs.IsInvalid(err) && tt.wantKind == errdefs.ErrInvalid || !errdefs.IsConflict(err) && tt.wantKind == errdefs.ErrConflict {
					t.Errorf("got error %v, want kind %v", err, tt.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatalf("normalize: %v", err)
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, e.VMID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("got ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "no bridge", mutate: func(c *Config) { c.Bridge = "" }, wantErr: "bridge"},
		{name: "bridge with quote", mutate: func(c *Config) { c.Bridge = `br"` }, wantErr: "invalid character"},
		{name: "no subnet", mutate: func(c *Config) { c.Subnet = netip.Prefix{} }, wantErr: "subnet"},
		{name: "v6 subnet", mutate: func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") }, wantErr: "subnet"},
		{name: "slash 31", mutate: func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.0.0/31") }, wantErr: "subnet"},
		{name: "no state file", mutate: func(c *Config) { c.StateFile = "" }, wantErr: "state file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCfg()
			tt.mutate(&c)
			err := c.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errdefs.IsInvalid(err) {
				t.Errorf("got error %v, want an invalid-argument error containing %q", err, tt.wantErr)
			}
		})
	}
}

// realListing is `nft -j list table inet banger_br-fc` output of nft
// 1.0.6 for one entry with a MAC and one without (expressions trimmed).
const realListing = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "banger_br-fc", "handle": 2}},
{"chain": {"family": "inet", "table": "banger_br-fc", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
{"chain": {"family": "inet", "table": "banger_br-fc", "name": "postrouting", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "handle": 3, "comment": "banger: replies to nat guests", "expr": [{"accept": null}]}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "handle": 4, "comment": "banger vm=aaaa ip=172.16.0.2 mac=02:aa:bb:cc:dd:ee", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "172.16.0.2"}}, {"accept": null}]}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "handle": 5, "comment": "banger vm=bbbb ip=172.16.0.3", "expr": [{"accept": null}]}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "handle": 6, "comment": "banger: guests without nat", "expr": [{"drop": null}]}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "postrouting", "handle": 7, "comment": "banger vm=aaaa ip=172.16.0.2 tap=bgrpaaaa", "expr": [{"masquerade": null}]}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "postrouting", "handle": 8, "comment": "banger vm=bbbb ip=172.16.0.3 tap=bgrbbbb", "expr": [{"masquerade": null}]}},
{"rule": {"family": "inet", "table": "banger_other", "chain": "postrouting", "handle": 9, "comment": "banger vm=cccc ip=172.16.0.4 tap=bgrcccc", "expr": [{"masquerade": null}]}},
{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "handle": 10, "expr": [{"accept": null}]}}]}`

func TestParseEntries(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    []Entry
		wantErr string
	}{
		{
			name: "real listing",
			data: realListing,
			want: []Entry{
				entry("aaaa", "172.16.0.2", "bgrpaaaa", "02:aa:bb:cc:dd:ee"),
				entry("bbbb", "172.16.0.3", "bgrbbbb", ""),
			},
		},
		{name: "empty table", data: `{"nftables": [{"table": {"family": "inet", "name": "banger_br-fc"}}]}`},
		{
			name:    "entry without tap",
			data:    `{"nftables": [{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "comment": "banger vm=aaaa ip=172.16.0.2"}}]}`,
			wantErr: `rules of vm "aaaa" lack its ip or tap`,
		},
		{
			name:    "bad ip",
			data:    `{"nftables": [{"rule": {"family": "inet", "table": "banger_br-fc", "chain": "forward", "comment": "banger vm=aaaa ip=nope"}}]}`,
			wantErr: "bad ip",
		},
		{name: "not json", data: `table inet x {}`, wantErr: "parse nft listing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEntries([]byte(tt.data), "br-fc")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEntries: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzParseEntries checks that the parser never panics and that what it
// returns has an address and a TAP.
func FuzzParseEntries(f *testing.F) {
	f.Add(realListing)
	f.Add(`{"nftables": []}`)
	f.Add(`{"nftables": [{"rule": {"family": "inet", "table": "banger_br-fc", "comment": "banger vm="}}]}`)
	f.Fuzz(func(t *testing.T, data string) {
		got, err := parseEntries([]byte(data), "br-fc")
		if err != nil {
			return
		}
		for _, e := range got {
			if !e.IP.IsValid() || e.Tap == "" || e.VMID == "" {
				t.Errorf("parseEntries returned incomplete entry %+v", e)
			}
		}
	})
}

func TestTableNames(t *testing.T) {
	data := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "banger_br-fc", "handle": 2}}, {"table": {"family": "ip", "name": "filter", "handle": 3}}]}`
	got, err := tableNames([]byte(data))
	if err != nil {
		t.Fatalf("tableNames: %v", err)
	}
	want := [][2]string{{"inet", "banger_br-fc"}, {"ip", "filter"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
