//go:build e2e

package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentCreateDelete runs twenty creates, then twenty deletes,
// each from its own CLI process at once: no database-busy errors, no
// duplicate names or addresses, nothing leaked.
func TestConcurrentCreateDelete(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	e.ok("vm", "list") // one daemon for all

	const n = 20
	run := func(args func(i int) []string) []result {
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = e.bangerTimeout(5*time.Minute, args(i)...)
			}()
		}
		wg.Wait()
		return results
	}
	for i, r := range run(func(i int) []string {
		return []string{"vm", "create", "--no-start", "--name", fmt.Sprintf("par-%d", i)}
	}) {
		if r.code != 0 {
			t.Errorf("create par-%d: %s", i, r)
		}
	}
	vms := e.vms()
	if len(vms) != n {
		t.Fatalf("got %d vms, want %d", len(vms), n)
	}
	names, ips := map[string]bool{}, map[string]bool{}
	for _, v := range vms {
		if names[v.Name] || ips[v.Runtime.GuestIP] {
			t.Errorf("duplicate name %q or ip %q", v.Name, v.Runtime.GuestIP)
		}
		names[v.Name], ips[v.Runtime.GuestIP] = true, true
	}
	for i, r := range run(func(i int) []string { return []string{"vm", "delete", fmt.Sprintf("par-%d", i)} }) {
		if r.code != 0 {
			t.Errorf("delete par-%d: %s", i, r)
		}
	}
	e.assertClean("after concurrent create and delete")
}
