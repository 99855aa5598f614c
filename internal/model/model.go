// Package model holds banger's data model: the records the daemon stores
// and serves (images, VMs), their states and defaults, and the parsing
// rules for user-facing values such as sizes and names. It has no
// dependencies inside banger and may be imported by every package,
// including the guest agent.
package model

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Defaults of the daemon configuration and of new VMs.
const (
	DefaultBridgeName               = "br-fc"
	DefaultBridgeIP                 = "172.16.0.1"
	DefaultCIDR                     = "24"
	DefaultDNS                      = "1.1.1.1"
	DefaultSystemOverlaySize  int64 = 8 * 1024 * 1024 * 1024
	DefaultWorkDiskSize       int64 = 8 * 1024 * 1024 * 1024
	DefaultMemoryMiB                = 2048
	DefaultVCPUCount                = 2
	DefaultStatsPollInterval        = 10 * time.Second
	DefaultStaleSweepInterval       = 1 * time.Minute
	MaxDiskBytes              int64 = 128 * 1024 * 1024 * 1024
	DefaultJailerBinary             = "/usr/bin/jailer"

	// DefaultImageName is the image vm create and vm run use when none is named.
	DefaultImageName = "debian-bookworm"
	// MaxVCPUCount and MaxMemoryMiB bound what a VM may ask for.
	MaxVCPUCount = 64
	MaxMemoryMiB = 256 * 1024
	// MinMemoryMiB is the least memory a Debian guest boots with.
	MinMemoryMiB = 128
)

// VMState is the declared state of a VM.
type VMState string

// The states a VM can be in.
const (
	VMStateCreated VMState = "created"
	VMStateRunning VMState = "running"
	VMStateStopped VMState = "stopped"
	VMStateError   VMState = "error"
)

// Valid reports whether s is one of the known states.
func (s VMState) Valid() bool {
	switch s {
	case VMStateCreated, VMStateRunning, VMStateStopped, VMStateError:
		return true
	}
	return false
}

// Prunable reports whether vm prune deletes a VM in this state: stopped
// or failed, never one that runs or was created without being started.
func (s VMState) Prunable() bool {
	return s == VMStateStopped || s == VMStateError
}

// DaemonConfig is the daemon's resolved configuration.
type DaemonConfig struct {
	LogLevel           string
	VMM                string
	FirecrackerBin     string
	JailerBin          string
	JailerEnabled      bool
	JailerChrootBase   string
	SSHKeyPath         string
	HostHomeDir        string
	AutoStopStaleAfter time.Duration
	StatsPollInterval  time.Duration
	BridgeName         string
	BridgeIP           string
	CIDR               string
	TapPoolSize        int
	GuestToGuest       bool // guests may reach each other; default false: isolated bridge ports
	DefaultDNS         string
	DefaultImageName   string
	// DNSListen is the address of the .vm DNS server; "off" disables it.
	DNSListen string
	// PackageCacheDir keeps the Debian packages image builds download,
	// shared by every banger home on the host; builds run offline from
	// it when the mirror is unreachable.
	PackageCacheDir string
	FileSync        []FileSyncEntry
	VMDefaults      VMDefaultsOverride
}

// VMDefaultsOverride replaces the built-in defaults of new VMs. Zero
// fields keep the built-in value.
type VMDefaultsOverride struct {
	VCPUCount             int   `json:"vcpu_count,omitempty"`
	MemoryMiB             int   `json:"memory_mib,omitempty"`
	SystemOverlaySizeByte int64 `json:"system_overlay_size_bytes,omitempty"`
	WorkDiskSizeBytes     int64 `json:"work_disk_size_bytes,omitempty"`
	NATEnabled            bool  `json:"nat_enabled,omitempty"`
}

// FileSyncEntry is a host to guest file or directory copy applied to each
// new VM's work disk. Host is "~/..." under the owner's home; Guest is
// under /root. Mode defaults to 0600 for files and 0755 for directories.
type FileSyncEntry struct {
	Host  string `json:"host"`
	Guest string `json:"guest"`
	Mode  string `json:"mode,omitempty"`
}

