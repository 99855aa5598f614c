// Package firecracker is the vmm driver for Firecracker. It launches
// Firecracker (optionally under its jailer, in a chroot per machine) as
// a process of its own session, so a machine outlives the daemon, and
// configures and controls it through Firecracker's REST API on a unix
// socket. Requests are built by pure functions (ConfigRequests) that the
// tests validate against Firecracker's OpenAPI specification. Only the
// daemon's VM service imports it.
package firecracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/kernel"
	"banger/internal/vmm"
)

var (
	_ vmm.Driver    = (*Driver)(nil)
	_ vmm.Recoverer = (*Driver)(nil)
)

// Options configure a Driver.
type Options struct {
	// Binary is the Firecracker executable; default "firecracker".
	Binary string
	// Jailer runs each machine under the jailer when Enabled.
	Jailer JailerOptions
	// KernelCache extracts a vmlinux from a bzImage kernel. Nil: kernels
	// must already be uncompressed ELF files.
	KernelCache *kernel.Cache
	Logger      *slog.Logger
}

// JailerOptions configure the jailer.
type JailerOptions struct {
	Enabled    bool
	Binary     string // default /usr/bin/jailer
	ChrootBase string // default /srv/jailer
	UID, GID   int    // the machine owner's ids Firecracker runs as
}

// Driver runs machines with Firecracker.
type Driver struct {
	binary string
	jailer JailerOptions
	kernel *kernel.Cache
	log    *slog.Logger
	// checkTap reports whether a TAP device exists; tests replace it.
	checkTap func(name string) error
}

// Timeouts of the steps of Start and of the cleanup after a failed start.
const (
	apiReadyTimeout = 10 * time.Second
	cleanupTimeout  = 15 * time.Second
)

// New returns a driver.
func New(opts Options) *Driver {
	d := &Driver{binary: opts.Binary, jailer: opts.Jailer, kernel: opts.KernelCache, log: opts.Logger}
	if d.binary == "" {
		d.binary = "firecracker"
	}
	if d.jailer.Binary == "" {
		d.jailer.Binary = "/usr/bin/jailer"
	}
	if d.jailer.ChrootBase == "" {
		d.jailer.ChrootBase = "/srv/jailer"
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.checkTap = func(name string) error {
		_, err := net.InterfaceByName(name)
		return err
	}
	return d
}

// Name is "firecracker".
func (d *Driver) Name() string { return "firecracker" }

// Version runs `firecracker --version` and checks that the release is
// supported; with the jailer enabled it checks the jailer too.
func (d *Driver) Version(ctx context.Context) (Version, error) {
	v, err := toolVersion(ctx, d.binary, "firecracker")
	if err != nil {
		return Version{}, err
	}
	if d.jailer.Enabled {
		jv, err := toolVersion(ctx, d.jailer.Binary, "jailer")
		if err != nil {
			return Version{}, err
		}
		if jv != v {
			return Version{}, errdefs.Invalid(fmt.Errorf("jailer %s and firecracker %s differ: install both from one release", jv, v))
		}
	}
	return v, nil
}

func toolVersion(ctx context.Context, bin, what string) (Version, error) {
	out, err := hostexec.Run(ctx, bin, "--version")
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return Version{}, errdefs.NotFound(fmt.Errorf("%s binary %q not found: install Firecracker %s or later, or set %s_bin", what, bin, MinVersion, what))
		}
		return Version{}, fmt.Errorf("%s version: %w", what, err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, fmt.Errorf("%s version: %w", what, err)
	}
	if v.Less(MinVersion) {
		return Version{}, errVersion(what, v)
	}
	return v, nil
}

// state is what Start records in the VM directory as soon as the
// process runs, so Recover finds a machine whose handle was never
// persisted.
type state struct {
	Handle vmm.Handle `json:"handle"`
	Jail   string     `json:"jail,omitempty"`
}

