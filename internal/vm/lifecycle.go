package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
	"banger/internal/network"
	"banger/internal/sshkey"
	"banger/internal/vmm"
)

// Start boots a created or stopped VM and waits until SSH answers.
func (s *Service) Start(ctx context.Context, ref string, report func(step, msg string)) (model.VMRecord, error) {
	rec, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return rec, err
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	if rec, err = s.store.GetVM(ctx, rec.ID); err != nil {
		return rec, err
	}
	if rec.State == model.VMStateRunning {
		if vmm.Alive(readHandles(rec).VMM) {
			return rec, nil
		}
		if err := s.settleStoppedLocked(ctx, &rec, ""); err != nil {
			return rec, err
		}
	}
	return s.startLocked(ctx, rec, report)
}

// startLocked runs the start pipeline; the caller holds the VM's lock.
// A stop of the VM meanwhile cancels it (see boots).
func (s *Service) startLocked(ctx context.Context, rec model.VMRecord, report func(step, msg string)) (model.VMRecord, error) {
	ctx, end := s.boots.begin(ctx, rec.ID)
	defer end()
	logger := s.logger.With("vm", rec.Name, "vm_id", rec.ID[:12])
	img, err := s.store.GetImage(ctx, rec.ImageID)
	if err != nil {
		return rec, fmt.Errorf("start vm %q: %w", rec.Name, err)
	}
	if err := checkImageArtifacts(img); err != nil {
		return rec, fmt.Errorf("start vm %q: %w", rec.Name, err)
	}
	if err := s.checkSystemDisk(rec); err != nil {
		return rec, fmt.Errorf("start vm %q: %w", rec.Name, err)
	}
	firstBoot, err := firstBootOf(img, rec)
	if err != nil {
		return rec, fmt.Errorf("start vm %q: %w", rec.Name, err)
	}
	if err := firstBoot.checkNAT(img, rec); err != nil {
		return rec, fmt.Errorf("start vm %q: %w", rec.Name, err)
	}
	consoleStart := consoleSize(rec.Runtime.LogPath)
	tap := network.TapName(rec.ID)
	h := handles{Tap: tap}
	prefix := s.cfg.CIDR
	spec := vmm.Spec{
		ID:          rec.ID,
		Name:        rec.Name,
		VCPUs:       rec.Spec.VCPUCount,
		MemoryMiB:   rec.Spec.MemoryMiB,
		Kernel:      img.KernelPath,
		Initrd:      img.InitrdPath,
		TapDevice:   tap,
		MAC:         rec.Runtime.MACAddress,
		Dir:         rec.Runtime.VMDir,
		ConsoleLog:  rec.Runtime.LogPath,
		AgentSocket: filepath.Join(rec.Runtime.VMDir, "agent.sock"),
		VSockCID:    vsockCID(rec.Runtime.GuestIP),
		Cmdline: kernelCmdline(bootParams{
			GuestIP:   rec.Runtime.GuestIP,
			Prefix:    prefix,
			Gateway:   s.cfg.BridgeIP,
			DNS:       s.cfg.DefaultDNS,
			Hostname:  rec.Name,
			MAC:       rec.Runtime.MACAddress,
			FirstBoot: firstBoot.Image,
		}),
		Disks: []vmm.Disk{
			systemDisk(rec),
			{ID: "work", Path: rec.Runtime.WorkDiskPath, Format: "raw"},
		},
	}
	if disk := image.ModulesDiskOf(img.ArtifactDir); disk != "" {
		spec.Disks = append(spec.Disks, vmm.Disk{ID: "modules", Path: disk, Format: "raw", ReadOnly: true})
	}
	steps := []step{
		{
			// A vm set --disk-size on a running VM lands here.
			name: "work-disk-size",
			do:   func(ctx context.Context) error { return growWorkDisk(ctx, rec) },
		},
		{
			name: "bridge",
			do:   func(ctx context.Context) error { return s.network.EnsureBridge(ctx) },
		},
		{
			name: "tap",
			do: func(ctx context.Context) error {
				if s.taps != nil {
					// A pooled TAP exists already: a daemon dying before
					// the handles name it leaves it to reconcile's sweep.
					name, err := s.taps.Acquire(ctx)
					if err != nil {
						return err
					}
					h.Tap, spec.TapDevice = name, name
					return s.persistLocked(ctx, &rec, h)
				}
				// Intent first: a daemon dying after this finds the TAP.
				if err := s.persistLocked(ctx, &rec, h); err != nil {
					return err
				}
				return s.network.CreateTap(ctx, h.Tap)
			},
			undo: func(ctx context.Context) error { return s.network.DeleteTap(ctx, h.Tap) },
		},
		{
			name: "nat",
			do: func(ctx context.Context) error {
				if !rec.Spec.NATEnabled {
					return nil
				}
				return s.addNAT(ctx, rec, h.Tap)
			},
			undo: func(ctx context.Context) error { return s.removeNAT(ctx, rec.ID) },
		},
		{
			name: "vmm",
			do: func(ctx context.Context) error {
				vh, err := s.driver.Start(ctx, spec)
				if err != nil {
					return err
				}
				if a, ok := s.driver.(accelerated); ok && vh.Accel == "" {
					vh.Accel, _ = a.Accel()
				}
				if err := faultPoint("vmm-launched"); err != nil {
					return err
				}
				h.VMM = vh
				rec.State = model.VMStateRunning
				rec.Runtime.LastError = ""
				return s.persistLocked(ctx, &rec, h)
			},
			undo: func(ctx context.Context) error {
				return vmm.Kill(ctx, h.VMM)
			},
		},
		{
			name: "ssh",
			do: func(ctx context.Context) error {
				if report != nil {
					report("wait-ssh", fmt.Sprintf("waiting for %s (%s) to answer SSH", rec.Name, rec.Runtime.GuestIP))
				}
				if s.guestReady != nil {
					return s.guestReady(ctx, rec, h)
				}
				if firstBoot.Pending {
					return s.waitFirstBoot(ctx, rec, h, firstBoot.FirstBoot, consoleStart, report)
				}
				return s.waitSSH(ctx, rec, h)
			},
		},
	}
	if rec.Runtime.RootfsBackend != "" {
		// The raw system disk's devices, right before the VMM opens them.
		rootfs := step{
			name: "rootfs",
			do: func(ctx context.Context) error {
				if err := s.activateSystemDisk(ctx, &rec); err != nil {
					return err
				}
				spec.Disks[0] = systemDisk(rec)
				return nil
			},
			undo: func(ctx context.Context) error {
				_, err := s.deactivateSystemDisk(ctx, &rec)
				return err
			},
		}
		at := len(steps) - 2 // before vmm
		steps = append(steps[:at], append([]step{rootfs}, steps[at:]...)...)
	}
	logger.Info("starting vm")
	if a, ok := s.driver.(accelerated); ok && report != nil {
		if accel, why := a.Accel(); accel == "tcg" {
			report("warning", fmt.Sprintf("%s; using TCG software emulation, so the guest boots and runs slower", why))
		}
	}
	start := time.Now()
	if err := runSteps(ctx, logger, verbose(report), steps); err != nil {
		failure := fmt.Errorf("start vm %q: %w; the vm is kept in state error for inspection (banger vm logs %s; banger vm delete %s)", rec.Name, err, rec.Name, rec.Name)
		rec.State = model.VMStateError
		rec.Runtime.LastError = errdefs.OneLine(failure.Error())
		if cause := context.Cause(ctx); errors.Is(cause, errStopRequested) {
			// Rolled back on the user's word: stopped, not failed.
			failure = fmt.Errorf("start vm %q: %w", rec.Name, cause)
			rec.State, rec.Runtime.LastError = model.VMStateStopped, ""
		}
		left := handles{}
		if vmm.Alive(h.VMM) {
			// The rollback could not kill it: keep what finds it again.
			left = h
		}
		if perr := s.persistLocked(context.WithoutCancel(ctx), &rec, left); perr != nil {
			logger.Error("record start failure", "error", perr)
		}
		return rec, failure
	}
	rec.LastTouchedAt = model.Now()
	if err := s.store.UpdateVM(ctx, rec); err != nil {
		return rec, err
	}
	logger.Info("vm running", "ip", rec.Runtime.GuestIP, "pid", h.VMM.PID, "accel", h.VMM.Accel, "duration", time.Since(start).Round(time.Millisecond))
	return rec, nil
}

