package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
	"banger/internal/rpc"
	"banger/internal/storage"
	"banger/internal/vm"
)

// registerPromote wires image.promote and image.cache_prune.
func (d *Daemon) registerPromote(srv *rpc.Server) {
	rpc.Register(srv, api.MethodImagePromote, func(ctx context.Context, req api.ImagePromoteRequest) (model.Image, error) {
		return d.promote(ctx, req, reporter(ctx, req.Name))
	})
	rpc.Register(srv, api.MethodImageCachePrune, d.pruneCache)
}

// promotedRootfs is the root filesystem's name in a promoted image's dir.
const promotedRootfs = "rootfs.ext4"

// promote makes the root filesystem of a VM that is not running the new
// managed image req.Name: the VM's system disk flattened into a raw ext4
// (shrunk to its content plus headroom), its machine identity reset
// (SSH host keys, machine id, hostname), and the kernel, initrd, modules,
// work seed and kernel reference of the VM's image, hard-linked where
// they are banger's own, else copied. Only the system disk is promoted:
// /root lives on the VM's work disk, and the new image's VMs get the
// work seed of the VM's image. On any error nothing is left.
func (d *Daemon) promote(ctx context.Context, req api.ImagePromoteRequest, report func(step, msg string)) (_ model.Image, err error) {
	if req.VM == "" {
		return model.Image{}, errdefs.Invalid(errors.New("promote: name the vm to promote"))
	}
	if err := model.ValidateName(req.Name); err != nil {
		return model.Image{}, errdefs.Invalid(fmt.Errorf("promote: image %w", err))
	}
	rec, err := d.vms.Get(ctx, req.VM)
	if err != nil {
		return model.Image{}, err
	}
	if err := promotable(rec); err != nil {
		return model.Image{}, err
	}
	if err := d.images.nameFree(ctx, req.Name); err != nil {
		return model.Image{}, err
	}
	src, err := d.store.GetImage(ctx, rec.ImageID)
	if err != nil {
		return model.Image{}, fmt.Errorf("promote vm %q: its image: %w", rec.Name, err)
	}
	disk, format, err := systemDiskOf(rec)
	if err != nil {
		return model.Image{}, err
	}

	id, err := model.NewID()
	if err != nil {
		return model.Image{}, err
	}
	dir := filepath.Join(d.layout.ImagesDir(), id)
	if err := os.MkdirAll(d.layout.ImagesDir(), 0o755); err != nil {
		return model.Image{}, fmt.Errorf("promote vm %q: %w", rec.Name, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return model.Image{}, fmt.Errorf("promote vm %q: %w", rec.Name, err)
	}
	defer func() {
		if err == nil {
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove image dir %s: %w", dir, rerr))
		}
	}()
	fail := func(err error) error { return fmt.Errorf("promote vm %q: %w", rec.Name, err) }

	logger := d.logger.With("component", "images", "image", req.Name, "vm", rec.Name)
	start := time.Now()
	if report != nil {
		report("flatten", fmt.Sprintf("flatten the system disk of vm %s", rec.Name))
	}
	rootfs := filepath.Join(dir, promotedRootfs)
	size, err := storage.FlattenRootfs(ctx, storage.FlattenRequest{Source: disk, Format: format, Output: rootfs})
	if err != nil {
		return model.Image{}, fail(err)
	}
	if report != nil {
		report("identity", "remove SSH host keys, machine id and hostname")
	}
	if err := storage.ResetIdentity(ctx, rootfs); err != nil {
		return model.Image{}, fail(err)
	}
	// A raw disk has no lock a starting VMM would run into: make sure the
	// VM did not start while it was read.
	if err := d.unchanged(ctx, rec); err != nil {
		return model.Image{}, fail(err)
	}

	img := model.Image{
		ID:                            id,
		Name:                          req.Name,
		Managed:                       true,
		ArtifactDir:                   dir,
		RootfsPath:                    rootfs,
		BuildSize:                     model.FormatSizeBytes(size),
		SeededSSHPublicKeyFingerprint: src.SeededSSHPublicKeyFingerprint,
		KernelRef:                     src.KernelRef,
	}
	if report != nil {
		report("artifacts", fmt.Sprintf("kernel, initrd and work seed from image %s", src.Name))
	}
	taken := map[string]bool{promotedRootfs: true, layerListFile: true, image.FirstBootFile: true, image.ModulesDiskName: true}
	share := d.images.owns(src)
	for _, a := range []struct {
		role, from string
		to         *string
	}{
		{"kernel", src.KernelPath, &img.KernelPath},
		{"initrd", src.InitrdPath, &img.InitrdPath},
		{"work-seed", src.WorkSeedPath, &img.WorkSeedPath},
		{"modules", src.ModulesDir, &img.ModulesDir},
	} {
		if a.from == "" {
			continue
		}
		name := artifactName(a.role, a.from, taken)
		dst := filepath.Join(dir, name)
		if err := linkOrCopy(ctx, a.from, dst, share); err != nil {
			return model.Image{}, fail(fmt.Errorf("%s of image %s: %w", a.role, src.Name, err))
		}
		*a.to = dst
	}
	if img.WorkSeedPath == "" {
		img.SeededSSHPublicKeyFingerprint = ""
	}
	if from := image.ModulesDiskOf(src.ArtifactDir); from != "" {
		if err := linkOrCopy(ctx, from, filepath.Join(dir, image.ModulesDiskName), share); err != nil {
			return model.Image{}, fail(fmt.Errorf("modules disk of image %s: %w", src.Name, err))
		}
	}
	// A VM that never completed its first boot has no systemd or sshd
	// yet: the new image's VMs still install them.
	if fb, pending, err := vm.FirstBootPending(src, rec); err != nil {
		return model.Image{}, fail(err)
	} else if pending {
		if err := image.WriteFirstBoot(dir, fb); err != nil {
			return model.Image{}, fail(err)
		}
	}
	now := model.Now()
	img.CreatedAt, img.UpdatedAt = now, now
	if err := d.store.CreateImage(ctx, img); err != nil {
		return model.Image{}, fail(err)
	}
	logger.Info("vm promoted to an image", "image_id", id[:12], "size", img.BuildSize, "from_image", src.Name,
		"duration_ms", time.Since(start).Milliseconds())
	return img, nil
}

// promotable refuses a VM whose disk may change while it is read.
func promotable(rec model.VMRecord) error {
	switch {
	case rec.State == model.VMStateRunning:
		return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf(
			"vm %q is running; stop it first (banger vm stop %s), then promote it", rec.Name, rec.Name))
	case rec.Runtime.Intent != "":
		return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf(
			"vm %q is being %s; promote it once that is done", rec.Name, intentVerb(rec.Runtime.Intent)))
	}
	return nil
}

