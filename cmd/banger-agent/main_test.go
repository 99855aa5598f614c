package main

import (
	"bytes"
	"flag"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"banger/internal/agent/guest"
)

// The agent goes into every image: it must stay small and static, so it
// pulls in none of the daemon's heavy dependencies, no netlink package
// (`banger-agent net` configures the NIC with socket ioctls) and no cgo.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to list the agent's dependencies")
	}
	cmd := exec.Command(goTool, "list", "-deps", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, banned := range []string{"sqlite", "netlink", "nftables", "github.com/spf13/cobra", "golang.org/x/crypto", "banger/internal/daemon", "banger/internal/vm", "runtime/cgo"} {
			if strings.Contains(dep, banned) {
				t.Errorf("banger-agent depends on %s, want none of %s", dep, banned)
			}
		}
	}
	if len(deps) < 10 {
		t.Errorf("got %d dependencies, want the real list", len(deps))
	}
}

func TestNetSummary(t *testing.T) {
	tests := []struct {
		name string
		nic  string
		cfg  guest.NetConfig
		want string
	}{
		{
			name: "everything",
			nic:  "eth0",
			cfg: guest.NetConfig{
				Addr:    netip.MustParsePrefix("172.16.0.5/24"),
				Gateway: netip.MustParseAddr("172.16.0.1"),
				DNS:     []netip.Addr{netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("198.51.100.53")},
				MAC:     net.HardwareAddr{2, 0, 0, 0, 0, 1},
			},
			want: "banger-agent net: eth0 172.16.0.5/24 gw 172.16.0.1 dns 172.16.0.1,198.51.100.53",
		},
		{
			name: "no gateway or dns",
			nic:  "enp0s2",
			cfg:  guest.NetConfig{Addr: netip.MustParsePrefix("198.51.100.7/24")},
			want: "banger-agent net: enp0s2 198.51.100.7/24 gw none dns none",
		},
		{
			name: "no address",
			cfg:  guest.NetConfig{Hostname: "demo"},
			want: "banger-agent net: no banger.ip on the kernel command line, interfaces left alone",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := netSummary(tt.nic, tt.cfg); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Only the argument errors: a successful run would configure this
// machine's own network.
func TestRunNetArgs(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStderr: "usage: banger-agent net"},
		{name: "extra argument", args: []string{"eth0"}, wantCode: 2, wantStderr: `unexpected argument "eth0"`},
		{name: "unknown flag", args: []string{"-serial", "x"}, wantCode: 2, wantStderr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := runNet(tt.args, &stdout, &stderr); got != tt.wantCode {
				t.Errorf("got exit code %d, want %d", got, tt.wantCode)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("got stderr %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("got stdout %q, want none", stdout.String())
			}
		})
	}
}

func TestUsageMentionsNet(t *testing.T) {
	var buf bytes.Buffer
	flag.CommandLine.SetOutput(&buf)
	t.Cleanup(func() { flag.CommandLine.SetOutput(nil) })
	usage()
	for _, want := range []string{"usage: banger-agent [flags]", "banger-agent net", "kernel command line"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("got usage %q, want it to mention %q", buf.String(), want)
		}
	}
}