// Image is a registered, immutable set of boot artifacts.
type Image struct {
	ID                            string    `json:"id"`
	Name                          string    `json:"name"`
	Managed                       bool      `json:"managed"`
	ArtifactDir                   string    `json:"artifact_dir,omitempty"`
	RootfsPath                    string    `json:"rootfs_path"`
	WorkSeedPath                  string    `json:"work_seed_path,omitempty"`
	KernelPath                    string    `json:"kernel_path"`
	InitrdPath                    string    `json:"initrd_path,omitempty"`
	ModulesDir                    string    `json:"modules_dir,omitempty"`
	KernelRef                     string    `json:"kernel_ref,omitempty"` // name of the catalog kernel the image boots
	BuildSize                     string    `json:"build_size,omitempty"`
	SeededSSHPublicKeyFingerprint string    `json:"seeded_ssh_public_key_fingerprint,omitempty"`
	CreatedAt                     time.Time `json:"created_at"`
	UpdatedAt                     time.Time `json:"updated_at"`
}

// VMSpec is what a VM asks for.
type VMSpec struct {
	VCPUCount             int   `json:"vcpu_count"`
	MemoryMiB             int   `json:"memory_mib"`
	SystemOverlaySizeByte int64 `json:"system_overlay_size_bytes"`
	WorkDiskSizeBytes     int64 `json:"work_disk_size_bytes"`
	NATEnabled            bool  `json:"nat_enabled"`
}

// VMRuntime holds the durable runtime state the daemon needs to reach a
// VM. Teardown-critical identifiers (TAP, loops, device-mapper names) are
// mirrored here from the live handles so cleanup after a restart still
// works when handles.json is missing or corrupt.
type VMRuntime struct {
	State       VMState `json:"state"`
	GuestIP     string  `json:"guest_ip"`
	APISockPath string  `json:"api_sock_path,omitempty"`
	VSockPath   string  `json:"vsock_path,omitempty"`
	VSockCID    uint32  `json:"vsock_cid,omitempty"`
	LogPath     string  `json:"log_path,omitempty"`
	MetricsPath string  `json:"metrics_path,omitempty"`
	DNSName     string  `json:"dns_name,omitempty"`
	VMDir       string  `json:"vm_dir"`

	// VMM names the driver that runs the VM and Accel its accelerator
	// (kvm or tcg); PID and PIDStartTime identify its process.
	VMM          string `json:"vmm,omitempty"`
	Accel        string `json:"accel,omitempty"`
	PID          int    `json:"pid,omitempty"`
	PIDStartTime uint64 `json:"pid_start_time,omitempty"`
	MACAddress   string `json:"mac_address,omitempty"`

	TapDevice     string `json:"tap_device,omitempty"`
	BaseLoop      string `json:"base_loop,omitempty"`
	COWLoop       string `json:"cow_loop,omitempty"`
	DMName        string `json:"dm_name,omitempty"`
	DMDev         string `json:"dm_dev,omitempty"`
	SystemOverlay string `json:"system_overlay_path"`
	// RootfsBackend is how the system disk was made for a VMM that takes
	// raw disks only (dm-snapshot, reflink, sparse); empty for a qcow2
	// overlay.
	RootfsBackend string `json:"rootfs_backend,omitempty"`
	WorkDiskPath  string `json:"work_disk_path"`
	LastError     string `json:"last_error,omitempty"`
	// Intent records a multi-step operation in progress ("creating",
	// "deleting") before its first side effect, so a daemon that dies
	// part-way knows at its next start what to finish or undo.
	Intent string `json:"intent,omitempty"`
}

// The intents a VM record can carry.
const (
	IntentCreating = "creating"
	IntentDeleting = "deleting"
)

// VMStats is the last sample of a VM's resource use.
type VMStats struct {
	CollectedAt        time.Time      `json:"collected_at,omitempty"`
	CPUPercent         float64        `json:"cpu_percent,omitempty"`
	RSSBytes           int64          `json:"rss_bytes,omitempty"`
	VSZBytes           int64          `json:"vsz_bytes,omitempty"`
	SystemOverlayBytes int64          `json:"system_overlay_bytes,omitempty"`
	WorkDiskBytes      int64          `json:"work_disk_bytes,omitempty"`
	MetricsRaw         map[string]any `json:"metrics_raw,omitempty"`
}

// VMRecord is a VM as the daemon stores and serves it.
type VMRecord struct {
	ID            string      `json:"id"`
	Name          string      `json:"name"`
	ImageID       string      `json:"image_id"`
	ImageName     string      `json:"image_name,omitempty"`
	State         VMState     `json:"state"`
	CreatedAt     time.Time   `json:"created_at"`
	UpdatedAt     time.Time   `json:"updated_at"`
	LastTouchedAt time.Time   `json:"last_touched_at"`
	Spec          VMSpec      `json:"spec"`
	Runtime       VMRuntime   `json:"runtime"`
	Stats         VMStats     `json:"stats"`
	Workspace     VMWorkspace `json:"workspace"`
}