// Start launches and boots the machine. Firecracker runs in a session of
// its own: once Start returns, it outlives ctx and the daemon. On error
// nothing of the launch is left running or in the jail.
func (d *Driver) Start(ctx context.Context, spec vmm.Spec) (h vmm.Handle, err error) {
	if err := d.validate(spec); err != nil {
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}
	if old, ok := d.Recover(spec.Dir); ok {
		return vmm.Handle{}, errdefs.WithKind(errdefs.ErrConflict,
			fmt.Errorf("start vm %q: firecracker already runs for it (pid %d)", spec.Name, old.PID))
	}
	ver, err := d.Version(ctx)
	if err != nil {
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}
	kernelPath, err := d.vmlinux(spec.Kernel)
	if err != nil {
		return vmm.Handle{}, fmt.Errorf("start vm %q: %w", spec.Name, err)
	}

	log := d.log.With("vm", spec.Name)
	var undo cleanups
	defer func() {
		if err != nil {
			undo.run(log)
			err = fmt.Errorf("start vm %q: %w", spec.Name, err)
		}
	}()
	d.removeStale(spec)

	var (
		layout  Layout
		apiSock string
		bin     string
		args    []string
		jail    Jail
	)
	if d.jailer.Enabled {
		if jail, err = d.jailFor(spec.ID); err != nil {
			return vmm.Handle{}, err
		}
		if err = removeJail(jail); err != nil { // leftovers of a crash
			return vmm.Handle{}, err
		}
		undo.push("remove jail", func() error { return removeJail(jail) })
		if layout, err = prepareJail(jail, spec, kernelPath, d.jailer.UID, d.jailer.GID); err != nil {
			return vmm.Handle{}, err
		}
		apiSock = filepath.Join(jail.Root(), apiSockName)
		bin, args = d.jailer.Binary, JailerArgs(jail, d.absBinary(), d.jailer.UID, d.jailer.GID)
	} else {
		layout = Layout{
			Kernel:  kernelPath,
			Initrd:  spec.Initrd,
			Vsock:   spec.AgentSocket,
			Log:     filepath.Join(spec.Dir, logName),
			Metrics: filepath.Join(spec.Dir, metricsName),
		}
		for _, disk := range spec.Disks {
			layout.Drives = append(layout.Drives, disk.Path)
		}
		// Firecracker opens these, it does not create them.
		if err = touch(layout.Log, false); err == nil {
			err = touch(layout.Metrics, true)
		}
		if err != nil {
			return vmm.Handle{}, err
		}
		apiSock = filepath.Join(spec.Dir, apiSockName)
		bin, args = d.binary, FirecrackerArgs(apiSock, spec.ID)
	}
	reqs, err := ConfigRequests(spec, layout, ver)
	if err != nil {
		return vmm.Handle{}, err
	}

	log.Debug("launch firecracker", "binary", bin, "args", args, "version", ver.String())
	pid, err := launch(bin, args, spec.ConsoleLog)
	if err != nil {
		return vmm.Handle{}, err
	}
	// The undos kill proc: a failed Start returns a zero h before its
	// deferred undos run.
	proc := vmm.Handle{Driver: d.Name(), PID: pid, ControlSocket: apiSock, ConsoleLog: spec.ConsoleLog, AgentSocket: spec.AgentSocket}
	st, err := vmm.ReadProcStat(pid)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		// Gone at once (a handle without a start time could never be
		// told from a process that reuses the pid).
		return vmm.Handle{}, fmt.Errorf("firecracker pid %d exited at start%s", pid, consoleTail(spec.ConsoleLog))
	}
	proc.StartTime = st.StartTime
	undo.push("kill firecracker", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		return vmm.Kill(ctx, proc)
	})
	if d.jailer.Enabled && !ver.Less(versionJailerPIDFile) {
		// Firecracker's pid, where the jailer documents it. Without
		// --daemonize and --new-pid-ns it is the launched process,
		// which the jailer becomes. proc changes only on success: the
		// undo above kills it.
		pid, start, werr := waitPIDFile(ctx, jail.PIDFile(), proc, apiReadyTimeout)
		if werr != nil {
			return vmm.Handle{}, fmt.Errorf("%w%s", werr, consoleTail(spec.ConsoleLog))
		}
		proc.PID, proc.StartTime = pid, start
	}
	undo.push("remove state", func() error { return removeIfExists(filepath.Join(spec.Dir, stateName)) })
	if err = writeState(spec.Dir, state{Handle: proc, Jail: jail.dirOrEmpty()}); err != nil {
		return vmm.Handle{}, err
	}

	c := newClient(apiSock)
	if err = waitAPI(ctx, c, proc); err != nil {
		return vmm.Handle{}, fmt.Errorf("%w%s", err, consoleTail(spec.ConsoleLog))
	}
	if d.jailer.Enabled && spec.AgentSocket != "" {
		// The agent channel's socket lives in the jail; the daemon
		// reaches it through spec.AgentSocket.
		if err = os.Symlink(filepath.Join(jail.Root(), vsockName), spec.AgentSocket); err != nil {
			return vmm.Handle{}, fmt.Errorf("link agent socket: %w", err)
		}
		undo.push("remove agent socket link", func() error { return removeIfExists(spec.AgentSocket) })
	}
	for _, r := range append(reqs, StartRequest()) {
		if err = c.do(ctx, r, nil); err != nil {
			return vmm.Handle{}, fmt.Errorf("configure firecracker: %w%s", err, consoleTail(spec.ConsoleLog))
		}
	}
	log.Info("firecracker started", "pid", proc.PID, "version", ver.String(), "jailed", d.jailer.Enabled)
	return proc, nil
}

