//go:build integration

package network

import (
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testNetns is a fresh, empty network namespace that one test goroutine
// lives in for the rest of its life.
type testNetns struct {
	fd int // the namespace, for helper goroutines to join
}

// enterNetns moves the calling test goroutine into a new, empty network
// namespace: nothing the test creates can reach the host's namespace, and
// the namespace has no route anywhere. The goroutine's OS thread stays
// locked and is never unlocked, so when the test ends the runtime
// terminates that thread instead of returning it to the pool; the
// namespace dies with it. It also checks, after the test, that none of
// the names in watch appeared in the host namespace.
//
// Never call it from a goroutine other than the test's own (t.Run bodies
// have their own goroutine and must call it themselves).
func enterNetns(t testing.TB, watch ...string) *testNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and TAPs: run `sudo go test -tags integration ./internal/network/...`")
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE) // bound to the host namespace
	if err != nil {
		t.Fatalf("open host netlink socket: %v", err)
	}
	before := linkNames(t, host)
	hostIno := nsInode(t, "/proc/self/ns/net") // the main thread: host namespace
	t.Cleanup(func() {
		defer host.Close()
		after := linkNames(t, host)
		for _, name := range after {
			if slices.Contains(before, name) {
				continue
			}
			if slices.Contains(watch, name) || strings.HasPrefix(name, TapPrefix) {
				t.Errorf("link %q appeared in the host network namespace", name)
			}
		}
	})

	runtime.LockOSThread() // never unlocked, see above
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare network namespace: %v", err)
	}
	if got := nsInode(t, "/proc/thread-self/ns/net"); got == hostIno {
		t.Fatalf("still in the host network namespace after unshare (inode %d)", got)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open test namespace: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	// A fresh namespace holds only a down loopback.
	if links, err := netlink.LinkList(); err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("new namespace: got links %v (err %v), want only lo", links, err)
	}
	return &testNetns{fd: fd}
}

// goInside runs fn on a new goroutine whose thread joined ns, and waits
// for it to return. fn reports failures with t.Error, not t.Fatal. Its
// thread is never unlocked either.
func (ns *testNetns) goInside(t *testing.T, n int, fn func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked
			if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
				t.Errorf("goroutine %d: join test namespace: %v", i, err)
				return
			}
			fn(i)
		}()
	}
	wg.Wait()
}

func nsInode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func linkNames(t testing.TB, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("list host links: %v", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}
