//go:build integration

package network

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// guestNetns is a fresh namespace standing in for a guest, reached by
// its fd; it dies when the fd is closed at the end of the test.
type guestNetns struct{ fd int }

func newGuestNetns(t *testing.T) guestNetns {
	t.Helper()
	fdc := make(chan int, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		fdc <- fd
	}()
	select {
	case err := <-errc:
		t.Fatalf("new guest namespace: %v", err)
	case fd := <-fdc:
		t.Cleanup(func() { unix.Close(fd) })
		return guestNetns{fd: fd}
	}
	return guestNetns{}
}

// run runs fn on a goroutine whose thread joined the guest namespace.
func (g guestNetns) run(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		if err := unix.Setns(g.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join guest namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// addVethGuest makes a veth pair whose end port becomes a bridge port
// through the Manager (as a TAP would) and whose other end, in a new
// guest namespace, gets addr/24.
func addVethGuest(t *testing.T, m *Manager, port, addr string) guestNetns {
	t.Helper()
	g := newGuestNetns(t)
	peer := port + "g"
	attrs := netlink.NewLinkAttrs()
	attrs.Name = port
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", port, err)
	}
	if err := netlink.LinkSetNsFd(mustLink(t, peer), g.fd); err != nil {
		t.Fatalf("move %s into guest namespace: %v", peer, err)
	}
	br, _, err := m.bridgeLink(false)
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	if err := m.attachPort(mustLink(t, port), br); err != nil {
		t.Fatalf("attach %s: %v", port, err)
	}
	err = g.run(func() error {
		for _, name := range []string{"lo", peer} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if name == peer {
				a, _ := netlink.ParseAddr(addr + "/24")
				if err := netlink.AddrAdd(l, a); err != nil {
					return err
				}
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("configure guest %s: %v", addr, err)
	}
	return g
}

// listen accepts and closes TCP connections on addr until the test ends.
// run, when not nil, opens the listener in another namespace.
func listen(t *testing.T, addr string, run func(func() error) error) {
	t.Helper()
	var l net.Listener
	open := func() (err error) { l, err = net.Listen("tcp4", addr); return err }
	var err error
	if run != nil {
		err = run(open)
	} else {
		err = open()
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
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

func (g guestNetns) dial(addr string, timeout time.Duration) error {
	return g.run(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func isolated(t *testing.T, name string) bool {
	t.Helper()
	pi, err := netlink.LinkGetProtinfo(mustLink(t, name))
	if err != nil {
		t.Fatalf("protinfo of %s: %v", name, err)
	}
	return pi.Isolated
}

func TestGuestIsolation(t *testing.T) {
	tests := []struct {
		name         string
		guestToGuest bool
	}{
		{name: "isolated by default", guestToGuest: false},
		{name: "guest_to_guest", guestToGuest: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enterNetns(t, testBridge, "bgrv1", "bgrv2")
			cfg := testConfig()
			cfg.GuestToGuest = tt.guestToGuest
			m, err := New(cfg, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { m.Close() })
			if err := m.EnsureBridge(t.Context()); err != nil {
				t.Fatalf("EnsureBridge: %v", err)
			}
			g1 := addVethGuest(t, m, "bgrv1", "172.16.0.2")
			g2 := addVethGuest(t, m, "bgrv2", "172.16.0.3")
			for _, port := range []string{"bgrv1", "bgrv2"} {
				if got := isolated(t, port); got == tt.guestToGuest {
					t.Errorf("port %s: isolated = %v, want %v", port, got, !tt.guestToGuest)
				}
			}
			listen(t, "172.16.0.1:7000", nil) // the host, on the bridge
			listen(t, "172.16.0.3:7000", g2.run)
			listen(t, "172.16.0.2:7000", g1.run)

			for i, g := range []guestNetns{g1, g2} {
				if err := g.dial("172.16.0.1:7000", 3*time.Second); err != nil {
					t.Errorf("guest %d could not reach the host on the bridge address: %v", i+1, err)
				}
			}
			for _, c := range []struct {
				from guestNetns
				to   string
			}{{g1, "172.16.0.3:7000"}, {g2, "172.16.0.2:7000"}} {
				wait := time.Second
				if tt.guestToGuest {
					wait = 3 * time.Second
				}
				err := c.from.dial(c.to, wait)
				switch {
				case tt.guestToGuest && err != nil:
					t.Errorf("with guest_to_guest, dial %s: %v, want success", c.to, err)
				case !tt.guestToGuest && err == nil:
					t.Errorf("isolated guests: dial %s succeeded, want failure", c.to)
				}
			}
		})
	}
}

func TestCreateTapIsolation(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.EnsureBridge(t.Context()); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	const name = "bgrisolation"
	if err := m.CreateTap(t.Context(), name); err != nil {
		t.Fatalf("CreateTap: %v", err)
	}
	if !isolated(t, name) {
		t.Error("new tap is not isolated, want isolated by default")
	}
	// A Manager configured for guest_to_guest repairs the existing TAP
	// to match, and back.
	cfg := testConfig()
	cfg.GuestToGuest = true
	open, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { open.Close() })
	if err := open.CreateTap(t.Context(), name); err != nil {
		t.Fatalf("CreateTap with guest_to_guest: %v", err)
	}
	if isolated(t, name) {
		t.Error("tap still isolated after CreateTap with guest_to_guest")
	}
	if err := m.CreateTap(t.Context(), name); err != nil {
		t.Fatalf("CreateTap again: %v", err)
	}
	if !isolated(t, name) {
		t.Error("tap not isolated again after CreateTap without guest_to_guest")
	}
	if err := m.DeleteTap(t.Context(), name); err != nil {
		t.Fatalf("DeleteTap: %v", err)
	}
}