// accelerated is a driver that can say which accelerator it uses and why.
type accelerated interface {
	Accel() (accel, reason string)
}

// waitSSH waits until the guest answers SSH, failing early when the VMM
// process exits.
func (s *Service) waitSSH(ctx context.Context, rec model.VMRecord, h handles) error {
	return s.waitSSHWithin(ctx, rec, h, s.SSHTimeout)
}

// waitSSHWithin is waitSSH with its timeout.
func (s *Service) waitSSHWithin(ctx context.Context, rec model.VMRecord, h handles, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := make(chan struct{})
	go func() {
		_ = vmm.WaitExit(ctx, h.VMM)
		if ctx.Err() == nil {
			close(exited)
			cancel()
		}
	}()
	err := sshkey.WaitReady(ctx, rec.Runtime.GuestIP+":22", s.key.Signer, s.knownHosts.Callback(knownHostNames(rec)...))
	select {
	case <-exited:
		return errors.New("the vmm exited during boot")
	default:
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("guest did not answer ssh within %s", timeout)
	}
	return err
}

// persistLocked writes the handles file and mirrors it onto the record.
func (s *Service) persistLocked(ctx context.Context, rec *model.VMRecord, h handles) error {
	if err := writeHandles(rec.Runtime.VMDir, h.withDisk(rec.Runtime)); err != nil {
		return err
	}
	mirror(rec, h)
	rec.Runtime.State = rec.State
	if err := s.store.UpdateVM(ctx, *rec); err != nil {
		return err
	}
	s.notify()
	return nil
}

