//go:build integration

package guest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

// testLinkPrefix names every link these tests create, so the host
// namespace can be checked for leaks.
const testLinkPrefix = "bgtest"

var (
	testMAC0    = net.HardwareAddr{0x02, 0xba, 0x00, 0x00, 0x00, 0x01}
	testMAC1    = net.HardwareAddr{0x02, 0xba, 0x00, 0x00, 0x00, 0x02}
	testMACNone = net.HardwareAddr{0x02, 0xba, 0x00, 0x00, 0x00, 0x99}
)

// TestApplyNetNamespaces runs ApplyNet in fresh network and UTS
// namespaces, one per subtest, against dummy (or ifb) links and a
// temporary root.
func TestApplyNetNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network and UTS namespaces: run `sudo go test -tags integration -run Net ./internal/agent/guest/`")
	}
	oldPoll, oldMACWait, oldWait := nicPoll, nicMACWait, nicWait
	nicPoll, nicMACWait, nicWait = 20*time.Millisecond, 500*time.Millisecond, 1500*time.Millisecond
	t.Cleanup(func() { nicPoll, nicMACWait, nicWait = oldPoll, oldMACWait, oldWait })

	// This goroutine never leaves the host namespaces: check afterwards
	// that nothing leaked into them.
	hostName := nodename(t)
	t.Cleanup(func() {
		if got := nodename(t); got != hostName {
			t.Errorf("host hostname: got %q, want %q unchanged", got, hostName)
		}
		links, err := netlink.LinkList()
		if err != nil {
			t.Errorf("list host links: %v", err)
		}
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, testLinkPrefix) {
				t.Errorf("link %q appeared in the host network namespace", l.Attrs().Name)
			}
		}
	})

	addr := netip.MustParsePrefix("172.16.0.5/24")
	gw := netip.MustParseAddr("172.16.0.1")
	dns := []netip.Addr{netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("198.51.100.53")}
	const wantResolv = "nameserver 172.16.0.1\nnameserver 198.51.100.53\n"

	t.Run("mac match, hosts line replaced, dangling resolv.conf", func(t *testing.T) {
		enterTestNamespaces(t)
		addDummy(t, testLinkPrefix+"0", testMAC0)
		nic1 := addDummy(t, testLinkPrefix+"1", testMAC1)
		// Old addresses, primary and secondary, to be flushed.
		for _, a := range []string{"198.51.100.7/24", "198.51.100.8/24"} {
			if err := netlink.AddrAdd(nic1, mustAddr(t, a)); err != nil {
				t.Fatalf("add %s: %v", a, err)
			}
		}
		root := testRoot(t)
		writeTestFile(t, filepath.Join(root, "etc/hostname"), "old\n")
		writeTestFile(t, filepath.Join(root, "etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1\tlocalhost\n")
		if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf")); err != nil {
			t.Fatal(err)
		}

		cfg := NetConfig{Addr: addr, Gateway: gw, DNS: dns, Hostname: "demo", MAC: testMAC1}
		nic, err := ApplyNet(t.Context(), cfg, root)
		if err != nil {
			t.Fatalf("ApplyNet: %v", err)
		}
		if want := testLinkPrefix + "1"; nic != want {
			t.Errorf("got NIC %q, want %q (the MAC match)", nic, want)
		}
		checkNIC(t, testLinkPrefix+"1", addr, gw)
		checkUntouched(t, testLinkPrefix+"0")
		checkLoUp(t)
		if got := nodename(t); got != "demo" {
			t.Errorf("got hostname %q, want %q", got, "demo")
		}
		checkTestFile(t, filepath.Join(root, "etc/hostname"), "demo\n")
		checkTestFile(t, filepath.Join(root, "etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\tdemo\n::1\tlocalhost\n")
		checkTestFile(t, filepath.Join(root, "etc/resolv.conf"), wantResolv)
		if fi, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("resolv.conf: got mode %v (err %v), want a regular file", fi.Mode(), err)
		}

		// Running it again (a service restart) gives the same result.
		if nic, err := ApplyNet(t.Context(), cfg, root); err != nil || nic != testLinkPrefix+"1" {
			t.Fatalf("second ApplyNet: got %q, %v; want %q, nil", nic, err, testLinkPrefix+"1")
		}
		checkNIC(t, testLinkPrefix+"1", addr, gw)
	})

	t.Run("promoted secondary, alias and old default routes all replaced", func(t *testing.T) {
		enterTestNamespaces(t)
		other := addDummy(t, testLinkPrefix+"0", testMAC0)
		nic1 := addDummy(t, testLinkPrefix+"1", testMAC1)
		// With promote_secondaries (systemd's default), deleting a primary
		// promotes its secondary instead of taking it along.
		for _, conf := range []string{"all", testLinkPrefix + "1"} {
			path := "/proc/sys/net/ipv4/conf/" + conf + "/promote_secondaries"
			writeTestFile(t, path, "1\n") // this thread's network namespace
			checkTestFile(t, path, "1\n")
		}
		old := []*netlink.Addr{mustAddr(t, "198.51.100.7/24"), mustAddr(t, "198.51.100.8/24"), mustAddr(t, "203.0.113.9/24")}
		old[2].Label = testLinkPrefix + "1:a" // an ifconfig-style alias
		for _, a := range old {
			if err := netlink.AddrAdd(nic1, a); err != nil {
				t.Fatalf("add %s: %v", a, err)
			}
		}
		if err := netlink.AddrAdd(other, mustAddr(t, "192.0.2.2/24")); err != nil {
			t.Fatalf("add 192.0.2.2/24: %v", err)
		}
		for _, r := range []struct {
			link     netlink.Link
			gw       string
			priority int
		}{{nic1, "198.51.100.254", 100}, {other, "192.0.2.1", 0}, {other, "192.0.2.3", 200}} {
			if err := netlink.LinkSetUp(r.link); err != nil {
				t.Fatalf("set %s up: %v", r.link.Attrs().Name, err)
			}
			route := &netlink.Route{LinkIndex: r.link.Attrs().Index, Gw: net.ParseIP(r.gw), Priority: r.priority}
			if err := netlink.RouteAdd(route); err != nil {
				t.Fatalf("add default route via %s: %v", r.gw, err)
			}
		}

		cfg := NetConfig{Addr: addr, Gateway: gw, MAC: testMAC1}
		for _, run := range []string{"first", "second"} {
			nic, err := ApplyNet(t.Context(), cfg, testRoot(t))
			if err != nil {
				t.Fatalf("%s ApplyNet: %v", run, err)
			}
			if want := testLinkPrefix + "1"; nic != want {
				t.Errorf("%s run: got NIC %q, want %q", run, nic, want)
			}
			checkNIC(t, testLinkPrefix+"1", addr, gw)
		}
		addrs, err := netlink.AddrList(other, netlink.FAMILY_V4)
		if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "192.0.2.2/24" {
			t.Errorf("%s: got IPv4 addresses %v (err %v), want [192.0.2.2/24] left alone", testLinkPrefix+"0", addrs, err)
		}
	})

	t.Run("mac link appearing late is waited for", func(t *testing.T) {
		ns := enterTestNamespaces(t)
		addDummy(t, testLinkPrefix+"0", testMAC0)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
			if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
				t.Errorf("join test namespace: %v", err)
				return
			}
			time.Sleep(nicMACWait / 5)
			if err := addTestLink(testLinkPrefix+"1", testMAC1); err != nil {
				t.Errorf("add late link: %v", err)
			}
		}()
		nic, err := ApplyNet(t.Context(), NetConfig{Addr: addr, MAC: testMAC1}, testRoot(t))
		if err != nil {
			t.Fatalf("ApplyNet: %v", err)
		}
		if want := testLinkPrefix + "1"; nic != want {
			t.Errorf("got NIC %q, want %q (the MAC match that came late)", nic, want)
		}
		checkNIC(t, nic, addr, netip.Addr{})
	})

	t.Run("unknown mac falls back to the first link, hosts line appended", func(t *testing.T) {
		enterTestNamespaces(t)
		// Created in reverse: "first" is by name, as a glob of /sys/class/net.
		addDummy(t, testLinkPrefix+"1", testMAC1)
		addDummy(t, testLinkPrefix+"0", testMAC0)
		root := testRoot(t)
		writeTestFile(t, filepath.Join(root, "etc/hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost\n")
		writeTestFile(t, filepath.Join(root, "etc/resolv.conf"), "nameserver 198.51.100.1\n")

		start := time.Now()
		nic, err := ApplyNet(t.Context(), NetConfig{Addr: addr, DNS: dns, Hostname: "fallback", MAC: testMACNone}, root)
		if err != nil {
			t.Fatalf("ApplyNet: %v", err)
		}
		if took := time.Since(start); took < nicMACWait {
			t.Errorf("took %s, want at least the MAC wait %s", took, nicMACWait)
		}
		if want := testLinkPrefix + "0"; nic != want {
			t.Errorf("got NIC %q, want %q (first by name)", nic, want)
		}
		checkNIC(t, testLinkPrefix+"0", addr, netip.Addr{})
		checkUntouched(t, testLinkPrefix+"1")
		if got := nodename(t); got != "fallback" {
			t.Errorf("got hostname %q, want %q", got, "fallback")
		}
		checkTestFile(t, filepath.Join(root, "etc/hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tfallback\n")
		checkTestFile(t, filepath.Join(root, "etc/resolv.conf"), wantResolv)
	})

	t.Run("no mac takes the first link at once", func(t *testing.T) {
		enterTestNamespaces(t)
		addDummy(t, testLinkPrefix+"1", testMAC1)
		addDummy(t, testLinkPrefix+"0", testMAC0)
		root := testRoot(t) // no etc/hosts: created
		start := time.Now()
		nic, err := ApplyNet(t.Context(), NetConfig{Addr: addr, Gateway: gw, Hostname: "nomac"}, root)
		if err != nil {
			t.Fatalf("ApplyNet: %v", err)
		}
		if took := time.Since(start); took >= nicMACWait {
			t.Errorf("took %s, want less than the MAC wait %s", took, nicMACWait)
		}
		if want := testLinkPrefix + "0"; nic != want {
			t.Errorf("got NIC %q, want %q", nic, want)
		}
		checkNIC(t, nic, addr, gw)
		checkTestFile(t, filepath.Join(root, "etc/hosts"), "127.0.1.1\tnomac\n")
		if _, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("resolv.conf without DNS: got %v, want it left absent", err)
		}
	})

	t.Run("no address leaves links alone", func(t *testing.T) {
		enterTestNamespaces(t)
		addDummy(t, testLinkPrefix+"0", testMAC0)
		root := testRoot(t)
		nic, err := ApplyNet(t.Context(), NetConfig{Gateway: gw, Hostname: "noaddr", MAC: testMAC0}, root)
		if err != nil || nic != "" {
			t.Fatalf("ApplyNet: got %q, %v; want \"\", nil", nic, err)
		}
		checkUntouched(t, testLinkPrefix+"0")
		checkLoUp(t)
		if got := nodename(t); got != "noaddr" {
			t.Errorf("got hostname %q, want %q", got, "noaddr")
		}
	})

	t.Run("only lo times out", func(t *testing.T) {
		enterTestNamespaces(t)
		root := testRoot(t)
		start := time.Now()
		nic, err := ApplyNet(t.Context(), NetConfig{Addr: addr, Hostname: "alone", MAC: testMAC0}, root)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("ApplyNet: got NIC %q, want an error", nic)
		}
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "network interface") {
			t.Errorf("got error %v, want a not-found error about the network interface", err)
		}
		if nic != "" {
			t.Errorf("got NIC %q, want none", nic)
		}
		if took < nicWait || took > nicWait+time.Second {
			t.Errorf("gave up after %s, want about %s", took, nicWait)
		}
		checkLoUp(t)
		if got := nodename(t); got != "alone" {
			t.Errorf("got hostname %q, want %q (set before the NIC search)", got, "alone")
		}
	})

	t.Run("cancelled while waiting", func(t *testing.T) {
		enterTestNamespaces(t)
		ctx, cancel := context.WithTimeout(t.Context(), nicWait/10)
		defer cancel()
		start := time.Now()
		_, err := ApplyNet(ctx, NetConfig{Addr: addr}, testRoot(t))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got error %v, want the context's", err)
		}
		if took := time.Since(start); took >= nicWait {
			t.Errorf("returned after %s, want soon after the context ended", took)
		}
	})
}

