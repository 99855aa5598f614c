//go:build integration

package nat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the test topology. 198.51.100.0/24 (TEST-NET-2) stands in
// for the world behind the host's uplink; it lives in namespace U only.
const (
	bridgeName = "bgt-br"
	bridgeCIDR = "10.77.0.1/24"
	uplinkHost = "198.51.100.2"
	worldAddr  = "198.51.100.1"
)

var testSubnet = netip.MustParsePrefix("10.77.0.0/24")

// guest is a stand-in guest: a namespace whose eth0 is a veth whose
// other end, named port, is a port of the bridge in the host namespace.
// A veth forwards like a TAP, and needs no process behind it.
type guest struct {
	ns   string
	port string
	ip   netip.Addr
	mac  string
}

// topology is the host namespace h with a bridge and an uplink veth to
// namespace u, which holds worldAddr and has no route back to the bridge
// subnet, and two guests on the bridge with isolated ports.
type topology struct {
	h, u   string
	g1, g2 guest
}

// newTopology builds the namespaces and removes them when the test ends,
// whatever happened. It skips unless run as root with ip and nft.
func newTopology(t *testing.T) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and nftables: run `sudo go test -tags integration ./internal/nat/`")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s in PATH (install iproute2 and nftables)", tool)
		}
	}
	watchRootNamespace(t)
	suffix := randHex(t, 3)
	top := &topology{h: "bgtnat-" + suffix + "-h", u: "bgtnat-" + suffix + "-u"}
	top.g1 = guest{ns: "bgtnat-" + suffix + "-g1", port: "bgrt1", ip: netip.MustParseAddr("10.77.0.2")}
	top.g2 = guest{ns: "bgtnat-" + suffix + "-g2", port: "bgrt2", ip: netip.MustParseAddr("10.77.0.3")}
	for _, ns := range []string{top.h, top.u, top.g1.ns, top.g2.ns} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("remove namespace %s: %v: %s", ns, err, out)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", top.h, "link", "add", bridgeName, "type", "bridge")
	ipCmd(t, "-n", top.h, "addr", "add", bridgeCIDR, "dev", bridgeName)
	ipCmd(t, "-n", top.h, "link", "set", bridgeName, "up")
	ipCmd(t, "-n", top.h, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", top.u)
	ipCmd(t, "-n", top.h, "addr", "add", uplinkHost+"/24", "dev", "uplink")
	ipCmd(t, "-n", top.h, "link", "set", "uplink", "up")
	ipCmd(t, "-n", top.u, "addr", "add", worldAddr+"/24", "dev", "eth0")
	ipCmd(t, "-n", top.u, "link", "set", "eth0", "up")
	for _, g := range []*guest{&top.g1, &top.g2} {
		ipCmd(t, "-n", top.h, "link", "add", g.port, "type", "veth", "peer", "name", "eth0", "netns", g.ns)
		ipCmd(t, "-n", top.h, "link", "set", g.port, "master", bridgeName)
		ipCmd(t, "-n", top.h, "link", "set", g.port, "type", "bridge_slave", "isolated", "on")
		ipCmd(t, "-n", top.h, "link", "set", g.port, "up")
		ipCmd(t, "-n", g.ns, "addr", "add", g.ip.String()+"/24", "dev", "eth0")
		ipCmd(t, "-n", g.ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", g.ns, "route", "add", "default", "via", "10.77.0.1")
		err := inNS(g.ns, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err == nil {
				g.mac = ifi.HardwareAddr.String()
			}
			return err
		})
		if err != nil {
			t.Fatalf("read mac of %s: %v", g.ns, err)
		}
	}
	// Nothing forwards until the code under test says so.
	top.setForward(t, "0")
	return top
}

// watchRootNamespace checks, after the test, that the root namespace's
// ruleset and forwarding switch are as they were.
func watchRootNamespace(t *testing.T) {
	t.Helper()
	rulesBefore := run(t, "nft", "list", "ruleset")
	fwdBefore := readFile(t, "/proc/sys/net/ipv4/ip_forward")
	t.Cleanup(func() {
		if got := run(t, "nft", "list", "ruleset"); got != rulesBefore {
			t.Errorf("root namespace ruleset changed:\nbefore:\n%s\nafter:\n%s", rulesBefore, got)
		}
		if got := readFile(t, "/proc/sys/net/ipv4/ip_forward"); got != fwdBefore {
			t.Errorf("root namespace ip_forward changed from %q to %q", fwdBefore, got)
		}
	})
}

func (top *topology) config(t *testing.T, guestToGuest bool) Config {
	return Config{Bridge: bridgeName, Subnet: testSubnet, GuestToGuest: guestToGuest, StateFile: t.TempDir() + "/nat-ip-forward"}
}

func (g guest) entry(vmID string) Entry {
	return Entry{VMID: vmID, IP: g.ip, Tap: g.port, MAC: g.mac}
}

// do runs fn in the host namespace h and fails the test on error.
func (top *topology) do(t *testing.T, what string, fn func() error) {
	t.Helper()
	if err := inNS(top.h, fn); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (top *topology) forward(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(run(t, "ip", "netns", "exec", top.h, "cat", "/proc/sys/net/ipv4/ip_forward"))
}

func (top *topology) setForward(t *testing.T, v string) {
	t.Helper()
	run(t, "ip", "netns", "exec", top.h, "sh", "-c", "echo "+v+" > /proc/sys/net/ipv4/ip_forward")
}

func (top *topology) ruleset(t *testing.T) string {
	t.Helper()
	return run(t, "ip", "netns", "exec", top.h, "nft", "list", "ruleset")
}

// inNS runs fn on a goroutine whose thread joined the named namespace.
// The thread stays locked, so it ends with the goroutine and never goes
// back to the runtime's pool in the wrong namespace.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dial opens a TCP connection from namespace ns to addr and closes it.
func dial(ns, addr string, timeout time.Duration) error {
	return inNS(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// listenTCP listens in namespace ns and accepts and closes connections
// until the test ends.
func listenTCP(t *testing.T, ns, addr string) {
	t.Helper()
	var l net.Listener
	if err := inNS(ns, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// udpSink receives datagrams in namespace ns and reports their payload
// and source address.
type udpSink struct {
	got chan [2]string
}

func listenUDP(t *testing.T, ns, addr string) *udpSink {
	t.Helper()
	var c net.PacketConn
	if err := inNS(ns, func() (err error) {
		c, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen udp on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &udpSink{got: make(chan [2]string, 64)}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			s.got <- [2]string{string(buf[:n]), host}
		}
	}()
	return s
}

// wait returns the source address of the datagram carrying payload, or
// "" if none came within timeout.
func (s *udpSink) wait(payload string, timeout time.Duration) string {
	deadline := time.After(timeout)
	for {
		select {
		case d := <-s.got:
			if d[0] == payload {
				return d[1]
			}
		case <-deadline:
			return ""
		}
	}
}

// sendUDP sends payload from namespace ns to addr, from source address
// src when it is valid: a foreign address, sent with IP_TRANSPARENT.
func sendUDP(t *testing.T, ns string, src netip.Addr, addr, payload string) {
	t.Helper()
	err := inNS(ns, func() error {
		d := net.Dialer{}
		if src.IsValid() {
			d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		c, err := d.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
	if err != nil {
		t.Fatalf("send udp from %s: %v", ns, err)
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	run(t, "ip", args...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(data))
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