// notify tells the daemon that VM records changed.
func (s *Service) notify() {
	if s.changed != nil {
		s.changed()
	}
}

// Stop powers a VM off gracefully, killing it when the guest does not
// power off within StopTimeout.
func (s *Service) Stop(ctx context.Context, ref string) (model.VMRecord, error) {
	// A start still booting holds the lock: end it rather than wait.
	if rec, err := s.store.GetVM(ctx, ref); err == nil && s.boots.cancel(rec.ID, errStopRequested) {
		s.logger.Info("stop ends the boot in progress", "vm", rec.Name)
	}
	rec, _, err := s.stopIf(ctx, ref, nil)
	return rec, err
}

// errStopRequested ends a start whose VM was stopped while it booted.
var errStopRequested = errors.New("stopped by vm stop while booting")

// stopIf stops a VM when cond, checked under the VM's lock, holds (nil
// means always), and reports whether it did.
func (s *Service) stopIf(ctx context.Context, ref string, cond func(model.VMRecord) bool) (model.VMRecord, bool, error) {
	// A stop, once asked for, completes even when the client goes away:
	// canceling it must not turn a graceful power-off into a kill.
	ctx = context.WithoutCancel(ctx)
	stopped := false
	rec, err := s.withVM(ctx, ref, func(rec *model.VMRecord) error {
		if cond != nil && !cond(*rec) {
			return nil
		}
		stopped = true
		h := readHandles(*rec)
		if vmm.Alive(h.VMM) {
			s.shutdownLocked(ctx, *rec, h)
		}
		if err := faultPoint("stop-vmm"); err != nil {
			return err
		}
		return s.settleStoppedLocked(ctx, rec, "")
	})
	return rec, stopped, err
}

