//go:build integration

package network

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

// checkReadyTap fails unless name is a TAP on the test bridge, isolated
// and up.
func checkReadyTap(t *testing.T, name string) {
	t.Helper()
	l := mustLink(t, name)
	if err := checkTap(l); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	if got, want := l.Attrs().MasterIndex, mustLink(t, testBridge).Attrs().Index; got != want {
		t.Errorf("%s: master index %d, want the bridge's %d", name, got, want)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s is down, want up", name)
	}
	if !isolated(t, name) {
		t.Errorf("%s is not isolated", name)
	}
}

func newPoolManager(t *testing.T) *Manager {
	t.Helper()
	m, _ := newTestManager(t)
	if err := m.EnsureBridge(t.Context()); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	return m
}

func TestPool(t *testing.T) {
	m := newPoolManager(t)
	ctx := t.Context()
	const size = 6
	p := NewPool(m, size, nil)
	t.Cleanup(func() { p.Close(ctx) })

	for i := range 2 {
		if err := p.Fill(ctx); err != nil {
			t.Fatalf("Fill call %d: %v", i+1, err)
		}
	}
	idle := p.Idle()
	if len(idle) != size {
		t.Fatalf("after Fill: %d idle taps %v, want %d", len(idle), idle, size)
	}
	for _, name := range idle {
		if !IsPoolTap(name) {
			t.Errorf("idle tap %q is not a pool name", name)
		}
		checkReadyTap(t, name)
	}
	listed, err := m.ListTaps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(listed), size; got != want {
		t.Errorf("ListTaps shows %d taps %v, want %d", got, listed, want)
	}

	// Acquire hands out the oldest idle TAP; the background refill,
	// which runs on goroutines outside this test's namespace, tops the
	// pool up again, in this namespace.
	got, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if got != idle[0] {
		t.Errorf("Acquire = %q, want the oldest idle tap %q", got, idle[0])
	}
	checkReadyTap(t, got)
	p.bg.Wait()
	after := p.Idle()
	if len(after) != size || slices.Contains(after, got) {
		t.Errorf("after refill: idle %v, want %d taps without the acquired %q", after, size, got)
	}
	for _, name := range after {
		checkReadyTap(t, name)
	}

	// A pooled TAP someone removed is made again when handed out.
	next := p.Idle()[0]
	if err := m.DeleteTap(ctx, next); err != nil {
		t.Fatal(err)
	}
	got2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire after a pooled tap vanished: %v", err)
	}
	if got2 != next {
		t.Errorf("Acquire = %q, want %q", got2, next)
	}
	checkReadyTap(t, got2)
	p.bg.Wait()

	// Close deletes the idle TAPs and leaves the handed-out ones.
	idle = p.Idle()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, name := range idle {
		linkGone(t, name)
	}
	for _, name := range []string{got, got2} {
		checkReadyTap(t, name)
		if err := m.DeleteTap(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Acquire after Close: got %v, want ErrPoolClosed", err)
	}
	if left, err := m.ListTaps(ctx); err != nil || len(left) != 0 {
		t.Errorf("after Close: taps %v (err %v), want none", left, err)
	}
}

func TestPoolEmpty(t *testing.T) {
	m := newPoolManager(t)
	ctx := t.Context()
	p := NewPool(m, 0, nil)
	if err := p.Fill(ctx); err != nil {
		t.Fatalf("Fill of a size-0 pool: %v", err)
	}
	name, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if !IsPoolTap(name) {
		t.Errorf("Acquire = %q, want a pool name", name)
	}
	checkReadyTap(t, name)
	p.bg.Wait()
	if idle := p.Idle(); len(idle) != 0 {
		t.Errorf("size-0 pool has idle taps %v", idle)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteTap(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func TestPoolNoBridge(t *testing.T) {
	m, _ := newTestManager(t)
	p := NewPool(m, 2, nil)
	t.Cleanup(func() { p.Close(t.Context()) })
	if err := p.Fill(t.Context()); err == nil {
		t.Error("Fill without a bridge succeeded, want error")
	}
	if _, err := p.Acquire(t.Context()); err == nil {
		t.Error("Acquire without a bridge succeeded, want error")
	}
	p.bg.Wait()
	if idle := p.Idle(); len(idle) != 0 {
		t.Errorf("idle taps %v without a bridge", idle)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if IsPoolTap(l.Attrs().Name) {
			t.Errorf("pool tap %q left behind", l.Attrs().Name)
		}
	}
}

// BenchmarkAcquire measures what a VM start waits for to get its TAP:
// warm hands out a pooled one (checked and repaired), cold creates one
// (as a per-VM CreateTap does). Run it with
// `sudo go test -tags integration -run '^$' -bench Acquire -benchtime 200x ./internal/network/`.
func BenchmarkAcquire(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"warm", 4}, {"cold", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			enterNetns(b, testBridge)
			m, err := New(testConfig(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			ctx := b.Context()
			if err := m.EnsureBridge(ctx); err != nil {
				b.Fatal(err)
			}
			p := NewPool(m, bc.size, nil)
			defer p.Close(ctx)
			if err := p.Fill(ctx); err != nil {
				b.Fatal(err)
			}
			// Handed-out TAPs are deleted after the loop: deleting a
			// link leaves the kernel busy for a while after LinkDel
			// returns, which would slow the next Acquire.
			taken := make([]string, 0, b.N)
			b.ResetTimer()
			for range b.N {
				name, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				taken = append(taken, name)
				p.bg.Wait() // the next Acquire finds a full pool
				b.StartTimer()
			}
			b.StopTimer()
			for _, name := range taken {
				if err := m.DeleteTap(ctx, name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
