// Package qemu is the vmm driver for QEMU's microvm machine. It runs
// QEMU daemonized, so a machine outlives the daemon that started it, and
// controls it through QMP on a unix socket in the VM's directory. It uses
// KVM when the host can run guests with it and falls back to TCG software
// emulation otherwise. The guest agent gets a virtio-serial port and,
// where the host has /dev/vhost-vsock, a vsock device too (see GuestCID).
// Only the daemon imports it.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/vmm"
)

var _ vmm.Driver = (*Driver)(nil)

// Options configure a Driver.
type Options struct {
	// Binary is the QEMU executable; default qemu-system-x86_64.
	Binary string
	// Accel is "auto" (default), "kvm" or "tcg". Auto picks kvm when
	// vmm.KVMUsable says so, else tcg.
	Accel  string
	Logger *slog.Logger
}

// Driver runs machines with QEMU.
type Driver struct {
	binary      string
	accel       Accelerator // Name "" when Options.Accel was invalid
	accelReason string
	// probeCID asks the host kernel about guest vsock CIDs.
	probeCID cidProbe
	log      *slog.Logger
}

// Timeouts of the steps of Start and of the cleanup after a failed start.
const (
	qmpReadyTimeout = 10 * time.Second
	cleanupTimeout  = 15 * time.Second
)

