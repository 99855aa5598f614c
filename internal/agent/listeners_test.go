package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseHexAddrPort(t *testing.T) {
	tests := []struct {
		name, in string
		want     netip.Addr
		port     int
	}{
		{"ipv4 any ssh", "00000000:0016", netip.MustParseAddr("0.0.0.0"), 22},
		{"ipv4 loopback", "0100007F:1F90", netip.MustParseAddr("127.0.0.1"), 8080},
		{"ipv4 guest address", "0500A8C0:0035", netip.MustParseAddr("192.168.0.5"), 53},
		{"ipv6 any", "00000000000000000000000000000000:01BB", netip.MustParseAddr("::"), 443},
		{"ipv6 loopback", "00000000000000000000000001000000:0277", netip.MustParseAddr("::1"), 631},
		{"ipv6 v4-mapped", "0000000000000000FFFF00000100007F:1F90", netip.MustParseAddr("::ffff:127.0.0.1"), 8080},
		{"ipv6 global", "B80D0120000000000000000001000000:0050", netip.MustParseAddr("2001:db8::1"), 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, port, err := parseHexAddrPort(tt.in)
			if err != nil {
				t.Fatalf("parseHexAddrPort(%q): %v", tt.in, err)
			}
			if got != tt.want || port != tt.port {
				t.Errorf("got %s port %d, want %s port %d", got, port, tt.want, tt.port)
			}
		})
	}
	for _, bad := range []string{"", "0100007F", "0100007F:", "0100007G:0016", "01007F:0016", "0100007F:10000"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if _, _, err := parseHexAddrPort(bad); err == nil {
				t.Errorf("parseHexAddrPort(%q): got no error, want one", bad)
			}
		})
	}
}

const (
	tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	udpHeader = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
)

// writeProcFixture builds a small procfs tree: sshd (pid 100) listens on
// 0.0.0.0:22 and [::]:22, a web server (pid 200, also shared by its child
// 201) on 127.0.0.1:8080 with SO_REUSEPORT twice, dnsmasq (pid 300) on
// udp 0.0.0.0:53 and [::1]:53; an established TCP connection, a connected
// UDP socket and a listener with no process (inode 999) round it off.
func writeProcFixture(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"net/tcp": tcpHeader +
			"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0\n" +
			"   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0\n" +
			"   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0\n" +
			"   3: 0500A8C0:0016 0100A8C0:D431 01 00000000:00000000 02:00091AE2 00000000     0        0 1005 4 0000000000000000 20 4 30 10 -1\n" +
			"   4: 00000000:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 100 0 0 10 0\n",
		"net/tcp6": tcpHeader +
			"   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0\n",
		"net/udp": udpHeader +
			" 1234: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0\n" +
			" 1235: 0500A8C0:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 3009 2 0000000000000000 0\n" +
			" 1236: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3010 2 0000000000000000 0\n",
		"net/udp6": udpHeader +
			" 1234: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0\n",
		"100/comm": "sshd\n",
		"200/comm": "web-server\n",
		"201/comm": "web-worker\n",
		"300/comm": "dnsmasq\n",
		"1/comm":   "systemd\n",
	}
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"1/fd/0":   "/dev/null",
		"1/fd/5":   "socket:[77]",
		"100/fd/0": "/dev/null",
		"100/fd/3": "socket:[1001]",
		"100/fd/4": "socket:[1002]",
		"100/fd/5": "socket:[1005]",
		"200/fd/7": "socket:[2001]",
		"200/fd/8": "socket:[2002]",
		"201/fd/7": "socket:[2001]",
		"300/fd/4": "socket:[3001]",
		"300/fd/5": "socket:[3002]",
		"300/fd/6": "pipe:[3001]",
	}
	for name, target := range links {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	// Not processes.
	for _, d := range []string{"self", "sys", "0"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	return root
}

func TestReadListeners(t *testing.T) {
	root := writeProcFixture(t)
	got, err := ReadListeners(t.Context(), root)
	if err != nil {
		t.Fatalf("ReadListeners: %v", err)
	}
	want := []Listener{
		{Proto: "tcp", Address: "0.0.0.0", Port: 22, PID: 100, Process: "sshd"},
		{Proto: "tcp", Address: "::", Port: 22, PID: 100, Process: "sshd"},
		{Proto: "tcp", Address: "127.0.0.1", Port: 8080, PID: 200, Process: "web-server"},
		{Proto: "tcp", Address: "0.0.0.0", Port: 9090},
		{Proto: "udp", Address: "0.0.0.0", Port: 53, PID: 300, Process: "dnsmasq"},
		{Proto: "udp", Address: "::1", Port: 53, PID: 300, Process: "dnsmasq"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got listeners\n%+v\nwant\n%+v", got, want)
	}

	t.Run("no ipv6 tables", func(t *testing.T) {
		os.Remove(filepath.Join(root, "net/tcp6"))
		os.Remove(filepath.Join(root, "net/udp6"))
		got, err := ReadListeners(t.Context(), root)
		if err != nil {
			t.Fatalf("ReadListeners: %v", err)
		}
		if len(got) != 4 {
			t.Errorf("got %d listeners, want 4 (IPv4 only): %+v", len(got), got)
		}
	})
	t.Run("bad table", func(t *testing.T) {
		os.WriteFile(filepath.Join(root, "net/tcp"), []byte(tcpHeader+"   0: zz:0016 00000000:0000 0A 0:0 0:0 0 0 0 1 1\n"), 0o644)
		if _, err := ReadListeners(t.Context(), root); err == nil {
			t.Error("got no error for a corrupt net/tcp, want one")
		}
	})
	t.Run("no proc", func(t *testing.T) {
		got, err := ReadListeners(t.Context(), filepath.Join(root, "missing"))
		if err != nil || len(got) != 0 {
			t.Errorf("got %+v, %v, want no listeners and no error", got, err)
		}
	})
}

func TestReadListenersLiveProc(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp: needs Linux procfs")
	}
	if _, err := ReadListeners(t.Context(), "/proc"); err != nil {
		t.Fatalf("ReadListeners(/proc): %v", err)
	}
}

func TestSocketInode(t *testing.T) {
	tests := []struct {
		link string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[12]", 0, false},
		{"/dev/null", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.link, func(t *testing.T) {
			got, ok := socketInode(tt.link)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %d %v, want %d %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestReadHealth(t *testing.T) {
	root := t.TempDir()
	for name, text := range map[string]string{
		"uptime":               "1234.56 2000.00\n",
		"loadavg":              "0.50 0.25 0.10 1/80 321\n",
		"meminfo":              "MemTotal:        2000000 kB\nMemFree:          100 kB\nMemAvailable:    1500000 kB\n",
		"sys/kernel/hostname":  "demo\n",
		"sys/kernel/osrelease": "6.1.0-42-amd64\n",
	} {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadHealth(root)
	if err != nil {
		t.Fatalf("ReadHealth: %v", err)
	}
	want := Health{
		Version: Version, Protocol: ProtocolVersion, Hostname: "demo", Kernel: "6.1.0-42-amd64",
		UptimeSeconds: 1234.56, LoadAvg: [3]float64{0.5, 0.25, 0.1},
		MemTotalBytes: 2000000 << 10, MemAvailableBytes: 1500000 << 10,
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	t.Run("no uptime", func(t *testing.T) {
		os.Remove(filepath.Join(root, "uptime"))
		if _, err := ReadHealth(root); err == nil {
			t.Error("got no error without uptime, want one")
		}
	})
}
