// Package api is the wire contract between the banger CLI and bangerd:
// RPC method names and their request and response types. Both sides
// import it; it holds no behaviour.
package api

import (
	"time"

	"banger/internal/agent"
	"banger/internal/model"
)

// ExitDaemonAlreadyRunning is bangerd's exit status when another bangerd
// holds its state directory: a CLI that started it waits for that one.
const ExitDaemonAlreadyRunning = 3

// Method names.
const (
	MethodDaemonStatus = "daemon.status"
	MethodDaemonStop   = "daemon.stop"

	MethodImageBuild    = "image.build"
	MethodImageList     = "image.list"
	MethodImageShow     = "image.show"
	MethodImageDelete   = "image.delete"
	MethodImageRegister = "image.register"

	MethodVMCreate  = "vm.create"
	MethodVMStart   = "vm.start"
	MethodVMStop    = "vm.stop"
	MethodVMRestart = "vm.restart"
	MethodVMKill    = "vm.kill"
	MethodVMDelete  = "vm.delete"
	MethodVMList    = "vm.list"
	MethodVMShow    = "vm.show"
	MethodVMSSHInfo = "vm.ssh_info"
	MethodVMLogs    = "vm.logs"
	MethodVMSet     = "vm.set"
	MethodVMPrune   = "vm.prune"

	MethodVMWorkspaceSet = "vm.workspace_set"
	MethodVMStats        = "vm.stats"

	MethodVMHealth = "vm.health"
	MethodVMPing   = "vm.ping"
	MethodVMPorts  = "vm.ports"

	// MethodVMWorkspaceCopy is a stream method (rpc.CallStream): params
	// WorkspaceCopy, then the workspace archive as the stream.
	MethodVMWorkspaceCopy = "vm.workspace_copy"
)

// NotifyProgress is the notification method carrying Progress while a
// long request runs.
const NotifyProgress = "progress"

// Progress reports one step of a long operation.
type Progress struct {
	OpID    string `json:"op_id"`
	Subject string `json:"subject,omitempty"` // VM or image name
	Step    string `json:"step"`
	Message string `json:"message,omitempty"`
	// Verbose progress is shown only with --verbose.
	Verbose bool `json:"verbose,omitempty"`
}

// Empty is the params or result of methods that take or give nothing.
type Empty struct{}

// DaemonStatus describes the running daemon.
type DaemonStatus struct {
	PID        int       `json:"pid"`
	Version    string    `json:"version"`
	Socket     string    `json:"socket"`
	StateDir   string    `json:"state_dir"`
	StartedAt  time.Time `json:"started_at"`
	VMM        string    `json:"vmm"`
	Accel      string    `json:"accel"`
	AccelNote  string    `json:"accel_note,omitempty"`
	VMsRunning int       `json:"vms_running"`
	VMsTotal   int       `json:"vms_total"`
	Images     int       `json:"images"`
	SSHKey     string    `json:"ssh_key"`
	KnownHosts string    `json:"known_hosts"`
}

// Ref names one VM or image by id, unique id prefix or name.
type Ref struct {
	Ref string `json:"ref"`
}

// ImageDetails is image.show's answer: the image, and what its directory
// says about how its VMs boot.
type ImageDetails struct {
	model.Image
	// FirstBoot is set for an image without systemd or sshd: each VM's
	// first boot installs them (see docs/guest.md) and needs NAT.
	FirstBoot *FirstBoot `json:"first_boot,omitempty"`
	// ModulesDisk is the read-only disk with the kernel's modules that
	// the image's VMs get, "" when none.
	ModulesDisk string `json:"modules_disk,omitempty"`
}

// FirstBoot says what a VM's first boot installs, and with what.
type FirstBoot struct {
	PackageManager string   `json:"package_manager"`
	Installs       []string `json:"installs"`
}

// Refs names several VMs.
type Refs struct {
	Refs []string `json:"refs"`
	// Signal is used by vm.kill ("KILL", "TERM", ...); empty means KILL.
	Signal string `json:"signal,omitempty"`
}