// VMCreateRequest asks for a new VM. Zero values take the defaults.
type VMCreateRequest struct {
	Name                  string `json:"name,omitempty"`
	ImageName             string `json:"image_name,omitempty"`
	VCPUCount             int    `json:"vcpu_count,omitempty"`
	MemoryMiB             int    `json:"memory_mib,omitempty"`
	SystemOverlaySizeByte int64  `json:"system_overlay_size_bytes,omitempty"`
	WorkDiskSizeBytes     int64  `json:"work_disk_size_bytes,omitempty"`
	NATEnabled            bool   `json:"nat_enabled,omitempty"`
	NoStart               bool   `json:"no_start,omitempty"`
}

// VMSetRequest changes a VM's spec; nil fields stay as they are.
type VMSetRequest struct {
	IDOrName          string `json:"id_or_name"`
	VCPUCount         *int   `json:"vcpu_count,omitempty"`
	MemoryMiB         *int   `json:"memory_mib,omitempty"`
	WorkDiskSizeBytes *int64 `json:"work_disk_size_bytes,omitempty"`
	NATEnabled        *bool  `json:"nat_enabled,omitempty"`
}

// VMWorkspace records the last successful workspace prepare on a VM.
type VMWorkspace struct {
	GuestPath  string    `json:"guest_path,omitempty"`
	SourcePath string    `json:"source_path,omitempty"`
	HeadCommit string    `json:"head_commit,omitempty"`
	PreparedAt time.Time `json:"prepared_at,omitempty"`
	// Mode and IncludeUntracked repeat the prepare for --auto-prepare;
	// Fingerprint is the host repository's state at prepare time, to
	// warn when it has moved since.
	Mode             WorkspacePrepareMode `json:"mode,omitempty"`
	IncludeUntracked bool                 `json:"include_untracked,omitempty"`
	Fingerprint      string               `json:"fingerprint,omitempty"`
	// Branch is the host repository's branch at prepare time (empty
	// when HEAD was detached). GuestBranch is the branch --branch made
	// in the guest copy, starting at the commit GuestBranchFrom (HEAD
	// when empty).
	Branch          string `json:"branch,omitempty"`
	GuestBranch     string `json:"guest_branch,omitempty"`
	GuestBranchFrom string `json:"guest_branch_from,omitempty"`
}

// WorkspacePrepareMode says how a repository reaches the guest.
type WorkspacePrepareMode string

// The workspace prepare modes.
const (
	WorkspacePrepareModeShallowOverlay WorkspacePrepareMode = "shallow_overlay"
	WorkspacePrepareModeFullCopy       WorkspacePrepareMode = "full_copy"
	WorkspacePrepareModeMetadataOnly   WorkspacePrepareMode = "metadata_only"
)

// WorkspacePrepareResult reports what a workspace prepare did.
type WorkspacePrepareResult struct {
	VMID          string               `json:"vm_id"`
	SourcePath    string               `json:"source_path"`
	RepoRoot      string               `json:"repo_root"`
	RepoName      string               `json:"repo_name"`
	GuestPath     string               `json:"guest_path"`
	Mode          WorkspacePrepareMode `json:"mode"`
	HeadCommit    string               `json:"head_commit,omitempty"`
	CurrentBranch string               `json:"current_branch,omitempty"`
	BranchName    string               `json:"branch_name,omitempty"`
	BaseCommit    string               `json:"base_commit,omitempty"`
	PreparedAt    time.Time            `json:"prepared_at"`
}

// Now is the time stamp of records: UTC, whole seconds.
func Now() time.Time {
	return time.Now().UTC().Truncate(time.Second)
}

// NewID returns a random identifier of 64 hex characters.
func NewID() (string, error) {
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return hex.EncodeToString(buf), nil
}

// NewOpID returns an operation id, "op-" and 12 hex characters, that
// traces one request through the daemon's log and the CLI's error line.
func NewOpID() (string, error) {
	buf := make([]byte, 6)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("new op id: %w", err)
	}
	return "op-" + hex.EncodeToString(buf), nil
}
