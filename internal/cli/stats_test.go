package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"banger/internal/api"
	"banger/internal/model"
)

func TestPrintStatsTable(t *testing.T) {
	sampled := time.Now().Add(-30 * time.Second)
	tests := []struct {
		name  string
		entry api.VMStatsEntry
		want  []string // the row's fields
	}{
		{
			name: "running",
			entry: api.VMStatsEntry{Name: "dev", State: model.VMStateRunning, Stats: model.VMStats{
				CollectedAt: sampled, CPUPercent: 12.34, RSSBytes: 300 << 20, VSZBytes: 3 << 30,
				SystemOverlayBytes: 12 << 20, WorkDiskBytes: 1536 << 20,
			}},
			want: []string{"dev", "running", "12.3", "300.0 MiB", "3.0 GiB", "12.0 MiB", "1.5 GiB", "30s ago"},
		},
		{
			name: "running and idle",
			entry: api.VMStatsEntry{Name: "quiet", State: model.VMStateRunning, Stats: model.VMStats{
				CollectedAt: sampled, RSSBytes: 100 << 20, VSZBytes: 1 << 30,
			}},
			want: []string{"quiet", "running", "0.0", "100.0 MiB", "1.0 GiB", "0 B", "0 B", "30s ago"},
		},
		{
			name: "stopped keeps disks",
			entry: api.VMStatsEntry{Name: "old", State: model.VMStateStopped, Stats: model.VMStats{
				CollectedAt: sampled, SystemOverlayBytes: 2 << 20, WorkDiskBytes: 900,
			}},
			want: []string{"old", "stopped", "-", "-", "-", "2.0 MiB", "900 B", "30s ago"},
		},
		{
			name:  "never sampled",
			entry: api.VMStatsEntry{Name: "new", State: model.VMStateCreated},
			want:  []string{"new", "created", "-", "-", "-", "0 B", "0 B", "never"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printStatsTable(&buf, []api.VMStatsEntry{tt.entry}); err != nil {
				t.Fatalf("printStatsTable: %v", err)
			}
			lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("got %d lines, want header and one row:\n%s", len(lines), buf.String())
			}
			if got, want := strings.Fields(lines[0]), []string{"NAME", "STATE", "CPU%", "RSS", "VSZ", "OVERLAY", "WORK", "SAMPLED"}; strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("header: got %q, want %q", got, want)
			}
			// Columns are two or more spaces apart; sizes hold one space.
			var got []string
			for _, f := range strings.Split(lines[1], "  ") {
				if f = strings.TrimSpace(f); f != "" {
					got = append(got, f)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("row: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatsJSONNames(t *testing.T) {
	e := api.VMStatsEntry{Name: "dev", ID: "abc", State: model.VMStateRunning, Stats: model.VMStats{
		CollectedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), CPUPercent: 1.5, RSSBytes: 1, VSZBytes: 2,
		SystemOverlayBytes: 3, WorkDiskBytes: 4,
	}}
	var buf bytes.Buffer
	if err := printJSON(&buf, []api.VMStatsEntry{e}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("decode %s: %v", buf.String(), err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d entries, want 1", len(got))
	}
	for _, key := range []string{"name", "id", "state", "stats"} {
		if _, ok := got[0][key]; !ok {
			t.Errorf("entry: got keys %v, want %q", keys(got[0]), key)
		}
	}
	stats, _ := got[0]["stats"].(map[string]any)
	for _, key := range []string{"collected_at", "cpu_percent", "rss_bytes", "vsz_bytes", "system_overlay_bytes", "work_disk_bytes"} {
		if _, ok := stats[key]; !ok {
			t.Errorf("stats: got keys %v, want %q", keys(stats), key)
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestStatsCommandArgs(t *testing.T) {
	cmd := newVMStatsCmd(&globals{})
	if cmd.Args == nil {
		t.Fatal("Args: got nil, want a validator accepting any number of VMs")
	}
	for _, args := range [][]string{nil, {"a"}, {"a", "b", "c"}} {
		if err := cmd.Args(cmd, args); err != nil {
			t.Errorf("args %q: got %v, want accepted", args, err)
		}
	}
	if f := cmd.Flags().Lookup("json"); f == nil || f.DefValue != "false" {
		t.Errorf("--json flag: got %v, want a bool defaulting to false", f)
	}
}
