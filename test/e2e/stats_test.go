//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banger/internal/api"
	"banger/internal/model"
)

// TestStatsAndIdleStop checks that vm stats shows a busy VM's CPU and
// memory, and that an idle VM is stopped by the sweep (within two sweeps
// of going stale) and keeps its work disk.
func TestStatsAndIdleStop(t *testing.T) {
	e := newEnv(t)
	config := "auto_stop_stale_after = \"20s\"\nstats_poll_interval = \"2s\"\n"
	if err := os.WriteFile(filepath.Join(e.home, "config.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ensureImage()
	e.ok("vm", "run", "-d", "--name", "busy")
	e.ok("vm", "exec", "busy", "--", "sh", "-c", "echo data > /root/data.txt; sync; (timeout 20 sh -c 'while :; do :; done' >/dev/null 2>&1 &)")
	time.Sleep(6 * time.Second)

	var entries []api.VMStatsEntry
	r := e.ok("vm", "stats", "--json", "busy")
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 1 {
		t.Fatalf("decode vm stats: %v\n%s", err, r.stdout)
	}
	st := entries[0].Stats
	if st.CPUPercent < 10 || st.RSSBytes < 64<<20 || st.WorkDiskBytes == 0 || st.SystemOverlayBytes == 0 {
		t.Errorf("busy vm stats: cpu %.1f%% rss %d overlay %d work %d, want cpu >= 10%%, rss >= 64 MiB, non-zero disks",
			st.CPUPercent, st.RSSBytes, st.SystemOverlayBytes, st.WorkDiskBytes)
	}

	// Untouched from now on: stale after 20 s, swept every minute.
	deadline := time.Now().Add(2*model.DefaultStaleSweepInterval + 30*time.Second)
	for e.vm("busy").State == model.VMStateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("idle vm still running after %s", 2*model.DefaultStaleSweepInterval+30*time.Second)
		}
		time.Sleep(2 * time.Second)
	}
	if got := e.vm("busy").State; got != model.VMStateStopped {
		t.Fatalf("idle vm: state %q, want stopped", got)
	}
	log, _ := os.ReadFile(filepath.Join(e.home, "logs", "bangerd.log"))
	if !strings.Contains(string(log), "stopping idle vm") {
		t.Errorf("daemon log does not say why the vm was stopped")
	}
	e.ok("vm", "start", "busy")
	if r := e.ok("vm", "exec", "busy", "--", "cat", "/root/data.txt"); strings.TrimSpace(r.stdout) != "data" {
		t.Errorf("after the idle stop: /root/data.txt = %q, want data", r.stdout)
	}
	e.ok("vm", "delete", "busy")
	e.assertClean("end")
}
