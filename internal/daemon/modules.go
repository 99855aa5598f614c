package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
)

// modulesCacheDir holds the modules disks (see image.MakeModulesDisk) of
// pulled images, one per kernel, named by the sha256 of the kernel file
// and hard-linked into each image that boots it.
func (m *images) modulesCacheDir() string { return filepath.Join(m.layout.CacheDir, "modules") }

// modulesDisk returns the cached modules disk of the kernel at
// kernelPath, made first when missing from the /lib/modules tree
// modulesDir or, when that is "", from the modules in the ext4 rootfs.
// A source without modules is ErrNotFound.
func (m *images) modulesDisk(ctx context.Context, kernelPath, modulesDir, rootfs string) (path string, cached bool, err error) {
	sum, err := fileSHA256(kernelPath)
	if err != nil {
		return "", false, fmt.Errorf("modules disk: %w", err)
	}
	path = filepath.Join(m.modulesCacheDir(), sum+".ext4")
	if _, err := os.Stat(path); err == nil {
		return path, true, nil
	}
	if err := os.MkdirAll(m.modulesCacheDir(), 0o755); err != nil {
		return "", false, fmt.Errorf("modules disk: %w", err)
	}
	suffix, err := model.NewOpID()
	if err != nil {
		return "", false, err
	}
	// Made aside and renamed: a concurrent pull of the same kernel, or a
	// daemon dying midway, never leaves a partial disk under the name.
	tmp := filepath.Join(m.modulesCacheDir(), modulesTempPrefix+suffix+".ext4")
	if err := image.MakeModulesDisk(ctx, tmp, modulesDir, rootfs, m.layout.CacheDir); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", false, fmt.Errorf("modules disk: %w", err)
	}
	return path, false, nil
}

// addModulesDisk links the modules disk of the kernel at kernelPath
// (see modulesDisk) into the image dir. A kernel without modules only
// gets a warning: its VMs boot, without loadable modules. of names the
// kernel's source in messages.
func (m *images) addModulesDisk(ctx context.Context, dir, kernelPath, modulesDir, rootfs, of string, report func(step, msg string)) error {
	warn := func(msg string) {
		if report != nil {
			report("warning", msg)
		}
	}
	if modulesDir == "" && rootfs == "" {
		warn(of + " has no modules: the VMs cannot load any (modprobe fails)")
		return nil
	}
	disk, cached, err := m.modulesDisk(ctx, kernelPath, modulesDir, rootfs)
	if errdefs.IsNotFound(err) {
		warn(of + " has no kernel modules: the VMs cannot load any (modprobe fails)")
		return nil
	}
	if err != nil {
		return err
	}
	if report != nil {
		how := "made"
		if cached {
			how = "cached"
		}
		report("modules", fmt.Sprintf("kernel modules from %s on a read-only disk (%s)", of, how))
	}
	if err := linkOrCopy(ctx, disk, filepath.Join(dir, image.ModulesDiskName), true); err != nil {
		return fmt.Errorf("modules disk: %w", err)
	}
	return nil
}

// modulesTempPrefix starts the name of a modules disk being made.
const modulesTempPrefix = ".modules-"

// Details returns the image ref with its first-boot and modules disk
// details.
func (m *images) Details(ctx context.Context, ref string) (api.ImageDetails, error) {
	img, err := m.store.GetImage(ctx, ref)
	if err != nil {
		return api.ImageDetails{}, err
	}
	d := api.ImageDetails{Image: img, ModulesDisk: image.ModulesDiskOf(img.ArtifactDir)}
	fb, ok, err := image.ReadFirstBoot(img.ArtifactDir)
	if err != nil {
		return api.ImageDetails{}, fmt.Errorf("image %q: %w", img.Name, err)
	}
	if ok {
		d.FirstBoot = &api.FirstBoot{PackageManager: fb.PackageManager, Installs: fb.Installs}
	}
	return d, nil
}
