package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"banger/internal/model"
	"banger/internal/vmm"
)

// Reconcile makes the store agree with the host after a daemon start:
// running VMs whose VMM still lives are adopted, dead ones are settled
// as stopped, and host objects no record owns (TAPs, VM directories)
// are removed. It logs and goes on; it never kills an unverified pid.
func (s *Service) Reconcile(ctx context.Context) error {
	recs, err := s.store.ListVMs(ctx)
	if err != nil {
		return err
	}
	ownedTaps := map[string]bool{}
	ownedDirs := map[string]bool{}
	var errs []error
	for _, rec := range recs {
		logger := s.logger.With("vm", rec.Name)
		if rec.Runtime.Intent != "" {
			// A create or delete the last daemon did not finish: a create
			// is undone (it holds no user data yet), a delete completed.
			logger.Warn("finishing an interrupted operation", "intent", rec.Runtime.Intent)
			unlock := s.locks.lock(rec.ID)
			err := s.removeLocked(ctx, rec)
			unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("vm %q (%s): %w", rec.Name, rec.Runtime.Intent, err))
				ownedDirs[filepath.Base(rec.Runtime.VMDir)] = true
			}
			continue
		}
		ownedDirs[filepath.Base(rec.Runtime.VMDir)] = true
		ownedDirs[filepath.Base(s.vmDir(rec.ID))] = true
		unlock := s.locks.lock(rec.ID)
		h := readHandles(rec)
		if r, ok := s.driver.(vmm.Recoverer); ok && h.VMM.PID == 0 {
			// Launched, but the daemon died before it recorded the pid.
			if found, ok := r.Recover(rec.Runtime.VMDir); ok {
				logger.Warn("found a vmm the record does not name", "pid", found.PID)
				h.VMM = found
				if err := writeHandles(rec.Runtime.VMDir, h); err != nil {
					errs = append(errs, err)
				}
			}
		}
		alive := vmm.Alive(h.VMM)
		switch {
		case alive && rec.State == model.VMStateRunning:
			logger.Info("adopted running vm", "pid", h.VMM.PID)
			if h.Tap != "" {
				ownedTaps[h.Tap] = true
			}
		case alive:
			logger.Warn("vmm runs for a vm recorded as "+string(rec.State)+"; killing it", "pid", h.VMM.PID)
			if err := vmm.Kill(ctx, h.VMM); err != nil {
				errs = append(errs, err)
			}
			if err := s.settleStoppedLocked(ctx, &rec, ""); err != nil {
				errs = append(errs, err)
			}
		case rec.State == model.VMStateRunning:
			logger.Warn("vm was running but its vmm is gone; marking stopped")
			if err := s.settleStoppedLocked(ctx, &rec, ""); err != nil {
				errs = append(errs, err)
			}
		case h.Tap != "" || h.VMM.PID != 0:
			if err := s.settleStoppedLocked(ctx, &rec, rec.Runtime.LastError); err != nil {
				errs = append(errs, err)
			}
		}
		if !alive || rec.State != model.VMStateRunning {
			// Device-mapper devices of a VM that does not run (created
			// and never started, or left by a daemon that died).
			if changed, err := s.deactivateSystemDisk(ctx, &rec); err != nil {
				errs = append(errs, err)
			} else if changed {
				if err := s.store.UpdateVM(ctx, rec); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if _, err := os.Stat(rec.Runtime.WorkDiskPath); err != nil && alive && rec.State == model.VMStateRunning {
			// The VMM holds it open: the VM runs on, its record says so,
			// and the log says what its next stop loses.
			logger.Error("work disk is missing from the host; the running vm still has it open, and loses it when it stops", "path", rec.Runtime.WorkDiskPath)
		} else if err != nil && rec.State != model.VMStateError {
			logger.Error("work disk is missing", "path", rec.Runtime.WorkDiskPath)
			rec.State = model.VMStateError
			rec.Runtime.LastError = "work disk " + rec.Runtime.WorkDiskPath + " is missing"
			if err := s.store.UpdateVM(ctx, rec); err != nil {
				errs = append(errs, err)
			}
		}
		unlock()
	}
	// NAT rules: exactly those of the running NAT VMs, as they are now.
	if recs, err := s.store.ListVMs(ctx); err != nil {
		errs = append(errs, err)
	} else if err := s.syncNAT(ctx, recs); err != nil {
		errs = append(errs, fmt.Errorf("nat: %w", err))
	}
	taps, err := s.network.ListTaps(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, tap := range taps {
		if !ownedTaps[tap] {
			s.logger.Info("removing leaked tap", "tap", tap)
			if err := s.network.DeleteTap(ctx, tap); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := s.reapJails(ctx); err != nil {
		errs = append(errs, err)
	}
	entries, err := os.ReadDir(s.layout.VMsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if ownedDirs[e.Name()] {
			continue
		}
		// A directory no record owns is a half-made VM, or the work of a
		// VM whose database went away: never delete disks on a guess.
		if err := s.quarantine(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reapJails removes the driver's per-machine directories (jails) of VMs
// that no longer exist.
func (s *Service) reapJails(ctx context.Context) error {
	r, ok := s.driver.(jailReaper)
	if !ok {
		return nil
	}
	recs, err := s.store.ListVMs(ctx)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(recs))
	for _, rec := range recs {
		known[rec.ID] = true
	}
	removed, err := r.ReapJails(func(id string) bool { return known[id] })
	for _, id := range removed {
		s.logger.Info("removed the jail of a vm that no longer exists", "vm_id", shortID(id))
	}
	if err != nil {
		return fmt.Errorf("reap jails: %w", err)
	}
	return nil
}

// quarantine moves a VM directory no record owns out of the VMs
// directory, into the orphans directory, where a person can look at it.
func (s *Service) quarantine(name string) error {
	dst := filepath.Join(s.layout.StateDir, "orphans", name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		dst += "-" + model.Now().Format("20060102T150405")
	}
	s.logger.Warn("moving a vm directory no record owns to the orphans directory", "dir", name, "to", dst)
	return os.Rename(filepath.Join(s.layout.VMsDir(), name), dst)
}
