package model

import (
	"encoding/json"
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := NewID()
		if err != nil {
			t.Fatalf("NewID: got error %v, want nil", err)
		}
		if !re.MatchString(id) {
			t.Fatalf("NewID: got %q, want 64 lowercase hex characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID: got %q twice in 100 calls", id)
		}
		seen[id] = true
	}
}

func TestNewOpID(t *testing.T) {
	re := regexp.MustCompile(`^op-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := NewOpID()
		if err != nil {
			t.Fatalf("NewOpID: got error %v, want nil", err)
		}
		if !re.MatchString(id) {
			t.Fatalf("NewOpID: got %q, want op- and 12 lowercase hex characters", id)
		}
		if seen[id] {
			t.Fatalf("NewOpID: got %q twice in 100 calls", id)
		}
		seen[id] = true
	}
}

func TestNow(t *testing.T) {
	got := Now()
	if got.Location() != time.UTC {
		t.Errorf("Now().Location(): got %v, want UTC", got.Location())
	}
	if got.Nanosecond() != 0 {
		t.Errorf("Now().Nanosecond(): got %d, want 0", got.Nanosecond())
	}
}

func TestVMStateValid(t *testing.T) {
	tests := []struct {
		state VMState
		want  bool
	}{
		{VMStateCreated, true},
		{VMStateRunning, true},
		{VMStateStopped, true},
		{VMStateError, true},
		{"", false},
		{"Running", false},
		{"starting", false},
		{"deleted", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			if got := tt.state.Valid(); got != tt.want {
				t.Errorf("VMState(%q).Valid(): got %v, want %v", tt.state, got, tt.want)
			}
		})
	}
}

func TestStateAndModeValues(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"created", string(VMStateCreated), "created"},
		{"running", string(VMStateRunning), "running"},
		{"stopped", string(VMStateStopped), "stopped"},
		{"error", string(VMStateError), "error"},
		{"shallow_overlay", string(WorkspacePrepareModeShallowOverlay), "shallow_overlay"},
		{"full_copy", string(WorkspacePrepareModeFullCopy), "full_copy"},
		{"metadata_only", string(WorkspacePrepareModeMetadataOnly), "metadata_only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"bridge name", DefaultBridgeName, "br-fc"},
		{"bridge ip", DefaultBridgeIP, "172.16.0.1"},
		{"cidr", DefaultCIDR, "24"},
		{"dns", DefaultDNS, "1.1.1.1"},
		{"system overlay", DefaultSystemOverlaySize, int64(8 << 30)},
		{"work disk", DefaultWorkDiskSize, int64(8 << 30)},
		{"memory", DefaultMemoryMiB, 2048},
		{"vcpu", DefaultVCPUCount, 2},
		{"stats poll", DefaultStatsPollInterval, 10 * time.Second},
		{"stale sweep", DefaultStaleSweepInterval, time.Minute},
		{"disk ceiling", MaxDiskBytes, int64(128 << 30)},
		{"jailer", DefaultJailerBinary, "/usr/bin/jailer"},
		{"image", DefaultImageName, "debian-bookworm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

// jsonKeys marshals v and returns its top-level keys, sorted.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("unmarshal %T: %v", v, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sorted(keys ...string) []string {
	slices.Sort(keys)
	return keys
}

// TestJSONFieldNames checks the wire names against the reference data
// model (shared/seed/model-types.go.txt), with every field set so
// omitempty keeps them all.
func TestJSONFieldNames(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := VMRecord{
		ID: "id", Name: "vm", ImageID: "img", ImageName: "debian", State: VMStateRunning,
		CreatedAt: ts, UpdatedAt: ts, LastTouchedAt: ts,
	}
	tests := []struct {
		name string
		v    any
		want []string
	}{
		{"VMRecord", rec, sorted("id", "name", "image_id", "image_name", "state", "created_at", "updated_at",
			"last_touched_at", "spec", "runtime", "stats", "workspace")},
		{"VMSpec", VMSpec{}, sorted("vcpu_count", "memory_mib", "system_overlay_size_bytes", "work_disk_size_bytes", "nat_enabled")},
		{"VMRuntime", VMRuntime{
			State: VMStateRunning, GuestIP: "172.16.0.2", APISockPath: "a", VSockPath: "v", VSockCID: 3, LogPath: "l",
			MetricsPath: "m", DNSName: "vm.vm", VMDir: "d", VMM: "qemu", Accel: "tcg", PID: 1, PIDStartTime: 2,
			MACAddress: "02:00:00:00:00:01", TapDevice: "t", BaseLoop: "b", COWLoop: "c", DMName: "dm", DMDev: "dd",
			SystemOverlay: "o", WorkDiskPath: "w", LastError: "e",
		}, sorted("state", "guest_ip", "api_sock_path", "vsock_path", "vsock_cid", "log_path", "metrics_path",
			"dns_name", "vm_dir", "vmm", "accel", "pid", "pid_start_time", "mac_address", "tap_device", "base_loop",
			"cow_loop", "dm_name", "dm_dev", "system_overlay_path", "work_disk_path", "last_error")},
		{"VMRuntime empty", VMRuntime{}, sorted("state", "guest_ip", "vm_dir", "system_overlay_path", "work_disk_path")},
		{"VMStats", VMStats{
			CollectedAt: ts, CPUPercent: 1.5, RSSBytes: 1, VSZBytes: 2, SystemOverlayBytes: 3, WorkDiskBytes: 4,
			MetricsRaw: map[string]any{"k": 1},
		}, sorted("collected_at", "cpu_percent", "rss_bytes", "vsz_bytes", "system_overlay_bytes", "work_disk_bytes", "metrics_raw")},
		{"VMWorkspace", VMWorkspace{GuestPath: "g", SourcePath: "s", HeadCommit: "h", PreparedAt: ts},
			sorted("guest_path", "source_path", "head_commit", "prepared_at")},
		{"Image", Image{
			ID: "id", Name: "n", Managed: true, ArtifactDir: "a", RootfsPath: "r", WorkSeedPath: "w", KernelPath: "k",
			InitrdPath: "i", ModulesDir: "m", BuildSize: "8G", SeededSSHPublicKeyFingerprint: "SHA256:x",
			CreatedAt: ts, UpdatedAt: ts,
		}, sorted("id", "name", "managed", "artifact_dir", "rootfs_path", "work_seed_path", "kernel_path",
			"initrd_path", "modules_dir", "build_size", "seeded_ssh_public_key_fingerprint", "created_at", "updated_at")},
		{"Image empty", Image{}, sorted("id", "name", "managed", "rootfs_path", "kernel_path", "created_at", "updated_at")},
		{"WorkspacePrepareResult", WorkspacePrepareResult{
			VMID: "v", SourcePath: "s", RepoRoot: "r", RepoName: "n", GuestPath: "g", Mode: WorkspacePrepareModeFullCopy,
			HeadCommit: "h", CurrentBranch: "c", BranchName: "b", BaseCommit: "bc", PreparedAt: ts,
		}, sorted("vm_id", "source_path", "repo_root", "repo_name", "guest_path", "mode", "head_commit",
			"current_branch", "branch_name", "base_commit", "prepared_at")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jsonKeys(t, tt.v); !slices.Equal(got, tt.want) {
				t.Errorf("JSON keys of %s:\n got %v\nwant %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestVMRecordJSONRoundTrip(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	in := VMRecord{
		ID: "0123", Name: "vm", ImageID: "img", State: VMStateStopped, CreatedAt: ts, UpdatedAt: ts, LastTouchedAt: ts,
		Spec:    VMSpec{VCPUCount: 2, MemoryMiB: 2048, SystemOverlaySizeByte: 8 << 30, WorkDiskSizeBytes: 4 << 30, NATEnabled: true},
		Runtime: VMRuntime{State: VMStateStopped, GuestIP: "172.16.0.9", SystemOverlay: "/o", WorkDiskPath: "/w", PIDStartTime: 1 << 40},
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var out VMRecord
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if out.Spec != in.Spec || out.Runtime != in.Runtime || out.ID != in.ID || out.State != in.State || !out.CreatedAt.Equal(in.CreatedAt) {
		t.Errorf("round trip: got %+v, want %+v", out, in)
	}
}
