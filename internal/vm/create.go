package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/network"
	"banger/internal/storage"
)

// Create makes a VM from req: record, directory, system overlay and work
// disk; then starts it unless req.NoStart. Bad input fails before
// anything is made; a failure while making it undoes every step.
func (s *Service) Create(ctx context.Context, req model.VMCreateRequest, report func(step, msg string)) (model.VMRecord, error) {
	name := req.Name
	if name != "" {
		if err := model.ValidateName(name); err != nil {
			return model.VMRecord{}, errdefs.Invalid(err)
		}
		if existing, err := s.store.GetVM(ctx, name); err == nil && existing.Name == name {
			return model.VMRecord{}, errdefs.WithKind(errdefs.ErrAlreadyExists, fmt.Errorf("vm %q already exists", name))
		}
	}
	spec, err := resolveSpec(req, s.cfg.VMDefaults)
	if err != nil {
		return model.VMRecord{}, err
	}
	imageName := req.ImageName
	if imageName == "" {
		imageName = s.cfg.DefaultImageName
	}
	img, err := s.images.Resolve(ctx, imageName, report)
	if err != nil {
		return model.VMRecord{}, err
	}
	if err := checkImageArtifacts(img); err != nil {
		return model.VMRecord{}, err
	}
	if firstBoot, err := firstBootOf(img, model.VMRecord{}); err != nil {
		return model.VMRecord{}, err
	} else if err := firstBoot.checkNAT(img, model.VMRecord{Name: name, Spec: spec}); err != nil {
		return model.VMRecord{}, err
	}
	if st, err := os.Stat(img.RootfsPath); err == nil && st.Size() > spec.SystemOverlaySizeByte {
		return model.VMRecord{}, errdefs.Invalid(fmt.Errorf("system overlay size %s is smaller than the rootfs of image %q (%s)",
			model.FormatSizeBytes(spec.SystemOverlaySizeByte), img.Name, model.HumanBytes(st.Size())))
	}

	id, err := model.NewID()
	if err != nil {
		return model.VMRecord{}, err
	}
	if name == "" {
		name = randomName()
	}
	dir := s.vmDir(id)
	now := model.Now()
	rec := model.VMRecord{
		ID:            id,
		Name:          name,
		ImageID:       img.ID,
		ImageName:     img.Name,
		State:         model.VMStateCreated,
		CreatedAt:     now,
		UpdatedAt:     now,
		LastTouchedAt: now,
		Spec:          spec,
		Runtime: model.VMRuntime{
			State:         model.VMStateCreated,
			VMDir:         dir,
			DNSName:       name + ".vm",
			LogPath:       filepath.Join(dir, "console.log"),
			MACAddress:    network.MACFromID(id),
			Intent:        model.IntentCreating,
			SystemOverlay: s.systemDiskPath(dir),
			WorkDiskPath:  filepath.Join(dir, "work.ext4"),
		},
	}
	logger := s.logger.With("vm", name, "vm_id", id[:12])
	unlock := s.locks.lock(id)
	defer unlock()

	steps := []step{
		{
			name: "record",
			do: func(ctx context.Context) error {
				stored, err := s.store.CreateVM(ctx, rec, func(used []string) (string, error) {
					return network.AllocateIP(s.cfg.BridgeIP, s.cfg.CIDR, used)
				})
				if err != nil {
					return err
				}
				rec = stored
				return nil
			},
			undo: func(ctx context.Context) error { return s.store.DeleteVM(ctx, id) },
		},
		{
			name: "vm-dir",
			do:   func(ctx context.Context) error { return os.MkdirAll(dir, 0o700) },
			undo: func(ctx context.Context) error { return os.RemoveAll(dir) },
		},
		{
			name: "system-overlay",
			do: func(ctx context.Context) error {
				return s.createSystemDisk(ctx, &rec, img, spec.SystemOverlaySizeByte)
			},
			undo: func(ctx context.Context) error { return s.removeSystemDisk(ctx, rec) },
		},
		{
			name: "work-disk",
			do: func(ctx context.Context) error {
				if err := s.disks.workDisk(ctx, img.WorkSeedPath, rec.Runtime.WorkDiskPath, spec.WorkDiskSizeBytes); err != nil {
					return err
				}
				if img.WorkSeedPath != "" && img.SeededSSHPublicKeyFingerprint == s.key.Fingerprint {
					return nil
				}
				return s.installAuthorizedKey(ctx, rec.Runtime.WorkDiskPath)
			},
		},
		{
			name: "file-sync",
			do: func(ctx context.Context) error {
				return s.syncFiles(ctx, rec.Runtime.WorkDiskPath, report)
			},
		},
		{
			name: "ready",
			do: func(ctx context.Context) error {
				rec.Runtime.Intent = ""
				return s.store.UpdateVM(ctx, rec)
			},
		},
	}
	if err := runSteps(ctx, logger, verbose(report), steps); err != nil {
		return model.VMRecord{}, fmt.Errorf("create vm %q: %w", name, err)
	}
	// Stale host keys of an earlier VM with the same address or name.
	if err := s.knownHosts.Remove(knownHostNames(rec)...); err != nil {
		logger.Warn("clean known_hosts", "error", err)
	}
	logger.Info("vm created", "ip", rec.Runtime.GuestIP, "image", img.Name)
	if req.NoStart {
		// A dm-snapshot's devices exist only while the VM runs.
		if changed, err := s.deactivateSystemDisk(ctx, &rec); err != nil {
			logger.Warn("deactivate system disk", "error", err)
		} else if changed {
			if err := s.store.UpdateVM(ctx, rec); err != nil {
				logger.Warn("record system disk", "error", err)
			}
		}
		return rec, nil
	}
	return s.startLocked(ctx, rec, report)
}

// installAuthorizedKey writes the current banger key as root's only
// authorized key on a work disk.
func (s *Service) installAuthorizedKey(ctx context.Context, workDisk string) error {
	if err := storage.MkdirAll(ctx, workDisk, "/.ssh", 0o700, 0, 0); err != nil {
		return fmt.Errorf("install ssh key: %w", err)
	}
	if err := storage.WriteFile(ctx, workDisk, "/.ssh/authorized_keys", []byte(s.key.AuthorizedLine+"\n"), 0o600, 0, 0); err != nil {
		return fmt.Errorf("install ssh key: %w", err)
	}
	return nil
}

// verbose wraps report so step names are marked verbose progress.
func verbose(report func(step, msg string)) func(step, msg string) {
	if report == nil {
		return nil
	}
	return func(step, msg string) { report("step:"+step, msg) }
}
