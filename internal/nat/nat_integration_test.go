//go:build integration

package nat

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	vm1 = "1111111111111111111111111111111111111111111111111111111111111111"
	vm2 = "2222222222222222222222222222222222222222222222222222222222222222"
	// Expected failures wait this long; successes get more.
	failWait = 800 * time.Millisecond
	okWait   = 3 * time.Second
)

var worldTCP = worldAddr + ":8080"

// checkMentions fails unless the host ruleset mentions each of the
// guest's id, address and port exactly when want.
func checkMentions(t *testing.T, top *topology, vmID string, g guest, want bool) {
	t.Helper()
	rs := top.ruleset(t)
	for _, s := range []string{vmID, `"` + g.port + `"`, g.ip.String() + " "} {
		if got := strings.Contains(rs, s); got != want {
			t.Errorf("ruleset mentions %q: got %v, want %v; ruleset:\n%s", s, got, want, rs)
		}
	}
}

func TestNATIntegration(t *testing.T) {
	top := newTopology(t)
	listenTCP(t, top.u, worldTCP)
	sink := listenUDP(t, top.u, worldAddr+":9000")
	cfg := top.config(t, false)
	var m *Manager
	top.do(t, "New", func() (err error) { m, err = New(cfg, nil); return err })
	ctx := t.Context()

	// Each check sends a fresh payload so a late datagram cannot count
	// for a later check.
	seq := 0
	udpFrom := func(t *testing.T, g guest, src netip.Addr, wait time.Duration) string {
		t.Helper()
		seq++
		p := fmt.Sprintf("%s-%d", g.ns, seq)
		sendUDP(t, g.ns, src, worldAddr+":9000", p)
		return sink.wait(p, wait)
	}

	t.Run("no nat guests keep everyone in", func(t *testing.T) {
		top.do(t, "Sync(nil)", func() error { return m.Sync(ctx, nil) })
		if got := top.forward(t); got != "0" {
			t.Errorf("ip_forward after Sync(nil) = %q, want 0", got)
		}
		if err := dial(top.g1.ns, worldTCP, failWait); err == nil {
			t.Error("g1 reached the world without nat")
		}
		// Even when the host forwards for reasons of its own, a guest's
		// packet does not leave (UDP needs no route back, so this checks
		// the drop rule itself, not the missing masquerade).
		top.setForward(t, "1")
		if src := udpFrom(t, top.g1, netip.Addr{}, failWait); src != "" {
			t.Errorf("g1's datagram reached the world from %s with forwarding on and no nat", src)
		}
		// Control: without banger's table the same datagram gets out.
		run(t, "ip", "netns", "exec", top.h, "nft", "delete", "table", "inet", TableName(bridgeName))
		if src := udpFrom(t, top.g1, netip.Addr{}, okWait); src != top.g1.ip.String() {
			t.Errorf("control without banger's table: datagram from %q, want it from %s", src, top.g1.ip)
		}
		top.setForward(t, "0")
		top.do(t, "Sync(nil)", func() error { return m.Sync(ctx, nil) })
	})

	t.Run("nat guest gets out, others stay in", func(t *testing.T) {
		top.do(t, "Add g1", func() error { return m.Add(ctx, top.g1.entry(vm1)) })
		if got := top.forward(t); got != "1" {
			t.Errorf("ip_forward with a nat guest = %q, want 1", got)
		}
		if got := readFile(t, cfg.StateFile); got != "0" {
			t.Errorf("state file holds %q, want the previous value 0", got)
		}
		if err := dial(top.g1.ns, worldTCP, okWait); err != nil {
			t.Errorf("g1 with nat could not connect to the world: %v", err)
		}
		if src := udpFrom(t, top.g1, netip.Addr{}, okWait); src != uplinkHost {
			t.Errorf("g1's datagram arrived from %q, want masqueraded to %s", src, uplinkHost)
		}
		if err := dial(top.g2.ns, worldTCP, failWait); err == nil {
			t.Error("g2 without nat reached the world while g1 has nat")
		}
		if src := udpFrom(t, top.g2, netip.Addr{}, failWait); src != "" {
			t.Errorf("g2's datagram reached the world from %s", src)
		}
		var got []Entry
		top.do(t, "Entries", func() (err error) { got, err = m.Entries(ctx); return err })
		if want := []Entry{top.g1.entry(vm1)}; !slices.Equal(got, want) {
			t.Errorf("Entries = %v, want %v", got, want)
		}
	})

	t.Run("spoofing a nat guest's address is dropped", func(t *testing.T) {
		if src := udpFrom(t, top.g2, top.g1.ip, failWait); src != "" {
			t.Errorf("g2 sending as g1 reached the world from %s", src)
		}
		// Control: without the bridge table the spoofed datagram gets out.
		run(t, "ip", "netns", "exec", top.h, "nft", "delete", "table", "bridge", TableName(bridgeName))
		if src := udpFrom(t, top.g2, top.g1.ip, okWait); src != uplinkHost {
			t.Errorf("control without the bridge table: spoofed datagram from %q, want %s", src, uplinkHost)
		}
		top.do(t, "Add g1 again", func() error { return m.Add(ctx, top.g1.entry(vm1)) })
		if src := udpFrom(t, top.g2, top.g1.ip, failWait); src != "" {
			t.Errorf("after re-adding g1, g2 sending as g1 reached the world from %s", src)
		}
	})

	t.Run("guest to guest through the host", func(t *testing.T) {
		g2Addr := top.g2.ip.String() + ":7000"
		listenTCP(t, top.g2.ns, g2Addr)
		// Each guest routes to the other through the host, and the host
		// sends no redirects that would make them try the (isolated)
		// direct path instead.
		for _, p := range [][2]guest{{top.g1, top.g2}, {top.g2, top.g1}} {
			ipCmd(t, "-n", p[0].ns, "route", "add", p[1].ip.String()+"/32", "via", "10.77.0.1")
		}
		for _, dev := range []string{"all", bridgeName} {
			run(t, "ip", "netns", "exec", top.h, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/"+dev+"/send_redirects")
		}
		if err := dial(top.g1.ns, g2Addr, failWait); err == nil {
			t.Error("g1 reached g2 routed through the host with guest_to_guest off")
		}
		open, err := newManager(top.config(t, true), nil, runNft, procIPForward)
		if err != nil {
			t.Fatal(err)
		}
		top.do(t, "Sync guest_to_guest", func() error { return open.Sync(ctx, []Entry{top.g1.entry(vm1)}) })
		if err := dial(top.g1.ns, g2Addr, okWait); err != nil {
			t.Errorf("with guest_to_guest on, g1 could not reach g2 through the host: %v", err)
		}
		top.do(t, "Teardown guest_to_guest", func() error { return open.Teardown(ctx) })
		top.do(t, "Sync back", func() error { return m.Sync(ctx, []Entry{top.g1.entry(vm1)}) })
	})

	t.Run("add is idempotent", func(t *testing.T) {
		before := top.ruleset(t)
		top.do(t, "Add g1", func() error { return m.Add(ctx, top.g1.entry(vm1)) })
		if after := top.ruleset(t); after != before {
			t.Errorf("ruleset changed by a repeated Add:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		checkMentions(t, top, vm1, top.g1, true)
	})

	t.Run("remove takes everything of the vm", func(t *testing.T) {
		for i := range 2 {
			top.do(t, "Remove g1", func() error { return m.Remove(ctx, vm1) })
			checkMentions(t, top, vm1, top.g1, false)
			if got := top.forward(t); got != "0" {
				t.Errorf("Remove call %d: ip_forward = %q, want 0 restored", i+1, got)
			}
		}
		if _, err := os.Stat(cfg.StateFile); err == nil {
			t.Error("state file left after the last nat guest went")
		}
		if err := dial(top.g1.ns, worldTCP, failWait); err == nil {
			t.Error("g1 reached the world after its nat was removed")
		}
	})

	t.Run("previous forwarding value 1 is restored", func(t *testing.T) {
		top.setForward(t, "1")
		top.do(t, "Add g2", func() error { return m.Add(ctx, top.g2.entry(vm2)) })
		if got := readFile(t, cfg.StateFile); got != "1" {
			t.Errorf("state file holds %q, want 1", got)
		}
		if err := dial(top.g2.ns, worldTCP, okWait); err != nil {
			t.Errorf("g2 with nat could not connect: %v", err)
		}
		top.do(t, "Remove g2", func() error { return m.Remove(ctx, vm2) })
		if got := top.forward(t); got != "1" {
			t.Errorf("ip_forward after Remove = %q, want 1 restored", got)
		}
		top.setForward(t, "0")
	})

	t.Run("crash and reconcile", func(t *testing.T) {
		top.do(t, "Sync g1 g2", func() error { return m.Sync(ctx, []Entry{top.g1.entry(vm1), top.g2.entry(vm2)}) })
		checkMentions(t, top, vm1, top.g1, true)
		// The daemon dies; a new one knows only the store and the state
		// file. g1 was deleted meanwhile.
		var m2 *Manager
		top.do(t, "New after crash", func() (err error) { m2, err = New(cfg, nil); return err })
		top.do(t, "Sync g2", func() error { return m2.Sync(ctx, []Entry{top.g2.entry(vm2)}) })
		checkMentions(t, top, vm1, top.g1, false)
		checkMentions(t, top, vm2, top.g2, true)
		if err := dial(top.g1.ns, worldTCP, failWait); err == nil {
			t.Error("g1 reached the world after reconcile dropped it")
		}
		if err := dial(top.g2.ns, worldTCP, okWait); err != nil {
			t.Errorf("g2 lost nat over reconcile: %v", err)
		}
		top.do(t, "Sync none", func() error { return m2.Sync(ctx, nil) })
		checkMentions(t, top, vm2, top.g2, false)
		if got := top.forward(t); got != "0" {
			t.Errorf("ip_forward after reconcile with no nat guests = %q, want 0", got)
		}
	})

	t.Run("teardown", func(t *testing.T) {
		top.do(t, "Add g1", func() error { return m.Add(ctx, top.g1.entry(vm1)) })
		top.do(t, "Teardown", func() error { return m.Teardown(ctx) })
		if rs := strings.TrimSpace(top.ruleset(t)); rs != "" {
			t.Errorf("ruleset after Teardown:\n%s\nwant empty", rs)
		}
		if got := top.forward(t); got != "0" {
			t.Errorf("ip_forward after Teardown = %q, want 0", got)
		}
		var got []Entry
		top.do(t, "Entries", func() (err error) { got, err = m.Entries(ctx); return err })
		if len(got) != 0 {
			t.Errorf("Entries after Teardown = %v, want none", got)
		}
	})
}

// TestNATRulesetDump logs the ruleset for two guests, for the record.
func TestNATRulesetDump(t *testing.T) {
	top := newTopology(t)
	cfg := top.config(t, false)
	var m *Manager
	top.do(t, "New", func() (err error) { m, err = New(cfg, nil); return err })
	top.do(t, "Sync", func() error {
		return m.Sync(t.Context(), []Entry{top.g1.entry(vm1), top.g2.entry(vm2)})
	})
	rs := top.ruleset(t)
	if !strings.Contains(rs, "masquerade") {
		t.Errorf("ruleset lacks masquerade:\n%s", rs)
	}
	t.Logf("ruleset:\n%s", rs)
	top.do(t, "Teardown", func() error { return m.Teardown(t.Context()) })
}
