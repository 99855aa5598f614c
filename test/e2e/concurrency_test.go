//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentCreateDelete runs twenty creates, then twenty deletes,
// each from its own CLI process at once: no database-busy errors, no
// duplicate names or addresses, nothing leaked. No daemon runs when the
// creates begin: each CLI may start one, and exactly one must serve.
func TestConcurrentCreateDelete(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	e.ok("daemon", "stop")
	for deadline := time.Now().Add(10 * time.Second); len(e.daemonPIDs()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("daemons left 10 s after daemon stop: %v", e.daemonPIDs())
		}
	}

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
	if pids := e.daemonPIDs(); len(pids) != 1 {
		t.Errorf("bangerd processes for this home after concurrent starts: got %v, want exactly one", pids)
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

// daemonPIDs lists the live bangerd processes serving this env's home.
func (e *env) daemonPIDs() []int {
	e.t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		e.t.Fatal(err)
	}
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "bangerd" {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, environ...), []byte("\x00BANGER_HOME="+e.home+"\x00")) {
			continue
		}
		if processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