func (s *Service) shutdownLocked(ctx context.Context, rec model.VMRecord, h handles) {
	logger := s.logger.With("vm", rec.Name)
	waitCtx, cancel := context.WithTimeout(ctx, s.StopTimeout)
	defer cancel()
	// A power button press made before the guest's logind runs is lost,
	// so press again every few seconds until the guest powers off.
	for waitCtx.Err() == nil {
		// A VMM that does not take the request in time is wedged (its
		// process stopped, its control socket hung): kill it now rather
		// than wait out the whole bound.
		reqCtx, cancelReq := context.WithTimeout(waitCtx, shutdownRequestTimeout)
		err := s.driver.Shutdown(reqCtx, h.VMM)
		cancelReq()
		if err != nil {
			if errors.Is(err, vmm.ErrNotRunning) {
				return
			}
			logger.Warn("graceful shutdown request failed", "error", err)
			break
		}
		pressCtx, cancelPress := context.WithTimeout(waitCtx, shutdownRepeat)
		err = vmm.WaitExit(pressCtx, h.VMM)
		cancelPress()
		if err == nil {
			logger.Info("guest powered off")
			return
		}
	}
	logger.Warn("guest did not power off in time; killing", "timeout", s.StopTimeout)
	killCtx, cancelKill := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelKill()
	if err := vmm.Kill(killCtx, h.VMM); err != nil {
		logger.Error("kill vmm", "error", err)
	}
}

// shutdownRepeat is how long a stop waits after each power button press.
const shutdownRepeat = 5 * time.Second

// shutdownRequestTimeout bounds one power button request to the VMM.
const shutdownRequestTimeout = 5 * time.Second

// Kill sends sig to a VM's VMM process (SIGKILL when sig is 0) and
// settles the VM as stopped once the process is gone.
func (s *Service) Kill(ctx context.Context, ref string, sig syscall.Signal) (model.VMRecord, error) {
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	rec, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return rec, err
	}
	// Signal before taking the VM's lock: a start waiting for a wedged
	// guest holds it, and kill must always work. The handle names a
	// verified process, so this is safe without the lock.
	h := readHandles(rec)
	if err := vmm.Signal(h.VMM, sig); err != nil && !errors.Is(err, vmm.ErrNotRunning) {
		return rec, fmt.Errorf("kill vm %q: signal vmm: %w", rec.Name, err)
	}
	wait := 10 * time.Second
	if sig != syscall.SIGKILL {
		wait = 3 * time.Second
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := vmm.WaitExit(waitCtx, h.VMM); err != nil {
		if sig == syscall.SIGKILL {
			return rec, fmt.Errorf("kill vm %q: vmm pid %d still runs after SIGKILL", rec.Name, h.VMM.PID)
		}
		// The signal did not end the VMM (STOP, CONT, USR1, ...): that
		// is the caller's business; the VM still runs.
		return s.Get(ctx, rec.ID)
	}
	return s.withVM(ctx, rec.ID, func(rec *model.VMRecord) error {
		if vmm.Alive(readHandles(*rec).VMM) {
			return nil // started again meanwhile
		}
		return s.settleStoppedLocked(ctx, rec, "")
	})
}

// Restart stops and starts a VM.
func (s *Service) Restart(ctx context.Context, ref string, report func(step, msg string)) (model.VMRecord, error) {
	if _, err := s.Stop(ctx, ref); err != nil {
		return model.VMRecord{}, err
	}
	return s.Start(ctx, ref, report)
}

// Delete kills a VM if it runs and removes everything it owns: TAP,
// known_hosts entries, directory with its disks, and record. The intent
// is recorded first, so a daemon that dies part-way finishes the delete
// at its next start.
func (s *Service) Delete(ctx context.Context, ref string) (model.VMRecord, error) {
	// Teardown, once started, is not abandoned with the client.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	// Kill first, without the lock, like vm kill: a start waiting for a
	// wedged guest must not hold the delete up.
	if rec, err := s.store.GetVM(ctx, ref); err == nil {
		_ = vmm.Kill(ctx, readHandles(rec).VMM)
	}
	return s.withVM(ctx, ref, func(rec *model.VMRecord) error {
		rec.Runtime.Intent = model.IntentDeleting
		if err := s.store.UpdateVM(ctx, *rec); err != nil {
			return fmt.Errorf("delete vm %q: %w", rec.Name, err)
		}
		if err := s.removeLocked(ctx, *rec); err != nil {
			return fmt.Errorf("delete vm %q: %w", rec.Name, err)
		}
		s.logger.Info("vm deleted", "vm", rec.Name)
		return nil
	})
}