// enterTestNamespaces moves the calling test goroutine into new, empty
// network and UTS namespaces and returns a descriptor of the network
// one. The goroutine's thread stays locked and is never unlocked, so the
// runtime ends it with the test and the namespaces die with it. Call it
// at the start of a t.Run body (its own goroutine), never from the
// parent test.
func enterTestNamespaces(t *testing.T) int {
	t.Helper()
	hostNet, hostUTS := nsInode(t, "/proc/self/ns/net"), nsInode(t, "/proc/self/ns/uts") // the main thread's
	runtime.LockOSThread()                                                               // never unlocked, see above
	if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWUTS); err != nil {
		t.Fatalf("unshare network and UTS namespaces: %v", err)
	}
	if nsInode(t, "/proc/thread-self/ns/net") == hostNet || nsInode(t, "/proc/thread-self/ns/uts") == hostUTS {
		t.Fatal("still in a host namespace after unshare")
	}
	if links, err := netlink.LinkList(); err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("new namespace: got links %v (err %v), want only lo", links, err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open test namespace: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func nodename(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	return unix.ByteSliceToString(u.Nodename[:])
}

// addDummy adds a link called name with the given MAC: a dummy link, or an
// ifb link (just as inert: no traffic, carrier on) on kernels built
// without dummy.
func addDummy(t *testing.T, name string, mac net.HardwareAddr) netlink.Link {
	t.Helper()
	if err := addTestLink(name, mac); err != nil {
		t.Fatalf("add link %s: %v", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	if got := link.Attrs().HardwareAddr; got.String() != mac.String() {
		t.Fatalf("%s: got MAC %s, want %s", name, got, mac)
	}
	return link
}

func addTestLink(name string, mac net.HardwareAddr) error {
	attrs := netlink.LinkAttrs{Name: name, HardwareAddr: mac}
	err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = netlink.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
	}
	return err
}

func mustAddr(t *testing.T, s string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testRoot is a temporary root with an empty etc.
func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// checkNIC checks that name is up with exactly the IPv4 address want and,
// when gw is valid, a default route through it (else no default route).
func checkNIC(t *testing.T, name string, want netip.Prefix, gw netip.Addr) {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: got flags %v, want up", name, link.Attrs().Flags)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list addresses of %s: %v", name, err)
	}
	var got []string
	for _, a := range addrs {
		got = append(got, a.IPNet.String())
	}
	if !slices.Equal(got, []string{want.String()}) {
		t.Errorf("%s: got IPv4 addresses %v, want [%s]", name, got, want)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var defaults []string
	for _, r := range routes {
		if isDefault(r) {
			defaults = append(defaults, r.Gw.String()+"@"+strconv.Itoa(r.LinkIndex))
		}
	}
	var wantDefaults []string
	if gw.IsValid() {
		wantDefaults = []string{gw.String() + "@" + strconv.Itoa(link.Attrs().Index)}
	}
	if !slices.Equal(defaults, wantDefaults) {
		t.Errorf("default routes (gateway@ifindex): got %v, want %v", defaults, wantDefaults)
	}
}

// checkUntouched checks that name is still down without IPv4 addresses.
func checkUntouched(t *testing.T, name string) {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	if link.Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("%s: got up, want left down", name)
	}
	if addrs, err := netlink.AddrList(link, netlink.FAMILY_V4); err != nil || len(addrs) != 0 {
		t.Errorf("%s: got IPv4 addresses %v (err %v), want none", name, addrs, err)
	}
}

func checkLoUp(t *testing.T) {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("find lo: %v", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo: got flags %v, want up", lo.Attrs().Flags)
	}
}

// isDefault reports whether r is a default route (netlink gives its
// destination as nil or 0.0.0.0/0).
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && r.Dst.IP.IsUnspecified()
}