// VMResults is the answer of lifecycle methods that act on several VMs:
// one entry per ref, in order.
type VMResults struct {
	Results []VMResult `json:"results"`
}

// VMResult is the outcome for one ref.
type VMResult struct {
	Ref   string          `json:"ref"`
	VM    *model.VMRecord `json:"vm,omitempty"`
	Error string          `json:"error,omitempty"`
	// OpID is the request's operation id, set with Error: the daemon's
	// log tells the failure under it.
	OpID string `json:"op_id,omitempty"`
}

// ImageBuildRequest builds a managed image from a recipe.
type ImageBuildRequest struct {
	Name   string `json:"name"`
	Force  bool   `json:"force,omitempty"`
	Mirror string `json:"mirror,omitempty"`
	// Recipe is the text of a TOML recipe, built instead of the
	// embedded recipe Name; Name is then the new image's name.
	Recipe string `json:"recipe,omitempty"`
	// RecipeDir is the recipe file's absolute directory: the sources of
	// its [[files]] are read relative to it.
	RecipeDir string `json:"recipe_dir,omitempty"`
}

// ImageRegisterRequest registers local artifacts as an image.
type ImageRegisterRequest struct {
	Name     string `json:"name"`
	Rootfs   string `json:"rootfs"`
	Kernel   string `json:"kernel"`
	Initrd   string `json:"initrd,omitempty"`
	Modules  string `json:"modules,omitempty"`
	WorkSeed string `json:"work_seed,omitempty"`
	// KernelRef names a catalog kernel that gives the image its kernel,
	// and its initrd and modules unless Initrd or Modules are set; it
	// excludes Kernel.
	KernelRef string `json:"kernel_ref,omitempty"`
}

// SSHInfo tells the CLI how to reach a VM over SSH.
type SSHInfo struct {
	Name       string `json:"name"`
	GuestIP    string `json:"guest_ip"`
	User       string `json:"user"`
	KeyPath    string `json:"key_path"`
	KnownHosts string `json:"known_hosts"`
	// WorkDir is where commands start in the guest.
	WorkDir string `json:"work_dir,omitempty"`
	// Workspace is the last prepared workspace, if any.
	Workspace model.VMWorkspace `json:"workspace"`
}

// VMStatsEntry is one VM's last resource sample, the answer of vm.stats
// (params: Refs; every VM when Refs is empty).
type VMStatsEntry struct {
	Name  string        `json:"name"`
	ID    string        `json:"id"`
	State model.VMState `json:"state"`
	Stats model.VMStats `json:"stats"`
}

// WorkspaceSet records a prepared workspace on a VM.
type WorkspaceSet struct {
	Ref       string            `json:"ref"`
	Workspace model.VMWorkspace `json:"workspace"`
}

// VMLogs points at a VM's serial console log.
type VMLogs struct {
	Path string `json:"path"`
}

// WorkspaceCopy asks for a workspace archive to be extracted into
// GuestPath in a running VM through its agent.
type WorkspaceCopy struct {
	Ref       string `json:"ref"`
	GuestPath string `json:"guest_path"`
}

// VMHealth is the guest agent's health report (vm.health, params Ref).
type VMHealth struct {
	Name   string       `json:"name"`
	Health agent.Health `json:"health"`
}

// VMPing is one round trip to the guest agent (vm.ping, params Ref).
type VMPing struct {
	Name string `json:"name"`
	// RTTMicros is the round-trip time in microseconds, measured by the
	// daemon over the agent channel.
	RTTMicros int64 `json:"rtt_us"`
}

// VMPorts lists the guest's listening sockets (vm.ports, params Ref).
type VMPorts struct {
	Name  string `json:"name"`
	Ports []Port `json:"ports"`
}

// Port is one listening socket in a guest.
type Port struct {
	agent.Listener
	// Endpoint is NAME.vm:PORT; empty for loopback-only listeners, which
	// the host cannot reach.
	Endpoint string `json:"endpoint,omitempty"`
	// URL is an http:// link when the listener answered an HTTP request
	// from the host.
	URL string `json:"url,omitempty"`
}