// removeLocked tears a VM down completely; every step is idempotent, so
// it can run again after an interruption.
func (s *Service) removeLocked(ctx context.Context, rec model.VMRecord) error {
	h := readHandles(rec)
	if err := vmm.Kill(ctx, h.VMM); err != nil {
		return err
	}
	if err := faultPoint("delete-kill"); err != nil {
		return err
	}
	var errs []error
	for _, tap := range uniq(h.Tap, rec.Runtime.TapDevice, network.TapName(rec.ID)) {
		if err := s.network.DeleteTap(ctx, tap); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.removeNAT(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	if err := s.knownHosts.Remove(knownHostNames(rec)...); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := faultPoint("delete-tap"); err != nil {
		return err
	}
	// The jail first: it holds links and mounts of the disks.
	if j, ok := s.driver.(jailRemover); ok {
		if err := j.RemoveJail(rec.ID); err != nil {
			return err
		}
	}
	if err := s.removeSystemDisk(ctx, rec); err != nil {
		return err
	}
	if err := os.RemoveAll(rec.Runtime.VMDir); err != nil {
		return err
	}
	if err := faultPoint("delete-dir"); err != nil {
		return err
	}
	if err := s.store.DeleteVM(ctx, rec.ID); err != nil {
		return err
	}
	s.notify()
	return nil
}

// withVM runs fn on the fresh record of ref under the VM's lock.
func (s *Service) withVM(ctx context.Context, ref string, fn func(rec *model.VMRecord) error) (model.VMRecord, error) {
	rec, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return rec, err
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	if rec, err = s.store.GetVM(ctx, rec.ID); err != nil {
		return rec, err
	}
	if err := fn(&rec); err != nil {
		return rec, err
	}
	return rec, nil
}

// settleStoppedLocked releases the host resources of a VM whose VMM is
// gone and records it as stopped (or error with lastError).
func (s *Service) settleStoppedLocked(ctx context.Context, rec *model.VMRecord, lastError string) error {
	h := readHandles(*rec)
	if vmm.Alive(h.VMM) {
		return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("vm %q: vmm pid %d still runs", rec.Name, h.VMM.PID))
	}
	var errs []error
	for _, tap := range uniq(h.Tap, rec.Runtime.TapDevice) {
		if err := s.network.DeleteTap(ctx, tap); err != nil {
			errs = append(errs, err)
		}
	}
	if err := faultPoint("release-tap"); err != nil {
		errs = append(errs, err)
	}
	if err := s.removeNAT(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []string{h.VMM.ControlSocket, h.VMM.AgentSocket} {
		if f != "" {
			_ = os.Remove(f)
		}
	}
	if _, err := s.deactivateSystemDisk(ctx, rec); err != nil {
		errs = append(errs, err)
	}
	switch {
	case lastError != "":
		rec.State = model.VMStateError
		rec.Runtime.LastError = lastError
	case rec.State != model.VMStateCreated:
		rec.State = model.VMStateStopped
	}
	if err := s.persistLocked(ctx, rec, handles{}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func uniq(vals ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range vals {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// ParseSignal parses a signal name ("KILL", "SIGTERM") or number.
func ParseSignal(raw string) (syscall.Signal, error) {
	name := strings.ToUpper(strings.TrimSpace(raw))
	if name == "" {
		return syscall.SIGKILL, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name = strings.TrimPrefix(name, "SIG")
	signals := map[string]syscall.Signal{
		"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT,
		"HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
		"USR2": syscall.SIGUSR2, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	}
	if sig, ok := signals[name]; ok {
		return sig, nil
	}
	return 0, errdefs.Invalid(fmt.Errorf("unknown signal %q", raw))
}
