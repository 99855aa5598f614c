//go:build integration

package network

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"banger/internal/errdefs"
)

const testBridge = "bgt-br0"

func testConfig() Config {
	return Config{BridgeName: testBridge, BridgeIP: "172.16.0.1", CIDR: "24"}
}

// newTestManager enters a fresh namespace and returns a Manager made in it.
func newTestManager(t *testing.T) (*Manager, *testNetns) {
	t.Helper()
	ns := enterNetns(t, testBridge)
	m, err := New(testConfig(), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, ns
}

func mustLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %q: %v", name, err)
	}
	return l
}

func linkGone(t *testing.T, name string) {
	t.Helper()
	if l, err := netlink.LinkByName(name); err == nil {
		t.Errorf("link %q (%s) exists, want it gone", name, l.Type())
	}
}

func v4Addrs(t *testing.T, l netlink.Link) []string {
	t.Helper()
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list addresses of %q: %v", l.Attrs().Name, err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

// addForeign adds a link that banger must not mistake for its own: a
// layer-3 TUN device when kind is "tun", a bridge when it is "bridge".
func addForeign(t *testing.T, kind, name string) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	var l netlink.Link
	switch kind {
	case "tun":
		l = &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TUN}
	case "tap":
		l = &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TAP}
	case "bridge":
		l = &netlink.Bridge{LinkAttrs: attrs}
	default:
		t.Fatalf("unknown link kind %q", kind)
	}
	if err := netlink.LinkAdd(l); err != nil {
		t.Fatalf("add %s %q: %v", kind, name, err)
	}
}

// linkKind returns the link type, telling TUN from TAP.
func linkKind(t *testing.T, name string) string {
	t.Helper()
	l := mustLink(t, name)
	if tt, ok := l.(*netlink.Tuntap); ok {
		return tt.Mode.String()
	}
	return l.Type()
}

func TestAvailable(t *testing.T) {
	enterNetns(t)
	if err := Available(); err != nil {
		t.Fatalf("Available() = %v, want nil on a host that runs TAPs", err)
	}
}

func TestEnsureBridge(t *testing.T) {
	m, _ := newTestManager(t)
	for i := range 2 {
		if err := m.EnsureBridge(t.Context()); err != nil {
			t.Fatalf("EnsureBridge call %d: %v", i+1, err)
		}
	}
	br := mustLink(t, testBridge)
	if _, ok := br.(*netlink.Bridge); !ok {
		t.Errorf("got link type %s, want bridge", br.Type())
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("bridge is down, want up")
	}
	if got, want := v4Addrs(t, br), []string{"172.16.0.1/24"}; !slices.Equal(got, want) {
		t.Errorf("got addresses %v, want %v", got, want)
	}

	// A bridge someone set down and stripped is repaired; a foreign
	// extra address is kept.
	if err := netlink.LinkSetDown(br); err != nil {
		t.Fatal(err)
	}
	mine, _ := netlink.ParseAddr("172.16.0.1/24")
	extra, _ := netlink.ParseAddr("10.99.0.1/24")
	if err := netlink.AddrDel(br, mine); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(br, extra); err != nil {
		t.Fatal(err)
	}
	if err := m.EnsureBridge(t.Context()); err != nil {
		t.Fatalf("EnsureBridge on a changed bridge: %v", err)
	}
	br = mustLink(t, testBridge)
	if br.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("bridge is down after repair, want up")
	}
	if got, want := v4Addrs(t, br), []string{"10.99.0.1/24", "172.16.0.1/24"}; !slices.Equal(got, want) {
		t.Errorf("after repair got addresses %v, want %v", got, want)
	}

	for i := range 2 {
		if err := m.DeleteBridge(t.Context()); err != nil {
			t.Fatalf("DeleteBridge call %d: %v", i+1, err)
		}
	}
	linkGone(t, testBridge)
}

func TestEnsureBridgeNotABridge(t *testing.T) {
	m, _ := newTestManager(t)
	addForeign(t, "tun", testBridge)

	err := m.EnsureBridge(t.Context())
	if err == nil {
		t.Fatal("EnsureBridge over a tun device succeeded, want error")
	}
	if !errdefs.IsConflict(err) {
		t.Errorf("got error %v, want errdefs.ErrConflict", err)
	}
	t.Logf("EnsureBridge error: %v", err)
	if err := m.CreateTap(t.Context(), "bgrnotabridge"); err == nil {
		t.Error("CreateTap with a tun device as bridge succeeded, want error")
	}
	linkGone(t, "bgrnotabridge")
	if err := m.DeleteBridge(t.Context()); !errdefs.IsConflict(err) {
		t.Errorf("DeleteBridge over a tun device: got %v, want errdefs.ErrConflict", err)
	}
	if got := linkKind(t, testBridge); got != "tun" {
		t.Errorf("got link kind %s, want the tun device left alone", got)
	}
}

