package guest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

func TestParseCmdline(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0xab, 0xcd, 0xef, 0x01, 0x23}
	tests := []struct {
		name    string
		cmdline string
		want    NetConfig
		wantErr []string // substrings of the error; nil: no error
	}{
		{
			name: "all parameters",
			cmdline: "console=ttyS0 root=/dev/vda rw banger.ip=172.16.0.5/24 banger.gw=172.16.0.1 " +
				"banger.dns=172.16.0.1,198.51.100.53 banger.hostname=demo banger.mac=02:ab:cd:ef:01:23 quiet\n",
			want: NetConfig{
				Addr:     netip.MustParsePrefix("172.16.0.5/24"),
				Gateway:  netip.MustParseAddr("172.16.0.1"),
				DNS:      []netip.Addr{netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("198.51.100.53")},
				Hostname: "demo",
				MAC:      mac,
			},
		},
		{name: "empty", cmdline: "", want: NetConfig{}},
		{name: "no banger parameters", cmdline: "console=ttyS0 panic=-1 ip=dhcp init=/sbin/init", want: NetConfig{}},
		{
			name:    "address only",
			cmdline: "banger.ip=198.51.100.7/25",
			want:    NetConfig{Addr: netip.MustParsePrefix("198.51.100.7/25")},
		},
		{
			name:    "hostname and dns only",
			cmdline: "banger.hostname=web-1 banger.dns=198.51.100.53",
			want:    NetConfig{Hostname: "web-1", DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}},
		},
		{name: "uppercase mac", cmdline: "banger.mac=02:AB:CD:EF:01:23", want: NetConfig{MAC: mac}},
		{name: "empty values are absent", cmdline: "banger.ip= banger.gw= banger.dns= banger.hostname= banger.mac=", want: NetConfig{}},
		{name: "last value wins", cmdline: "banger.ip=bad banger.ip=172.16.0.9/24", want: NetConfig{Addr: netip.MustParsePrefix("172.16.0.9/24")}},
		{name: "empty dns entries skipped", cmdline: "banger.dns=,198.51.100.53,", want: NetConfig{DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53")}}},
		{name: "ipv6 dns", cmdline: "banger.dns=2001:db8::53", want: NetConfig{DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53")}}},
		{
			name:    "unrelated look-alikes ignored",
			cmdline: "bangerip=1 banger.other=x xbanger.ip=1.2.3.4/8 banger.ip",
			want:    NetConfig{},
		},
		{name: "bad ip", cmdline: "banger.ip=172.16.0.300/24", wantErr: []string{"banger.ip", "172.16.0.300/24"}},
		{name: "ip without prefix", cmdline: "banger.ip=172.16.0.5", wantErr: []string{"banger.ip"}},
		{name: "bad prefix length", cmdline: "banger.ip=172.16.0.5/33", wantErr: []string{"banger.ip", "/33"}},
		{name: "ipv6 ip", cmdline: "banger.ip=2001:db8::5/64", wantErr: []string{"banger.ip", "IPv4"}},
		{name: "bad gateway", cmdline: "banger.gw=172.16.0", wantErr: []string{"banger.gw"}},
		{name: "gateway with prefix", cmdline: "banger.gw=172.16.0.1/24", wantErr: []string{"banger.gw"}},
		{name: "bad mac", cmdline: "banger.mac=02:ab:cd:ef:01", wantErr: []string{"banger.mac"}},
		{name: "mac not hex", cmdline: "banger.mac=02:ab:cd:ef:01:zz", wantErr: []string{"banger.mac"}},
		{name: "long mac", cmdline: "banger.mac=02:ab:cd:ef:01:23:45:67", wantErr: []string{"banger.mac"}},
		{name: "bad dns", cmdline: "banger.dns=198.51.100.53,dns.example", wantErr: []string{"banger.dns", `"dns.example"`}},
		{name: "bad hostname", cmdline: "banger.hostname=demo_1", wantErr: []string{"banger.hostname", `'_'`}},
		{name: "long hostname", cmdline: "banger.hostname=" + strings.Repeat("a", 65), wantErr: []string{"banger.hostname", "65 characters"}},
		{
			name:    "every bad parameter reported",
			cmdline: "banger.ip=x banger.gw=y banger.mac=z banger.dns=w",
			wantErr: []string{"banger.ip", "banger.gw", "banger.mac", "banger.dns"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.cmdline)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseCmdline(%q) = %+v, want an error", tt.cmdline, got)
				}
				if !errdefs.IsInvalid(err) {
					t.Errorf("got error %v, want one marked invalid", err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("got error %q, want it to mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCmdline(%q): %v", tt.cmdline, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("banger.ip=172.16.0.5/24 banger.gw=172.16.0.1 banger.dns=172.16.0.1 banger.hostname=demo banger.mac=02:ab:cd:ef:01:23")
	f.Add("banger.dns=,, banger.ip=/ banger.mac=")
	f.Fuzz(func(t *testing.T, cmdline string) {
		cfg, err := ParseCmdline(cmdline)
		if err != nil {
			if !errdefs.IsInvalid(err) {
				t.Errorf("got error %v, want one marked invalid", err)
			}
			return
		}
		if cfg.Addr.IsValid() && !cfg.Addr.Addr().Is4() {
			t.Errorf("got address %s, want IPv4", cfg.Addr)
		}
		if cfg.Gateway.IsValid() && !cfg.Gateway.Is4() {
			t.Errorf("got gateway %s, want IPv4", cfg.Gateway)
		}
		if cfg.MAC != nil && len(cfg.MAC) != 6 {
			t.Errorf("got MAC %s, want 6 bytes", cfg.MAC)
		}
		if strings.ContainsAny(cfg.Hostname, " \t\n/") || len(cfg.Hostname) > maxHostname {
			t.Errorf("got hostname %q, want a valid one", cfg.Hostname)
		}
	})
}

func TestPickNIC(t *testing.T) {
	iface := func(name, mac string) net.Interface {
		hw, _ := net.ParseMAC(mac)
		return net.Interface{Name: name, HardwareAddr: hw}
	}
	lo := net.Interface{Name: "lo", HardwareAddr: make(net.HardwareAddr, 6)}
	eth0 := iface("eth0", "02:00:00:00:00:01")
	eth1 := iface("eth1", "02:00:00:00:00:02")
	mac2, _ := net.ParseMAC("02:00:00:00:00:02")
	other, _ := net.ParseMAC("02:00:00:00:00:99")
	tests := []struct {
		name    string
		ifaces  []net.Interface
		mac     net.HardwareAddr
		anyLink bool
		want    string // "" : none yet
	}{
		{name: "mac match", ifaces: []net.Interface{lo, eth0, eth1}, mac: mac2, want: "eth1"},
		{name: "mac match beats fallback", ifaces: []net.Interface{lo, eth0, eth1}, mac: mac2, anyLink: true, want: "eth1"},
		{name: "mac absent waits", ifaces: []net.Interface{lo, eth0, eth1}, mac: other, want: ""},
		{name: "mac absent after wait takes first", ifaces: []net.Interface{lo, eth1, eth0}, mac: other, anyLink: true, want: "eth0"},
		{name: "no mac takes first by name", ifaces: []net.Interface{eth1, lo, eth0}, want: "eth0"},
		{name: "only lo", ifaces: []net.Interface{lo}, anyLink: true, want: ""},
		{name: "only lo with mac of lo", ifaces: []net.Interface{lo}, mac: make(net.HardwareAddr, 6), anyLink: true, want: ""},
		{name: "no interfaces", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pickNIC(tt.ifaces, tt.mac, tt.anyLink); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// The offsets of include/uapi/linux/route.h's struct rtentry on LP64
// (linux/amd64, linux/arm64), as a C compiler lays it out.
func TestRtentryLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the expected offsets are those of a 64-bit (LP64) kernel ABI")
	}
	var rt rtentry
	tests := []struct {
		field     string
		got, want uintptr
	}{
		{"rt_dst", unsafe.Offsetof(rt.dst), 8},
		{"rt_gateway", unsafe.Offsetof(rt.gateway), 24},
		{"rt_genmask", unsafe.Offsetof(rt.genmask), 40},
		{"rt_flags", unsafe.Offsetof(rt.flags), 56},
		{"rt_metric", unsafe.Offsetof(rt.metric), 80},
		{"rt_dev", unsafe.Offsetof(rt.dev), 88},
		{"rt_mtu", unsafe.Offsetof(rt.mtu), 96},
		{"rt_window", unsafe.Offsetof(rt.window), 104},
		{"rt_irtt", unsafe.Offsetof(rt.irtt), 112},
		{"sizeof(struct rtentry)", unsafe.Sizeof(rt), 120},
		{"sizeof(struct ifreq)", uintptr(ifreqSize), 40},
		{"sizeof(struct ifconf)", unsafe.Sizeof(ifconf{}), 16},
		{"ifc_buf", unsafe.Offsetof(ifconf{}.buf), 8},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %d, want %d", tt.got, tt.want)
			}
		})
	}
}

func TestIfconfLabels(t *testing.T) {
	// entries builds a SIOCGIFCONF answer: one struct ifreq per label.
	entries := func(labels ...string) []byte {
		var buf []byte
		for _, l := range labels {
			e := make([]byte, ifreqSize)
			copy(e, l)
			binary.NativeEndian.PutUint16(e[unix.IFNAMSIZ:], unix.AF_INET)
			copy(e[unix.IFNAMSIZ+4:], []byte{198, 51, 100, 7})
			buf = append(buf, e...)
		}
		return buf
	}
	tests := []struct {
		name string
		buf  []byte
		want []string
	}{
		{name: "empty", buf: nil, want: nil},
		{name: "only lo", buf: entries("lo"), want: nil},
		{
			name: "addresses and aliases of eth0",
			buf:  entries("lo", "eth0", "eth0", "eth0:1", "eth1", "eth10", "eth0x"),
			want: []string{"eth0", "eth0", "eth0:1"},
		},
		{name: "fifteen-character name", buf: entries("abcdefghijklmno"), want: nil},
		{name: "trailing partial entry ignored", buf: append(entries("eth0"), 'e', 't', 'h', '0'), want: []string{"eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ifconfLabels(tt.buf, "eth0"); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHostsWithName(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "missing file", in: "", want: "127.0.1.1\tdemo\n"},
		{
			name: "append",
			in:   "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
			want: "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tdemo\n",
		},
		{
			name: "append after a last line without newline",
			in:   "127.0.0.1 localhost",
			want: "127.0.0.1 localhost\n127.0.1.1\tdemo\n",
		},
		{
			name: "replace",
			in:   "127.0.0.1\tlocalhost\n127.0.1.1\told old.example\n::1\tlocalhost\n",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\tdemo\n::1\tlocalhost\n",
		},
		{
			name: "replace every line, space separated, last without newline",
			in:   "127.0.1.1 a\n# 127.0.1.1 comment\n127.0.1.1  b",
			want: "127.0.1.1\tdemo\n# 127.0.1.1 comment\n127.0.1.1\tdemo",
		},
		{
			name: "look-alikes are not the line",
			in:   "127.0.1.10\tx\n127.0.1.1\n",
			want: "127.0.1.10\tx\n127.0.1.1\n127.0.1.1\tdemo\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(hostsWithName([]byte(tt.in), "demo")); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// The file steps need no privilege: check them on a temporary root.
func TestWriteEtcFiles(t *testing.T) {
	dns := []netip.Addr{netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("198.51.100.53")}
	const wantResolv = "nameserver 172.16.0.1\nnameserver 198.51.100.53\n"
	tests := []struct {
		name  string
		setup func(t *testing.T, etc string)
	}{
		{name: "no files", setup: func(*testing.T, string) {}},
		{name: "regular files", setup: func(t *testing.T, etc string) {
			writeTestFile(t, filepath.Join(etc, "hostname"), "old\n")
			writeTestFile(t, filepath.Join(etc, "hosts"), "127.0.1.1\told\n")
			writeTestFile(t, filepath.Join(etc, "resolv.conf"), "nameserver 198.51.100.1\n")
		}},
		{name: "dangling resolv.conf symlink", setup: func(t *testing.T, etc string) {
			if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(etc, "resolv.conf")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			etc := filepath.Join(root, "etc")
			if err := os.Mkdir(etc, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, etc)
			if err := writeHostname(root, "demo"); err != nil {
				t.Fatalf("writeHostname: %v", err)
			}
			if err := writeResolvConf(root, dns); err != nil {
				t.Fatalf("writeResolvConf: %v", err)
			}
			checkTestFile(t, filepath.Join(etc, "hostname"), "demo\n")
			checkTestFile(t, filepath.Join(etc, "hosts"), "127.0.1.1\tdemo\n")
			checkTestFile(t, filepath.Join(etc, "resolv.conf"), wantResolv)
			if fi, err := os.Lstat(filepath.Join(etc, "resolv.conf")); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("resolv.conf: got %v (err %v), want a regular file", fi.Mode(), err)
			}
		})
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkTestFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if string(got) != want {
		t.Errorf("%s: got %q, want %q", filepath.Base(path), got, want)
	}
}