func intentVerb(intent string) string {
	switch intent {
	case model.IntentCreating:
		return "created"
	case model.IntentDeleting:
		return "deleted"
	}
	return "changed (" + intent + ")"
}

// systemDiskOf returns the file and format of a VM's system disk.
func systemDiskOf(rec model.VMRecord) (string, string, error) {
	if rec.Runtime.SystemOverlay == "" {
		return "", "", fmt.Errorf("promote vm %q: no system disk is recorded", rec.Name)
	}
	switch storage.RootfsBackend(rec.Runtime.RootfsBackend) {
	case "":
		return rec.Runtime.SystemOverlay, storage.FormatQCOW2, nil
	case storage.RootfsReflink, storage.RootfsSparse:
		return rec.Runtime.SystemOverlay, storage.FormatRaw, nil
	case storage.RootfsDMSnapshot:
		return "", "", errdefs.WithKind(errdefs.ErrNotImplemented, fmt.Errorf(
			"promote vm %q: its system disk is a device-mapper snapshot, which promote cannot read yet", rec.Name))
	}
	return "", "", fmt.Errorf("promote vm %q: unknown system disk backend %q", rec.Name, rec.Runtime.RootfsBackend)
}

// unchanged fails when the VM was started, deleted or recreated since
// rec was read.
func (d *Daemon) unchanged(ctx context.Context, rec model.VMRecord) error {
	now, err := d.store.GetVM(ctx, rec.ID)
	if err != nil {
		return fmt.Errorf("the vm is gone: %w", err)
	}
	if now.State == model.VMStateRunning || now.Runtime.PID != rec.Runtime.PID || now.Runtime.PIDStartTime != rec.Runtime.PIDStartTime {
		return errdefs.WithKind(errdefs.ErrConflict, errors.New("the vm was started while its disk was read; stop it and promote it again"))
	}
	return nil
}

// artifactName is the file name an artifact from path gets in a new
// image's dir: its own name, or role-prefixed when another artifact
// took that name.
func artifactName(role, path string, taken map[string]bool) string {
	name := filepath.Base(path)
	if taken[name] {
		name = role + "-" + name
	}
	for i := 2; taken[name]; i++ {
		name = fmt.Sprintf("%s-%d-%s", role, i, filepath.Base(path))
	}
	taken[name] = true
	return name
}

// pruneCache serves image.cache_prune.
func (d *Daemon) pruneCache(ctx context.Context, req api.CachePruneRequest) (api.CachePruneResult, error) {
	imgs, err := d.store.ListImages(ctx)
	if err != nil {
		return api.CachePruneResult{}, fmt.Errorf("cache prune: %w", err)
	}
	kerns, err := d.store.ListKernels(ctx)
	if err != nil {
		return api.CachePruneResult{}, fmt.Errorf("cache prune: %w", err)
	}
	in := pruneInputs{
		cacheDir:    d.layout.CacheDir,
		kernelDir:   filepath.Join(d.layout.StateDir, "kernels"),
		usedKernels: usedKernels(imgs),
		catalog:     map[string]bool{},
		now:         time.Now(),
		started:     d.started,
		mounts:      hostMounts(),
	}
	for _, k := range kerns {
		in.catalog[k.ID] = true
	}
	var notes []string
	used, why := usedLayers(imgs)
	in.usedLayers = used
	if why != "" {
		notes = append(notes, "layers kept: "+why)
	}
	if req.Packages {
		// Builds use package_cache_dir, or CacheDir/debs without one.
		in.packageDirs = []string{filepath.Join(d.layout.CacheDir, "debs")}
		if p := filepath.Clean(d.cfg.PackageCacheDir); d.cfg.PackageCacheDir != "" && p != "/" && p != in.packageDirs[0] {
			in.packageDirs = append(in.packageDirs, p)
		}
	}
	// Holding the build lock keeps builds from starting while their
	// caches are removed; a running build keeps them.
	if d.images.buildMu.TryLock() {
		defer d.images.buildMu.Unlock()
	} else {
		in.buildRunning = true
	}
	items, planNotes := in.plan()
	res := prune(items, req.DryRun)
	res.Notes = append(notes, planNotes...)
	if !req.DryRun {
		d.logger.Info("cache pruned", "entries", len(res.Entries), "bytes", res.Bytes, "packages", req.Packages)
	}
	return res, nil
}
