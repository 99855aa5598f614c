package qemu

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/paths"
	"banger/internal/vmm"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Accelerator is how a machine's CPUs run.
type Accelerator struct {
	Name string // AccelKVM or AccelTCG
	// TSCKHz is the host's TSC frequency, which is also the guest's under
	// TCG. With TCG it goes on the kernel command line as tsc_early_khz
	// (unless the command line sets it): a guest kernel that has to
	// measure its TSC against the emulated PIT fails now and then on a
	// busy host ("tsc: Unable to calibrate against PIT") and then hangs
	// at boot. 0 leaves the command line alone.
	TSCKHz int
}

// Names of the files the driver keeps in a VM's directory.
const (
	qmpSocketName = "qmp.sock"
	pidFileName   = "qemu.pid"
)

// machineType is the -M value for every machine.
const machineType = "microvm,x-option-roms=off,isa-serial=on,pit=on,pic=on,rtc=on,acpi=on"

// Paths are the files QEMU creates for a machine.
type Paths struct {
	QMPSocket string
	PIDFile   string
}

// PathsFor returns the paths QEMU uses in the VM directory dir. A
// directory too deep for a unix socket address is an error.
func PathsFor(dir string) (Paths, error) {
	p := Paths{
		QMPSocket: filepath.Join(dir, qmpSocketName),
		PIDFile:   filepath.Join(dir, pidFileName),
	}
	if err := checkSocketPath("qmp socket", p.QMPSocket); err != nil {
		return Paths{}, err
	}
	return p, nil
}

func checkSocketPath(what, path string) error {
	if err := paths.CheckSocketPath(what, path); err != nil {
		return errdefs.Invalid(err)
	}
	return nil
}

// Args returns QEMU's command line (without the binary) for spec with
// the accelerator accel. The machine is a microvm with
// ACPI (so system_powerdown reaches the guest as a power button press),
// virtio-mmio devices, the serial console appended to spec.ConsoleLog,
// QMP on p.QMPSocket, and QEMU daemonizes after writing p.PIDFile. The
// agent gets a virtio-serial port when spec.AgentSocket is set and, when
// spec.VSockCID is not 0, a vsock device with that guest CID as well
// (Start sets it to a CID the host kernel has free, or 0 on a host
// without /dev/vhost-vsock).
func Args(spec vmm.Spec, accel Accelerator, p Paths) []string {
	name := "banger-" + spec.Name
	if spec.Name == "" {
		name = "banger-" + shortID(spec.ID)
	}
	args := []string{
		"-name", "guest=" + optEscape(name) + ",process=" + optEscape(name),
		// x-option-roms=off skips the option ROMs a microvm has no use
		// for. pit, pic and rtc default to "auto", which under TCG means
		// off: the guest kernel then cannot calibrate its timers and
		// hangs after "tsc: Marking TSC unstable", and has no wall
		// clock (there is no kvmclock either). acpi=on makes
		// system_powerdown a power button press the guest sees.
		"-M", machineType,
	}
	// microvm has no i8042, and its ACPI reset does not always reach
	// QEMU (a panicked guest then hangs after "reboot: machine
	// restart"): a triple fault always resets, and -no-reboot exits.
	cmdline := vmm.WithKernelArg(spec.Cmdline, "reboot", "t")
	if accel.Name == AccelKVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg,thread=multi", "-cpu", "max")
		if accel.TSCKHz > 0 {
			cmdline = vmm.WithKernelArg(cmdline, "tsc_early_khz", strconv.Itoa(accel.TSCKHz))
		}
	}
	args = append(args,
		"-smp", strconv.Itoa(spec.VCPUs),
		"-m", strconv.Itoa(spec.MemoryMiB)+"M",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", spec.Kernel,
	)
	if spec.Initrd != "" {
		args = append(args, "-initrd", spec.Initrd)
	}
	args = append(args, "-append", cmdline)

	for i, id := range vmm.DiskIDs(spec.Disks, qemuID) {
		d := spec.Disks[i]
		drive := "id=" + id + ",file=" + optEscape(d.Path) + ",format=" + d.Format +
			",if=none,cache=writeback,aio=threads"
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			drive += ",discard=unmap"
		}
		args = append(args, "-drive", drive, "-device", "virtio-blk-device,drive="+id)
	}

	if spec.TapDevice != "" {
		args = append(args,
			"-netdev", "tap,id=net0,ifname="+optEscape(spec.TapDevice)+",script=no,downscript=no",
			"-device", "virtio-net-device,netdev=net0,mac="+spec.MAC,
		)
	}

	if spec.ConsoleLog != "" {
		args = append(args,
			"-chardev", "file,id=console,path="+optEscape(spec.ConsoleLog)+",append=on",
			"-serial", "chardev:console",
		)
	} else {
		args = append(args, "-serial", "null")
	}

	args = append(args,
		"-chardev", "socket,id=qmp,path="+optEscape(p.QMPSocket)+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
	)

	if spec.AgentSocket != "" {
		args = append(args,
			"-device", "virtio-serial-device,id=agentbus",
			"-chardev", "socket,id=agent,path="+optEscape(spec.AgentSocket)+",server=on,wait=off",
			"-device", "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent",
		)
	}
	if spec.VSockCID != 0 {
		args = append(args, "-device", vsockDeviceArg(spec.VSockCID))
	}

	return append(args, "-daemonize", "-pidfile", p.PIDFile)
}

// optEscape escapes a value inside a QEMU option list, where a comma is
// written twice.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

var qemuID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,30}$`)

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// validate checks spec and reports every problem at once. Missing files
// are not-found errors, everything else invalid input.
func validate(spec vmm.Spec) error {
	var c vmm.SpecCheck
	if spec.VCPUs < 1 {
		c.Invalid("vcpus %d: must be at least 1", spec.VCPUs)
	}
	if c.Common(spec, "raw", "qcow2") {
		_, err := PathsFor(spec.Dir)
		c.Add(err)
	}
	if spec.ConsoleLog != "" && !filepath.IsAbs(spec.ConsoleLog) {
		c.Invalid("console log %q: not an absolute path", spec.ConsoleLog)
	}
	if spec.AgentSocket != "" {
		if !filepath.IsAbs(spec.AgentSocket) {
			c.Invalid("agent socket %q: not an absolute path", spec.AgentSocket)
		} else {
			c.Add(checkSocketPath("agent socket", spec.AgentSocket))
		}
	}
	return c.Err()
}
