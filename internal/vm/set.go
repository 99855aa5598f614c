package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
)

// Set changes a VM's spec. NAT changes apply at once; other changes to a
// running VM take effect at its next start; the work disk only grows,
// offline, before the VM boots.
func (s *Service) Set(ctx context.Context, req model.VMSetRequest) (model.VMRecord, error) {
	if req.VCPUCount == nil && req.MemoryMiB == nil && req.WorkDiskSizeBytes == nil && req.NATEnabled == nil {
		return model.VMRecord{}, errdefs.Invalid(errors.New("nothing to change: give --vcpu, --memory, --disk-size, --nat or --no-nat"))
	}
	return s.withVM(ctx, req.IDOrName, func(rec *model.VMRecord) error {
		spec := rec.Spec
		if req.VCPUCount != nil {
			spec.VCPUCount = *req.VCPUCount
		}
		if req.MemoryMiB != nil {
			spec.MemoryMiB = *req.MemoryMiB
		}
		if req.NATEnabled != nil {
			spec.NATEnabled = *req.NATEnabled
		}
		if req.WorkDiskSizeBytes != nil {
			if *req.WorkDiskSizeBytes < rec.Spec.WorkDiskSizeBytes {
				return errdefs.Invalid(fmt.Errorf("vm %q: disk size %s is smaller than the current %s: work disks only grow",
					rec.Name, model.FormatSizeBytes(*req.WorkDiskSizeBytes), model.FormatSizeBytes(rec.Spec.WorkDiskSizeBytes)))
			}
			spec.WorkDiskSizeBytes = *req.WorkDiskSizeBytes
		}
		if err := validateSpec(spec); err != nil {
			return fmt.Errorf("vm %q: %w", rec.Name, err)
		}
		if rec.State == model.VMStateRunning && spec.NATEnabled != rec.Spec.NATEnabled {
			// NAT changes live: the rules follow the running guest.
			var err error
			if spec.NATEnabled {
				err = s.addNAT(ctx, *rec, readHandles(*rec).Tap)
			} else {
				err = s.removeNAT(ctx, rec.ID)
			}
			if err != nil {
				return fmt.Errorf("vm %q: %w", rec.Name, err)
			}
		}
		rec.Spec = spec
		if rec.State != model.VMStateRunning {
			if err := growWorkDisk(ctx, *rec); err != nil {
				return fmt.Errorf("vm %q: %w", rec.Name, err)
			}
		}
		return s.store.UpdateVM(ctx, *rec)
	})
}

// growWorkDisk grows the work disk file and filesystem to the spec's
// size when it is smaller. The VM must not run.
func growWorkDisk(ctx context.Context, rec model.VMRecord) error {
	st, err := os.Stat(rec.Runtime.WorkDiskPath)
	if err != nil {
		return fmt.Errorf("work disk: %w", err)
	}
	if st.Size() >= rec.Spec.WorkDiskSizeBytes {
		return nil
	}
	if err := storage.GrowWorkDisk(ctx, rec.Runtime.WorkDiskPath, rec.Spec.WorkDiskSizeBytes); err != nil {
		return fmt.Errorf("grow work disk to %s: %w", model.FormatSizeBytes(rec.Spec.WorkDiskSizeBytes), err)
	}
	return nil
}

// SetWorkspace records the workspace prepared on a VM and marks it touched.
func (s *Service) SetWorkspace(ctx context.Context, ref string, ws model.VMWorkspace) (model.VMRecord, error) {
	return s.withVM(ctx, ref, func(rec *model.VMRecord) error {
		if ws.GuestPath != "" && (ws.GuestPath != "/root" && !strings.HasPrefix(ws.GuestPath, "/root/")) {
			return errdefs.Invalid(fmt.Errorf("workspace guest path %q: must be under /root", ws.GuestPath))
		}
		if ws.PreparedAt.IsZero() {
			ws.PreparedAt = model.Now()
		}
		rec.Workspace = ws
		rec.LastTouchedAt = model.Now()
		return s.store.UpdateVM(ctx, *rec)
	})
}

// Prune deletes a VM only if it is still stopped (or failed) when its
// lock is taken, so a VM started meanwhile is never deleted.
func (s *Service) Prune(ctx context.Context, ref string) (model.VMRecord, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	return s.withVM(ctx, ref, func(rec *model.VMRecord) error {
		if !rec.State.Prunable() {
			return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("vm %q is %s; prune deletes only stopped vms", rec.Name, rec.State))
		}
		rec.Runtime.Intent = model.IntentDeleting
		if err := s.store.UpdateVM(ctx, *rec); err != nil {
			return err
		}
		return s.removeLocked(ctx, *rec)
	})
}
