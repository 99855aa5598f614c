//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uplink gives the env's namespace (the "host") a veth pair to a second
// namespace standing in for the internet: it holds 198.51.100.1/24 and
// no route back to the guests' subnet, so only masqueraded traffic can
// be answered. It returns the address of a TCP service there that
// greets each connection with "uplink-ok".
func (e *env) uplink() string {
	e.t.Helper()
	up := e.netns + "-up"
	run := func(args ...string) {
		e.t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			e.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", up)
	e.t.Cleanup(func() { exec.Command("ip", "netns", "del", up).Run() })
	run("ip", "-n", up, "link", "set", "lo", "up")
	run("ip", "-n", e.netns, "link", "add", "upl0", "type", "veth", "peer", "name", "upl1", "netns", up)
	run("ip", "-n", e.netns, "addr", "add", "198.51.100.2/24", "dev", "upl0")
	run("ip", "-n", e.netns, "link", "set", "upl0", "up")
	run("ip", "-n", up, "addr", "add", "198.51.100.1/24", "dev", "upl1")
	run("ip", "-n", up, "link", "set", "upl1", "up")
	return e.serveGreeting(up, "198.51.100.1:0", "uplink-ok")
}

// listenIn listens on TCP addr in namespace ns; the listener closes
// with the test.
func (e *env) listenIn(ns, addr string) net.Listener {
	e.t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		e.t.Fatalf("listen in %s: %v", ns, err)
	}
	e.t.Cleanup(func() { ln.Close() })
	return ln
}