// New returns a driver. With Accel "auto" it probes KVM once and logs a
// warning when it falls back to TCG.
func New(opts Options) *Driver {
	d := &Driver{binary: opts.Binary, log: opts.Logger, probeCID: probeVhostCID(vhostVsockDevice)}
	if d.binary == "" {
		d.binary = "qemu-system-x86_64"
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	switch opts.Accel {
	case "", "auto":
		ok, why := vmm.KVMUsable()
		if ok {
			d.accel.Name, d.accelReason = AccelKVM, why
		} else {
			d.accel.Name, d.accelReason = AccelTCG, "kvm not usable: "+why
			d.log.Warn(fmt.Sprintf("kvm not usable (%s); using TCG software emulation, guests run several times slower", why))
		}
	case AccelKVM, AccelTCG:
		d.accel.Name, d.accelReason = opts.Accel, "set in configuration"
	default:
		d.accelReason = fmt.Sprintf("invalid qemu accel %q: want auto, kvm or tcg", opts.Accel)
	}
	if ok, why := vhostVsockUsable(vhostVsockDevice); !ok {
		d.log.Info("guests get no vsock device (" + why + "); their agents are reached over virtio-serial")
	}
	if d.accel.Name == AccelTCG {
		d.accel.TSCKHz = hostTSCKHz("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "/proc/cpuinfo")
		if d.accel.TSCKHz == 0 {
			d.log.Warn("host tsc frequency unknown: TCG guests may hang at boot on a busy host (tsc: Unable to calibrate against PIT)")
		}
	}
	return d
}

// Name is "qemu".
func (d *Driver) Name() string { return "qemu" }

// Accel returns the accelerator machines get ("kvm" or "tcg") and why.
func (d *Driver) Accel() (accel, reason string) { return d.accel.Name, d.accelReason }

// Start launches the machine. QEMU daemonizes: once Start returns, the
// machine's process belongs to no one and outlives ctx and the daemon.
// On error nothing of the launch is left running.
func (d *Driver) Start(ctx context.Context, spec vmm.Spec) (vmm.Handle, error) {
	if d.accel.Name == "" {
		return vmm.Handle{}, errdefs.Invalid(errors.New(d.accelReason))
	}
	if err := validate(spec); err != nil {
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}
	paths, err := PathsFor(spec.Dir)
	if err != nil {
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}
	// QEMU would create a missing TAP itself, unattached to any bridge,
	// and the guest would come up without a network.
	if spec.TapDevice != "" {
		if _, err := net.InterfaceByName(spec.TapDevice); err != nil {
			return vmm.Handle{}, errdefs.NotFound(fmt.Errorf("start vm %q: tap %q: no such network device", spec.Name, spec.TapDevice))
		}
	}
	if pid, ok := runningFromPidfile(paths.PIDFile); ok {
		return vmm.Handle{}, errdefs.WithKind(errdefs.ErrConflict,
			fmt.Errorf("start vm %q: qemu already runs for it (pid %d, %s)", spec.Name, pid, paths.PIDFile))
	}
	// Leftovers of a machine that was killed: QEMU removes them itself
	// when it exits normally.
	d.removeFiles(paths, spec)

	log := d.log.With("vm", spec.Name)
	launch := spec
	tried := map[uint32]bool{}
	for attempt := 1; ; attempt++ {
		launch.VSockCID = d.guestCID(log, spec, tried)
		args := Args(launch, d.accel, paths)
		log.Debug("launch qemu", "binary", d.binary, "args", strings.Join(args, " "))
		_, err := hostexec.Run(ctx, d.binary, args...)
		if err == nil {
			break
		}
		// QEMU's parent exits with an error when the daemonized child
		// fails; if the parent was killed, the child may still be about.
		d.cleanupAfterFailure(log, vmm.Handle{}, paths, spec)
		// Another guest may have taken the CID since the probe: QEMU
		// then could not set it. Any other failure is not retried.
		if cid := launch.VSockCID; cid != 0 && attempt < maxCIDLaunches && ctx.Err() == nil && cidTaken(d.probeCID, cid) {
			log.Info("guest vsock cid taken while qemu started; starting again with another", "cid", cid)
			tried[cid] = true
			continue
		}
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}

	h, err := d.adopt(ctx, paths, launch)
	if err != nil {
		d.cleanupAfterFailure(log, h, paths, spec)
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}
	log.Info("qemu started", "pid", h.PID, "accel", h.Accel, "vsock_cid", launch.VSockCID)
	return h, nil
}

// guestCID picks the vsock CID of a machine about to start, skipping
// those in tried: the first free candidate (see cidCandidates), or 0,
// with the reason logged, when the host cannot give guests vsock. A
// machine without an agent socket gets none either: vsock is only there
// for the agent.
func (d *Driver) guestCID(log *slog.Logger, spec vmm.Spec, tried map[uint32]bool) uint32 {
	if spec.AgentSocket == "" {
		return 0
	}
	key := spec.ID
	if key == "" {
		key = spec.Name
	}
	cid, err := chooseCID(d.probeCID, cidCandidates(spec.VSockCID, key), tried)
	switch {
	case err == nil:
		return cid
	case noVhostDevice(err):
		log.Debug("no vsock for the guest: no " + vhostVsockDevice + " (vhost_vsock module not loaded); the agent is reached over virtio-serial")
	default:
		log.Warn("no vsock for the guest; the agent is reached over virtio-serial", "err", err)
	}
	return 0
}

// adopt reads the pid of the daemonized QEMU, records its identity and
// checks that it answers on QMP.
func (d *Driver) adopt(ctx context.Context, paths Paths, spec vmm.Spec) (vmm.Handle, error) {
	h := vmm.Handle{
		Driver:        d.Name(),
		ControlSocket: paths.QMPSocket,
		Accel:         d.accel.Name,
		ConsoleLog:    spec.ConsoleLog,
		AgentSocket:   spec.AgentSocket,
	}
	pid, err := readPidfile(paths.PIDFile)
	if err != nil {
		return h, err
	}
	st, err := vmm.ReadProcStat(pid)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		return h, fmt.Errorf("qemu pid %d from %s: process is gone", pid, paths.PIDFile)
	}
	h.PID, h.StartTime = pid, st.StartTime

	qctx, cancel := context.WithTimeout(ctx, qmpReadyTimeout)
	defer cancel()
	c, err := dialQMPRetry(qctx, paths.QMPSocket)
	if err != nil {
		return h, err
	}
	return h, c.Close()
}

// dialQMPRetry dials until QMP answers or ctx ends.
func dialQMPRetry(ctx context.Context, path string) (*qmpClient, error) {
	for {
		c, err := dialQMP(ctx, path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanupAfterFailure kills the QEMU of a failed start, if one runs, and
// removes its files.
func (d *Driver) cleanupAfterFailure(log *slog.Logger, h vmm.Handle, paths Paths, spec vmm.Spec) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if h.PID == 0 {
		pid, ok := runningFromPidfile(paths.PIDFile)
		if ok {
			h.PID = pid
			if st, err := vmm.ReadProcStat(pid); err == nil {
				h.StartTime = st.StartTime
			}
		}
	}
	if h.PID != 0 {
		if err := vmm.Kill(ctx, h); err != nil {
			log.Error("kill qemu after failed start", "pid", h.PID, "err", err)
		}
	}
	d.removeFiles(paths, spec)
}

func (d *Driver) removeFiles(paths Paths, spec vmm.Spec) {
	files := []string{paths.PIDFile, paths.QMPSocket}
	if spec.AgentSocket != "" {
		files = append(files, spec.AgentSocket)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("remove qemu file", "path", f, "err", err)
		}
	}
}

// Shutdown presses the guest's ACPI power button and returns without
// waiting for the guest to power off. A press that comes before the
// guest's systemd-logind listens (the first ~15 s of a TCG boot) is lost,
// so a caller that waits for the machine to exit should press again
// every few seconds before it falls back to Quit or vmm.Kill.
func (d *Driver) Shutdown(ctx context.Context, h vmm.Handle) error {
	if err := d.do(ctx, h, "system_powerdown", nil); err != nil {
		return fmt.Errorf("shutdown qemu pid %d: %w", h.PID, err)
	}
	return nil
}

// Quit ends QEMU at once, like pulling the plug, but lets QEMU flush its
// disk caches and remove its sockets and pid file.
func (d *Driver) Quit(ctx context.Context, h vmm.Handle) error {
	err := d.do(ctx, h, "quit", nil)
	// QEMU may close the socket before its reply gets out.
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("quit qemu pid %d: %w", h.PID, err)
	}
	return nil
}

// Status returns QEMU's run state ("running", "paused", "shutdown", ...).
// A gone process is vmm.ErrNotRunning.
func (d *Driver) Status(ctx context.Context, h vmm.Handle) (string, error) {
	var reply struct {
		Status string `json:"status"`
	}
	if err := d.do(ctx, h, "query-status", &reply); err != nil {
		return "", fmt.Errorf("status of qemu pid %d: %w", h.PID, err)
	}
	return reply.Status, nil
}

// do runs one QMP command on the machine of h after checking that its
// process is still the one that was started.
func (d *Driver) do(ctx context.Context, h vmm.Handle, cmd string, out any) error {
	if !vmm.Alive(h) {
		return vmm.ErrNotRunning
	}
	c, err := dialQMP(ctx, h.ControlSocket)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.execute(ctx, cmd, nil, out)
}

func readPidfile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read qemu pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read qemu pid file %q: bad pid %q", path, strings.TrimSpace(string(data)))
	}
	return pid, nil
}

