package vm

import (
	"context"
	"errors"
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
		ownedDirs[filepath.Base(rec.Runtime.VMDir)] = true
		logger := s.logger.With("vm", rec.Name)
		unlock := s.locks.lock(rec.ID)
		h := readHandles(rec)
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
		unlock()
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
	entries, err := os.ReadDir(s.layout.VMsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if !ownedDirs[e.Name()] {
			s.logger.Info("removing vm directory no record owns", "dir", e.Name())
			if err := os.RemoveAll(filepath.Join(s.layout.VMsDir(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
