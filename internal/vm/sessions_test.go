package vm

import (
	"net"
	"net/netip"
	"os"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"0100007F:0016", "127.0.0.1:22"},
		{"020010AC:1F90", "172.16.0.2:8080"},
		{"0000000000000000FFFF0000020010AC:0016", "[::ffff:172.16.0.2]:22"},
		{"00000000000000000000000001000000:0035", "[::1]:53"},
	}
	for _, tt := range tests {
		got, err := parseProcAddr(tt.in)
		if err != nil {
			t.Errorf("parseProcAddr(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("parseProcAddr(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:zz", "01007F:0016", "XX00007F:0016"} {
		if got, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q): got %s, want an error", bad, got)
		}
	}
}

func TestCountEstablished(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A28E 0100007F:1F90 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 010010AC:D6E2 020010AC:0016 01 00000000:00000000 02:000A7B2B 00000000     0        0 2 2 0000000000000000 20 4 30 10 -1
   2: 010010AC:D6E4 020010AC:0016 01 00000000:00000000 02:000A7B2B 00000000     0        0 3 2 0000000000000000 20 4 30 10 -1
   3: 010010AC:D6E6 020010AC:0016 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
   4: 010010AC:D6E8 030010AC:0016 01 00000000:00000000 02:000A7B2B 00000000     0        0 4 2 0000000000000000 20 4 30 10 -1
   5: 010010AC:D6EA 020010AC:0050 01 00000000:00000000 02:000A7B2B 00000000     0        0 5 2 0000000000000000 20 4 30 10 -1
`)
	table6 := []byte(`  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF0000010010AC:D6F0 0000000000000000FFFF0000020010AC:0016 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
`)
	guest := netip.MustParseAddrPort("172.16.0.2:22")
	for _, tt := range []struct {
		name  string
		table []byte
		want  int
	}{
		{"established only, to that address and port", table, 2},
		{"ipv4-mapped in tcp6", table6, 1},
		{"header only", []byte("  sl  local_address rem_address   st\n"), 0},
		{"empty", nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := countEstablished(tt.table, guest)
			if err != nil {
				t.Fatalf("countEstablished: %v", err)
			}
			if got != tt.want {
				t.Errorf("countEstablished: got %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCountEstablishedLive finds a real connection in this process's
// /proc/net/tcp.
func TestCountEstablishedLive(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	target := netip.MustParseAddrPort(ln.Addr().String())
	read := func() int {
		data, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Skipf("no /proc/net/tcp: %v", err)
		}
		n, err := countEstablished(data, target)
		if err != nil {
			t.Fatalf("countEstablished: %v", err)
		}
		return n
	}
	if got := read(); got != 0 {
		t.Fatalf("before connecting: got %d connections, want 0", got)
	}
	c, err := net.Dial("tcp4", target.String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 1 {
		t.Errorf("while connected: got %d connections to %s, want 1", got, target)
	}
	c.Close()
	s.Close()
}