func (j Jail) dirOrEmpty() string {
	if j.ID == "" {
		return ""
	}
	return j.Dir()
}

func (d *Driver) jailFor(id string) (Jail, error) {
	j := Jail{Base: d.jailer.ChrootBase, ExecName: d.execName(), ID: id}
	return j, j.validate()
}

// absBinary is the Firecracker binary as an absolute path, as the
// jailer's --exec-file needs it.
func (d *Driver) absBinary() string {
	if p, err := exec.LookPath(d.binary); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return d.binary
}

// execName is the name the jailer gives the directory of the binary's
// jails: the file name of --exec-file once the jailer has resolved its
// symlinks (firecracker-v1.7.0-x86_64 behind a firecracker link).
func (d *Driver) execName() string {
	p := d.absBinary()
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return filepath.Base(p)
}

// vmlinux returns an uncompressed kernel for path.
func (d *Driver) vmlinux(path string) (string, error) {
	if d.kernel != nil {
		return d.kernel.Vmlinux(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("kernel %q: %w", path, err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != "\x7fELF" {
		return "", errdefs.Invalid(fmt.Errorf("kernel %q: %w", path, errNoKernelCache))
	}
	return path, nil
}

// removeStale removes the sockets and state a killed Firecracker left.
func (d *Driver) removeStale(spec vmm.Spec) {
	files := []string{filepath.Join(spec.Dir, apiSockName), filepath.Join(spec.Dir, stateName)}
	if spec.AgentSocket != "" {
		files = append(files, spec.AgentSocket)
	}
	for _, f := range files {
		if err := removeIfExists(f); err != nil {
			d.log.Warn("remove stale firecracker file", "path", f, "err", err)
		}
	}
}

// launch starts bin in a session of its own with stdin from /dev/null
// and stdout and stderr (the guest's serial console) appended to
// console, and returns its pid. The process is reaped in the background
// while this process lives; after that, by init.
func launch(bin string, args []string, console string) (int, error) {
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if console != "" {
		out, err = os.OpenFile(console, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	}
	if err != nil {
		return 0, fmt.Errorf("open console log: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("launch %s: %w", bin, err)
	}
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

// waitAPI waits until Firecracker answers GET / or its process is gone.
func waitAPI(ctx context.Context, c *client, h vmm.Handle) error {
	ctx, cancel := context.WithTimeout(ctx, apiReadyTimeout)
	defer cancel()
	for {
		var info InstanceInfo
		err := c.do(ctx, InfoRequest(), &info)
		if err == nil {
			return nil
		}
		if !vmm.Alive(h) {
			return fmt.Errorf("firecracker (pid %d) exited before its API answered", h.PID)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("firecracker api %s: no answer: %w", h.ControlSocket, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Shutdown sends Ctrl-Alt-Del to the guest, which powers off a Linux
// guest (Firecracker exits with it), and returns without waiting.
func (d *Driver) Shutdown(ctx context.Context, h vmm.Handle) error {
	if !vmm.Alive(h) {
		return vmm.ErrNotRunning
	}
	if err := newClient(h.ControlSocket).do(ctx, CtrlAltDelRequest(), nil); err != nil {
		return fmt.Errorf("shutdown firecracker pid %d: %w", h.PID, err)
	}
	return nil
}

// Stop shuts the guest down gracefully and kills Firecracker when it has
// not exited after grace.
func (d *Driver) Stop(ctx context.Context, h vmm.Handle, grace time.Duration) error {
	if err := d.Shutdown(ctx, h); err != nil {
		if errors.Is(err, vmm.ErrNotRunning) {
			return nil
		}
		d.log.Warn("graceful shutdown failed; killing", "pid", h.PID, "err", err)
	} else {
		wctx, cancel := context.WithTimeout(ctx, grace)
		err := vmm.WaitExit(wctx, h)
		cancel()
		if err == nil {
			return nil
		}
		d.log.Info("guest did not power off in time; killing", "pid", h.PID, "grace", grace)
	}
	return d.Kill(ctx, h)
}

// Kill ends Firecracker at once. A gone process is no error.
func (d *Driver) Kill(ctx context.Context, h vmm.Handle) error {
	return vmm.Kill(ctx, h)
}

// Status returns the instance information of a running machine: a
// re-attached handle is good when this answers with state Running. A
// gone process is vmm.ErrNotRunning.
func (d *Driver) Status(ctx context.Context, h vmm.Handle) (InstanceInfo, error) {
	var info InstanceInfo
	if !vmm.Alive(h) {
		return info, vmm.ErrNotRunning
	}
	if err := newClient(h.ControlSocket).do(ctx, InfoRequest(), &info); err != nil {
		if isConnError(err) && !vmm.Alive(h) {
			return info, vmm.ErrNotRunning
		}
		return info, fmt.Errorf("status of firecracker pid %d: %w", h.PID, err)
	}
	return info, nil
}

// Recover finds a Firecracker that runs for the machine directory dir
// from the state Start records there, verifying pid and start time.
func (d *Driver) Recover(dir string) (vmm.Handle, bool) {
	st, err := readState(dir)
	if err != nil || st.Handle.StartTime == 0 || !vmm.Alive(st.Handle) {
		return vmm.Handle{}, false
	}
	return st.Handle, true
}

// RemoveJail removes the jail of the machine with id vmID, unmounting
// what the driver mounted in it: under every Firecracker binary name in
// the chroot base, so a jail made before the binary was upgraded goes
// too. It is a no-op when the jailer is off or the jail does not exist.
// The VM service calls it on delete.
func (d *Driver) RemoveJail(vmID string) error {
	if !d.jailer.Enabled {
		return nil
	}
	if _, err := d.jailFor(vmID); err != nil {
		return err
	}
	names, err := d.execNames()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, removeJail(Jail{Base: d.jailer.ChrootBase, ExecName: name, ID: vmID}))
	}
	return errors.Join(errs...)
}

// ReapJails removes the jails under the chroot base that banger made
// (they carry its marker: the base may be shared with other users of
// the jailer), whose VM id keep does not claim and in which no process
// runs, and returns the ids it removed. Reconcile calls it at daemon
// start.
func (d *Driver) ReapJails(keep func(vmID string) bool) ([]string, error) {
	if !d.jailer.Enabled {
		return nil, nil
	}
	names, err := d.execNames()
	if err != nil {
		return nil, fmt.Errorf("reap jails: %w", err)
	}
	var removed []string
	var errs []error
	for _, name := range names {
		entries, err := os.ReadDir(filepath.Join(d.jailer.ChrootBase, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("reap jails: %w", err))
			continue
		}
		for _, e := range entries {
			id := e.Name()
			j := Jail{Base: d.jailer.ChrootBase, ExecName: name, ID: id}
			if !e.IsDir() || keep(id) || j.validate() != nil || !isBangerJail(j) {
				continue
			}
			if pid, ok := jailInUse(j); ok {
				d.log.Warn("jail of unknown vm still runs a process; leaving it", "id", id, "pid", pid)
				continue
			}
			if err := removeJail(j); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, id)
		}
	}
	return removed, errors.Join(errs...)
}

// execNames lists the directories of the chroot base named after a
// Firecracker binary (the jailer requires "firecracker" in the name).
func (d *Driver) execNames() ([]string, error) {
	entries, err := os.ReadDir(d.jailer.ChrootBase)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && strings.Contains(e.Name(), "firecracker") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