// runningFromPidfile returns the pid in the pid file at path when that
// process runs and is the QEMU that wrote the file (its command line
// names the file), so a reused pid is never taken for it.
func runningFromPidfile(path string) (int, bool) {
	pid, err := readPidfile(path)
	if err != nil {
		return 0, false
	}
	st, err := vmm.ReadProcStat(pid)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		return 0, false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return 0, false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if arg == path {
			return pid, true
		}
	}
	return 0, false
}

// Recover finds a QEMU that runs for the machine directory dir from the
// pid file QEMU writes there, verifying that the process's command line
// names that pid file. A daemon that died between launching QEMU and
// persisting its handle uses it to find the process.
var _ vmm.Recoverer = (*Driver)(nil)

func (d *Driver) Recover(dir string) (vmm.Handle, bool) {
	p := Paths{QMPSocket: filepath.Join(dir, qmpSocketName), PIDFile: filepath.Join(dir, pidFileName)}
	pid, ok := runningFromPidfile(p.PIDFile)
	if !ok {
		return vmm.Handle{}, false
	}
	st, err := vmm.ReadProcStat(pid)
	if err != nil {
		return vmm.Handle{}, false
	}
	return vmm.Handle{Driver: d.Name(), PID: pid, StartTime: st.StartTime, ControlSocket: p.QMPSocket, Accel: d.accel.Name}, true
}
