package firecracker

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/vmm"
)

// Version is a Firecracker (or jailer) release.
type Version struct{ Major, Minor, Patch int }

// MinVersion is the oldest Firecracker the driver runs.
var MinVersion = Version{1, 5, 0}

// Versions where behaviour the driver relies on changed.
var (
	// versionJailerPIDFile: the jailer leaves Firecracker's pid in
	// <chroot>/<exec name>.pid in every mode (firecracker#4442), as
	// --daemonize forks since (#4259). Before it, only --new-pid-ns
	// wrote it. The driver passes neither flag: the jailer execs
	// Firecracker in place, so its pid is the launched one either way.
	versionJailerPIDFile = Version{1, 7, 0}
	// versionPerDeviceMetrics: metrics carry "block_<drive_id>" and
	// "net_<iface_id>" objects beside the aggregates.
	versionPerDeviceMetrics = Version{1, 6, 0}
	// versionLoggerV2: the logger rewrite (firecracker#4047): log_path
	// optional, levels Trace and Off added, default level Info.
	versionLoggerV2 = Version{1, 5, 0}
)

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

var versionRE = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads the version from the output of `firecracker
// --version` ("Firecracker v1.7.0", followed before 1.6 by the snapshot
// versions it supports) or `jailer --version` ("Jailer v1.7.0").
func ParseVersion(out string) (Version, error) {
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	m := versionRE.FindStringSubmatch(first)
	if m == nil {
		return Version{}, fmt.Errorf("parse version from %q: no x.y.z version", first)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// Request is one call on Firecracker's API.
type Request struct {
	Method string
	Path   string
	Body   any // marshalled as JSON; nil for none
}

// The request bodies, named after the API's definitions.
type (
	MachineConfig struct {
		VCPUCount  int `json:"vcpu_count"`
		MemSizeMiB int `json:"mem_size_mib"`
	}
	BootSource struct {
		KernelImagePath string `json:"kernel_image_path"`
		BootArgs        string `json:"boot_args,omitempty"`
		InitrdPath      string `json:"initrd_path,omitempty"`
	}
	Drive struct {
		DriveID      string `json:"drive_id"`
		PathOnHost   string `json:"path_on_host"`
		IsRootDevice bool   `json:"is_root_device"`
		IsReadOnly   bool   `json:"is_read_only"`
		CacheType    string `json:"cache_type,omitempty"`
	}
	NetworkInterface struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
		GuestMAC    string `json:"guest_mac,omitempty"`
	}
	Vsock struct {
		GuestCID uint32 `json:"guest_cid"`
		UDSPath  string `json:"uds_path"`
	}
	Logger struct {
		LogPath       string `json:"log_path"`
		Level         string `json:"level,omitempty"`
		ShowLevel     bool   `json:"show_level"`
		ShowLogOrigin bool   `json:"show_log_origin"`
	}
	Metrics struct {
		MetricsPath string `json:"metrics_path"`
	}
	Action struct {
		ActionType string `json:"action_type"`
	}
	// InstanceInfo is the answer of GET /.
	InstanceInfo struct {
		AppName    string `json:"app_name"`
		ID         string `json:"id"`
		State      string `json:"state"`
		VMMVersion string `json:"vmm_version"`
	}
)

// Instance states in InstanceInfo.
const (
	StateNotStarted = "Not started"
	StateRunning    = "Running"
	StatePaused     = "Paused"
)

// Actions.
const (
	ActionInstanceStart  = "InstanceStart"
	ActionSendCtrlAltDel = "SendCtrlAltDel"
	ActionFlushMetrics   = "FlushMetrics"
)

// netIfaceID is the id of the guest's one network interface.
const netIfaceID = "eth0"

// Layout is where Firecracker finds a machine's files, as Firecracker
// sees them: host paths, or paths inside the jail when jailed.
type Layout struct {
	Kernel  string
	Initrd  string   // "" for none
	Drives  []string // one per spec.Disks, in order
	Vsock   string   // "" for no vsock device
	Log     string
	Metrics string
}

var driveIDRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// ConfigRequests returns the pre-boot requests that configure spec's
// machine on a Firecracker of version v, in the order they are sent:
// logger and metrics first (so later failures are logged), machine,
// boot source, drives, network interface, vsock. InstanceStart follows
// them (StartRequest).
//
// Every body is valid for API 1.0 (the SDK's swagger) and for the API of
// Firecracker 1.5 and later: the fields sent exist, with the same types,
// in both. The only difference made by version is the log level: the
// 1.5 logger rewrite made Info the default, the 1.0 API defaults to
// Warning; the driver asks for the default of the version it runs.
// Drives are never root devices: the command line names the root, and
// Firecracker would append a second root= otherwise.
func ConfigRequests(spec vmm.Spec, l Layout, v Version) ([]Request, error) {
	if len(l.Drives) != len(spec.Disks) {
		return nil, fmt.Errorf("build requests: %d drive paths for %d disks", len(l.Drives), len(spec.Disks))
	}
	level := "Warning"
	if !v.Less(versionLoggerV2) {
		level = "Info"
	}
	reqs := []Request{
		{"PUT", "/logger", Logger{LogPath: l.Log, Level: level, ShowLevel: true}},
		{"PUT", "/metrics", Metrics{MetricsPath: l.Metrics}},
		{"PUT", "/machine-config", MachineConfig{VCPUCount: spec.VCPUs, MemSizeMiB: spec.MemoryMiB}},
		{"PUT", "/boot-source", BootSource{KernelImagePath: l.Kernel, BootArgs: bootArgs(spec.Cmdline), InitrdPath: l.Initrd}},
	}
	for i, id := range vmm.DiskIDs(spec.Disks, driveIDRE) {
		reqs = append(reqs, Request{"PUT", "/drives/" + id, Drive{
			DriveID:    id,
			PathOnHost: l.Drives[i],
			IsReadOnly: spec.Disks[i].ReadOnly,
			// Writeback honours the guest's flushes: the work disk
			// holds the user's data.
			CacheType: "Writeback",
		}})
	}
	if spec.TapDevice != "" {
		reqs = append(reqs, Request{"PUT", "/network-interfaces/" + netIfaceID, NetworkInterface{
			IfaceID: netIfaceID, HostDevName: spec.TapDevice, GuestMAC: spec.MAC,
		}})
	}
	if l.Vsock != "" {
		if spec.VSockCID < 3 {
			return nil, errdefs.Invalid(fmt.Errorf("build requests: vsock cid %d: must be at least 3", spec.VSockCID))
		}
		reqs = append(reqs, Request{"PUT", "/vsock", Vsock{GuestCID: spec.VSockCID, UDSPath: l.Vsock}})
	}
	return reqs, nil
}

// StartRequest boots the configured machine.
func StartRequest() Request { return actionRequest(ActionInstanceStart) }

// CtrlAltDelRequest asks the guest to shut down (x86 only).
func CtrlAltDelRequest() Request { return actionRequest(ActionSendCtrlAltDel) }

// FlushMetricsRequest makes Firecracker write a metrics sample now.
func FlushMetricsRequest() Request { return actionRequest(ActionFlushMetrics) }

func actionRequest(action string) Request {
	return Request{"PUT", "/actions", Action{ActionType: action}}
}

// InfoRequest asks for the instance information.
func InfoRequest() Request { return Request{Method: "GET", Path: "/"} }

// errVersion builds the error for an unsupported version.
func errVersion(what string, v Version) error {
	return errdefs.Invalid(fmt.Errorf("%s %s is not supported: banger needs Firecracker %s or later (install a newer release)", what, v, MinVersion))
}

var errNoKernelCache = errors.New("kernel is not an uncompressed vmlinux and no kernel cache is configured to extract one")

// bootArgs is the guest's command line with reboot=k: a guest's reboot
// or panic resets through Firecracker's i8042 emulation, and
// Firecracker exits.
func bootArgs(cmdline string) string { return vmm.WithKernelArg(cmdline, "reboot", "k") }
