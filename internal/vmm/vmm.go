// Package vmm defines the interface between the daemon and a virtual
// machine monitor. The daemon resolves everything about a machine
// (kernel, disks, network, sizes) into a Spec, hands it to a Driver and
// gets back a Handle it persists; with that Handle alone, possibly in a
// later daemon process, it can ask the driver to stop, kill or inspect
// the machine. Drivers live in subpackages (vmm/qemu, vmm/firecracker).
package vmm

import (
	"context"
	"errors"
	"syscall"
)

// Disk is a block device given to the guest, in order: the first disk is
// /dev/vda.
type Disk struct {
	ID       string // short identifier, e.g. "system", "work"
	Path     string // host path of the image file or block device
	Format   string // "raw" or "qcow2"
	ReadOnly bool
}

// Spec is a fully resolved machine.
type Spec struct {
	ID        string // VM id; drivers may use it to name things
	Name      string
	VCPUs     int
	MemoryMiB int
	Kernel    string
	Initrd    string // optional
	Cmdline   string
	Disks     []Disk
	TapDevice string // host TAP the guest NIC is attached to
	MAC       string // guest NIC MAC, "02:xx:..."

	// Dir is the VM's directory: drivers put their sockets, pid files and
	// logs there.
	Dir string
	// ConsoleLog receives the guest's serial console.
	ConsoleLog string
	// AgentSocket is the host end of the guest agent channel (a unix
	// socket the driver creates), empty when the machine has no agent.
	AgentSocket string
	// VSockCID is the guest's vsock context id where the driver uses vsock.
	VSockCID uint32
}

// Handle is everything needed to reach a running machine again. It is
// persisted as JSON before it is used.
type Handle struct {
	Driver        string `json:"driver"`
	PID           int    `json:"pid"`
	StartTime     uint64 `json:"start_time"`     // process start time, clock ticks since boot
	ControlSocket string `json:"control_socket"` // QMP or Firecracker API socket
	Accel         string `json:"accel,omitempty"`
	ConsoleLog    string `json:"console_log,omitempty"`
	AgentSocket   string `json:"agent_socket,omitempty"`
}

// Driver runs machines.
type Driver interface {
	// Name is the driver's config name: "qemu" or "firecracker".
	Name() string
	// Start launches the machine and returns once the VMM process runs
	// and answers on its control socket. The process must outlive ctx and
	// the daemon. On error nothing of the launch is left running.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// Shutdown asks the guest to power off (ACPI power button, Ctrl-Alt-Del)
	// and returns without waiting for it.
	Shutdown(ctx context.Context, h Handle) error
}

// ErrNotRunning says the machine's process is gone.
var ErrNotRunning = errors.New("vmm process is not running")

// Alive reports whether the process of h still runs and is the same
// process that was started (not a reused pid, not a zombie). A handle
// without a start time cannot tell its process from another that took
// its pid, so it is never alive: nothing acts on an unverified pid.
func Alive(h Handle) bool {
	if h.PID <= 0 || h.StartTime == 0 {
		return false
	}
	st, err := ReadProcStat(h.PID)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		return false
	}
	return st.StartTime == h.StartTime
}

// Signal sends sig to the process of h after verifying it is the same
// process; a gone process is ErrNotRunning.
func Signal(h Handle, sig syscall.Signal) error {
	if !Alive(h) {
		return ErrNotRunning
	}
	if err := syscall.Kill(h.PID, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// Recoverer is a driver that can find a machine's running process from
// what it left in the machine's directory, for a handle that was never
// persisted.
type Recoverer interface {
	Recover(dir string) (Handle, bool)
}