func TestCreateTap(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.EnsureBridge(t.Context()); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	brIndex := mustLink(t, testBridge).Attrs().Index
	name := TapName("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

	check := func(when string) {
		t.Helper()
		l := mustLink(t, name)
		tap, ok := l.(*netlink.Tuntap)
		if !ok {
			t.Fatalf("%s: got link type %s, want tuntap", when, l.Type())
		}
		if tap.Mode != netlink.TUNTAP_MODE_TAP {
			t.Errorf("%s: got mode %v, want tap", when, tap.Mode)
		}
		if tap.NonPersist {
			t.Errorf("%s: tap is not persistent", when)
		}
		if tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
			t.Errorf("%s: multi_queue on, want off", when)
		}
		if tap.Owner != 0 {
			t.Errorf("%s: got owner %d, want 0", when, tap.Owner)
		}
		if got := tap.Attrs().MasterIndex; got != brIndex {
			t.Errorf("%s: got master index %d, want bridge %d", when, got, brIndex)
		}
		if tap.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: tap is down, want up", when)
		}
	}

	for i := range 2 {
		if err := m.CreateTap(t.Context(), name); err != nil {
			t.Fatalf("CreateTap call %d: %v", i+1, err)
		}
		check("after CreateTap")
	}

	// An existing TAP that lost its master and went down is repaired.
	l := mustLink(t, name)
	if err := netlink.LinkSetNoMaster(l); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateTap(t.Context(), name); err != nil {
		t.Fatalf("CreateTap on a detached tap: %v", err)
	}
	check("after repair")

	other := TapName("fedcba9876543210")
	if err := m.CreateTap(t.Context(), other); err != nil {
		t.Fatalf("CreateTap %q: %v", other, err)
	}
	// Non-TAPs with the prefix are not listed, nor a TAP on another
	// bridge (another daemon's); an unattached one is.
	addForeign(t, "tun", TapPrefix+"tun")
	addForeign(t, "bridge", TapPrefix+"bridge")
	addForeign(t, "bridge", "br-other")
	foreignTap := TapPrefix + "foreign"
	addForeign(t, "tap", foreignTap)
	if err := netlink.LinkSetMaster(mustLink(t, foreignTap), mustLink(t, "br-other")); err != nil {
		t.Fatal(err)
	}
	loose := TapPrefix + "loose"
	addForeign(t, "tap", loose)
	got, err := m.ListTaps(t.Context())
	if err != nil {
		t.Fatalf("ListTaps: %v", err)
	}
	want := []string{name, other, loose}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ListTaps = %v, want %v", got, want)
	}

	for _, n := range []string{name, other, loose} {
		for i := range 2 {
			if err := m.DeleteTap(t.Context(), n); err != nil {
				t.Fatalf("DeleteTap %q call %d: %v", n, i+1, err)
			}
		}
		linkGone(t, n)
	}
	got, err = m.ListTaps(t.Context())
	if err != nil {
		t.Fatalf("ListTaps: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("ListTaps after deletions = %v, want none", got)
	}
}

func TestCreateTapConcurrent(t *testing.T) {
	m, ns := newTestManager(t)
	if err := m.EnsureBridge(t.Context()); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	const name = "bgrconcurrent"
	ns.goInside(t, 8, func(i int) {
		if err := m.CreateTap(t.Context(), name); err != nil {
			t.Errorf("CreateTap from goroutine %d: %v", i, err)
		}
	})
	l := mustLink(t, name)
	if l.Attrs().MasterIndex != mustLink(t, testBridge).Attrs().Index || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("tap after concurrent creates: master %d, flags %v; want on the bridge and up", l.Attrs().MasterIndex, l.Attrs().Flags)
	}
	if err := m.DeleteTap(t.Context(), name); err != nil {
		t.Fatalf("DeleteTap: %v", err)
	}
}

func TestCreateTapErrors(t *testing.T) {
	m, _ := newTestManager(t)

	// No bridge yet: not found, nothing left behind.
	err := m.CreateTap(t.Context(), "bgrnobridge")
	if !errdefs.IsNotFound(err) {
		t.Errorf("CreateTap without bridge: got %v, want errdefs.ErrNotFound", err)
	}
	linkGone(t, "bgrnobridge")

	if err := m.EnsureBridge(t.Context()); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}

	// A link of that name that is not a TAP is refused and left alone.
	for _, kind := range []string{"tun", "bridge"} {
		name := "bgrtaken" + kind
		addForeign(t, kind, name)
		if err := m.CreateTap(t.Context(), name); !errdefs.IsConflict(err) {
			t.Errorf("CreateTap over a %s: got %v, want errdefs.ErrConflict", kind, err)
		}
		if err := m.DeleteTap(t.Context(), name); !errdefs.IsConflict(err) {
			t.Errorf("DeleteTap of a %s: got %v, want errdefs.ErrConflict", kind, err)
		}
		if got := linkKind(t, name); got != kind {
			t.Errorf("got link kind %s, want the %s left alone", got, kind)
		}
	}

	// Bad names never reach the kernel.
	for _, bad := range []string{"", "bgr/x", "bgr0123456789abcd"} {
		if err := m.CreateTap(t.Context(), bad); !errdefs.IsInvalid(err) {
			t.Errorf("CreateTap(%q): got %v, want errdefs.ErrInvalid", bad, err)
		}
		if err := m.DeleteTap(t.Context(), bad); !errdefs.IsInvalid(err) {
			t.Errorf("DeleteTap(%q): got %v, want errdefs.ErrInvalid", bad, err)
		}
	}

	// A failure after the TAP was made removes it: the bridge vanishes
	// between creation and attachment.
	m.afterTapAdd = func(string) {
		if err := m.DeleteBridge(t.Context()); err != nil {
			t.Errorf("delete bridge in hook: %v", err)
		}
	}
	err = m.CreateTap(t.Context(), "bgrrollback")
	m.afterTapAdd = nil
	if err == nil {
		t.Fatal("CreateTap with the bridge removed mid-way succeeded, want error")
	}
	t.Logf("CreateTap error: %v", err)
	linkGone(t, "bgrrollback")

	// A cancelled context does nothing.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := m.EnsureBridge(ctx); err == nil {
		t.Error("EnsureBridge with a cancelled context succeeded, want error")
	}
	linkGone(t, testBridge)
}