// serveGreeting listens on addr in namespace ns and writes greeting to
// every connection.
func (e *env) serveGreeting(ns, addr, greeting string) string {
	e.t.Helper()
	ln := e.listenIn(ns, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, greeting)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// reach reports whether a TCP connection from the guest of vm to addr
// gets its greeting within 4 s.
func (e *env) reach(vm, addr, greeting string) bool {
	host, port, _ := net.SplitHostPort(addr)
	script := fmt.Sprintf("import socket; s = socket.create_connection(('%s', %s), 4); print(s.recv(64).decode().strip())", host, port)
	r := e.banger("vm", "exec", vm, "--", "python3", "-c", script)
	return r.code == 0 && strings.TrimSpace(r.stdout) == greeting
}

// nftRuleset is `nft list ruleset` in the env's namespace.
func (e *env) nftRuleset() string {
	e.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", e.netns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		e.t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// ipForward is net.ipv4.ip_forward in the env's namespace.
func (e *env) ipForward() string {
	e.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", e.netns, "cat", "/proc/sys/net/ipv4/ip_forward").CombinedOutput()
	if err != nil {
		e.t.Fatalf("read ip_forward: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestNATAndIsolation checks per-VM NAT and guest isolation with real
// guests: only a NAT guest reaches an address behind the host's uplink,
// vm set --nat/--no-nat acts on a running guest, guests cannot reach
// each other but can reach the host, forwarding is on only while a NAT
// guest runs, and no rule outlives its VM, after delete or after a
// daemon crash and reconcile.
func TestNATAndIsolation(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	target := e.uplink()
	if got := e.ipForward(); got != "0" {
		t.Fatalf("ip_forward in a new namespace: got %s, want 0", got)
	}

	e.ok("vm", "run", "-d", "--name", "out", "--nat")
	e.ok("vm", "run", "-d", "--name", "in")
	out, in := e.vm("out"), e.vm("in")
	if !out.Spec.NATEnabled || in.Spec.NATEnabled {
		t.Fatalf("nat on the records: got out=%v in=%v, want true, false", out.Spec.NATEnabled, in.Spec.NATEnabled)
	}
	if got := e.ipForward(); got != "1" {
		t.Errorf("ip_forward with a nat guest running: got %s, want 1", got)
	}
	if !e.reach("out", target, "uplink-ok") {
		t.Errorf("nat guest: cannot reach %s behind the uplink", target)
	}
	if e.reach("in", target, "uplink-ok") {
		t.Errorf("guest without nat: reached %s behind the uplink", target)
	}
	rules := e.nftRuleset()
	if !strings.Contains(rules, out.Runtime.GuestIP+" masquerade") || strings.Contains(rules, in.Runtime.GuestIP+" masquerade") {
		t.Errorf("ruleset: want a masquerade for %s only, got\n%s", out.Runtime.GuestIP, rules)
	}

	// Live on a running guest.
	e.ok("vm", "set", "in", "--nat")
	if !e.reach("in", target, "uplink-ok") {
		t.Errorf("after vm set --nat: cannot reach %s", target)
	}
	e.ok("vm", "set", "in", "--no-nat")
	if e.reach("in", target, "uplink-ok") {
		t.Errorf("after vm set --no-nat: still reaches %s", target)
	}

	// Isolation: no guest reaches another one, both reach the host.
	if sshBanner(e, "out", in.Runtime.GuestIP) {
		t.Errorf("guest to guest: out reached in's sshd, want bridge port isolation to stop it")
	}
	hostSvc := e.serveGreeting(e.netns, "172.16.0.1:0", "host-ok")
	for _, vm := range []string{"out", "in"} {
		if !e.reach(vm, hostSvc, "host-ok") {
			t.Errorf("guest %s: cannot reach the host at %s", vm, hostSvc)
		}
	}

	// Guests resolve .vm names at the host's bridge address.
	if got := guestLookup(e, "in", "out.vm"); got != out.Runtime.GuestIP {
		t.Errorf("guest in asking 172.16.0.1:42069 for out.vm: got %q, want %s", got, out.Runtime.GuestIP)
	}

	// Delete: its rules go; with no nat guest left, forwarding is off.
	e.ok("vm", "delete", "out")
	rules = e.nftRuleset()
	if strings.Contains(rules, out.Runtime.GuestIP) || strings.Contains(rules, out.ID) {
		t.Errorf("after deleting out: ruleset still names it:\n%s", rules)
	}
	if got := e.ipForward(); got != "0" {
		t.Errorf("ip_forward with no nat guest: got %s, want 0 (as before)", got)
	}

	// A daemon crash while a nat guest runs, then its VMM dies too:
	// reconcile drops the rules of the guest that is gone.
	e.ok("vm", "set", "in", "--nat")
	if !strings.Contains(e.nftRuleset(), in.Runtime.GuestIP+" masquerade") {
		t.Fatalf("vm set --nat: no masquerade for %s", in.Runtime.GuestIP)
	}
	killPID(e.daemonPID())
	e.waitDaemonGone(t)
	for _, pid := range e.qemuPIDs() {
		killPID(pid)
		waitGone(t, pid)
	}
	if got := e.vm("in").State; got != "stopped" {
		t.Errorf("after crash and reconcile: in is %s, want stopped", got)
	}
	rules = e.nftRuleset()
	if strings.Contains(rules, in.Runtime.GuestIP) || strings.Contains(rules, in.ID) {
		t.Errorf("after crash and reconcile: ruleset still names in:\n%s", rules)
	}
	if got := e.ipForward(); got != "0" {
		t.Errorf("ip_forward after reconcile: got %s, want 0", got)
	}
	e.ok("vm", "delete", "in")
	e.assertClean("after delete")
}

// guestLookup asks, from the guest of vm, the .vm DNS server on the
// bridge address for name's A record, and returns the address or the
// failure as text.
func guestLookup(e *env, vm, name string) string {
	script := `import socket, struct, sys
name = sys.argv[1]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
for attempt in range(5):
    try:
        s.sendto(q, ("172.16.0.1", 42069))
        r = s.recv(512)
        break
    except socket.timeout:
        continue
else:
    sys.exit("no answer")
if r[3] & 0xF != 0 or struct.unpack(">H", r[6:8])[0] != 1:
    sys.exit("rcode %d, %d answers" % (r[3] & 0xF, struct.unpack(">H", r[6:8])[0]))
print(".".join(str(b) for b in r[-4:]))
`
	r := e.banger("vm", "exec", vm, "--", "python3", "-c", script, name)
	if r.code != 0 {
		return strings.TrimSpace(r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// sshBanner reports whether the guest of vm gets an SSH banner from
// ip:22 within 4 s.
func sshBanner(e *env, vm, ip string) bool {
	script := fmt.Sprintf("import socket; s = socket.create_connection(('%s', 22), 4); print(s.recv(64).decode().strip())", ip)
	r := e.banger("vm", "exec", vm, "--", "python3", "-c", script)
	return r.code == 0 && strings.HasPrefix(strings.TrimSpace(r.stdout), "SSH-")
}

// TestTapPool checks that with tap_pool_size the daemon keeps TAPs ready,
// a start takes one, and none is left behind after the daemon stops.
func TestTapPool(t *testing.T) {
	e := newEnv(t)
	if err := os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("tap_pool_size = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ensureImage() // starts the daemon
	waitFor(t, "two pooled taps", func() bool { return len(e.taps()) == 2 })
	pooled := e.taps()
	e.ok("vm", "run", "-d", "--name", "pooled")
	tap := e.vm("pooled").Runtime.TapDevice
	if tap != pooled[0] && tap != pooled[1] {
		t.Errorf("vm tap: got %s, want one of the pooled %v", tap, pooled)
	}
	waitFor(t, "the pool refilled", func() bool { return len(e.taps()) == 3 })
	e.ok("vm", "delete", "pooled")
	e.ok("daemon", "stop")
	if taps := e.taps(); len(taps) != 0 {
		t.Errorf("after daemon stop: taps left %v, want the pool removed", taps)
	}
	// Not assertClean: asking for the VM list would start a daemon, and
	// with it a new pool.
	if dirs := e.vmDirs(); len(dirs) != 0 {
		t.Errorf("after delete: vm directories left: %v", dirs)
	}
	if pids := e.qemuPIDs(); len(pids) != 0 {
		t.Errorf("after delete: qemu processes left: %v", pids)
	}
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkStartTapPool times vm start (CLI to SSH ready) of one VM with
// a cold TAP path (tap_pool_size = 0: the start creates its TAP) and a
// warm one (tap_pool_size = 2: the start takes a pooled TAP), and the
// start pipeline's tap step alone, read from the daemon's debug log.
//
//	go test -tags e2e -run '^$' -bench StartTapPool -benchtime 3x ./test/e2e/
func BenchmarkStartTapPool(b *testing.B) {
	e := newEnv(b)
	config := func(pool int) {
		if err := os.WriteFile(filepath.Join(e.home, "config.toml"), []byte(fmt.Sprintf("log_level = \"debug\"\ntap_pool_size = %d\n", pool)), 0o644); err != nil {
			b.Fatal(err)
		}
		e.ok("daemon", "stop")
	}
	config(0)
	e.ensureImage()
	e.ok("vm", "create", "--no-start", "--name", "tp")
	for _, c := range []struct {
		name string
		pool int
	}{{"cold", 0}, {"warm", 2}} {
		config(c.pool)
		e.ok("vm", "list") // the daemon starts and, when warm, fills its pool
		if c.pool > 0 {
			deadline := time.Now().Add(20 * time.Second)
			for len(e.taps()) < c.pool && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
		}
		var total, tap []time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			e.ok("vm", "start", "tp")
			total = append(total, time.Since(start))
			tap = append(tap, e.lastStep("tap"))
			e.ok("vm", "stop", "tp")
			if c.pool > 0 { // let the refill finish, as between real starts
				time.Sleep(time.Second)
			}
		}
		b.ReportMetric(median(total).Seconds(), c.name+"-start-s")
		b.ReportMetric(float64(median(tap).Microseconds()), c.name+"-tap-us")
		b.Logf("%s: start %v, tap step %v", c.name, total, tap)
	}
	e.ok("vm", "delete", "tp")
}

// lastStep reads the duration of the last run of a start step from the
// daemon's debug log.
func (e *env) lastStep(name string) time.Duration {
	data, err := os.ReadFile(filepath.Join(e.home, "logs", "bangerd.log"))
	if err != nil {
		e.t.Fatalf("read daemon log: %v", err)
	}
	var last time.Duration = -1
	for _, line := range strings.Split(string(data), "\n") {
		var rec struct {
			Msg      string          `json:"msg"`
			Step     string          `json:"step"`
			Duration json.RawMessage `json:"duration"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "step done" || rec.Step != name {
			continue
		}
		var ns int64
		var s string
		if json.Unmarshal(rec.Duration, &ns) == nil {
			last = time.Duration(ns)
		} else if json.Unmarshal(rec.Duration, &s) == nil {
			last, _ = time.ParseDuration(s)
		}
	}
	if last < 0 {
		e.t.Fatalf("no %q step in the daemon log (log_level debug?)", name)
	}
	return last
}
