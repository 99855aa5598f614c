package vm

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
)

// resolveSpec fills a create request's zero values from the configured
// defaults and validates the result.
func resolveSpec(req model.VMCreateRequest, defaults model.VMDefaultsOverride) (model.VMSpec, error) {
	spec := model.VMSpec{
		VCPUCount:             firstNonZero(req.VCPUCount, defaults.VCPUCount, model.DefaultVCPUCount),
		MemoryMiB:             firstNonZero(req.MemoryMiB, defaults.MemoryMiB, model.DefaultMemoryMiB),
		SystemOverlaySizeByte: firstNonZero(req.SystemOverlaySizeByte, defaults.SystemOverlaySizeByte, model.DefaultSystemOverlaySize),
		WorkDiskSizeBytes:     firstNonZero(req.WorkDiskSizeBytes, defaults.WorkDiskSizeBytes, model.DefaultWorkDiskSize),
		NATEnabled:            req.NATEnabled || defaults.NATEnabled,
	}
	return spec, validateSpec(spec)
}

func validateSpec(spec model.VMSpec) error {
	var errs []error
	if spec.VCPUCount < 1 || spec.VCPUCount > model.MaxVCPUCount {
		errs = append(errs, fmt.Errorf("vcpu count %d: want 1 to %d", spec.VCPUCount, model.MaxVCPUCount))
	}
	if spec.MemoryMiB < model.MinMemoryMiB || spec.MemoryMiB > model.MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("memory %d MiB: want %d MiB to %d GiB", spec.MemoryMiB, model.MinMemoryMiB, model.MaxMemoryMiB/1024))
	}
	for _, d := range []struct {
		what string
		size int64
	}{{"disk size", spec.WorkDiskSizeBytes}, {"system overlay size", spec.SystemOverlaySizeByte}} {
		if d.size < minDiskBytes || d.size > model.MaxDiskBytes {
			errs = append(errs, fmt.Errorf("%s %s: want %s to %s", d.what, model.FormatSizeBytes(d.size),
				model.FormatSizeBytes(minDiskBytes), model.FormatSizeBytes(model.MaxDiskBytes)))
		}
	}
	if len(errs) > 0 {
		return errdefs.Invalid(errors.Join(errs...))
	}
	return nil
}

// minDiskBytes is the smallest disk an ext4 work disk or overlay can be.
const minDiskBytes = 64 << 20

func firstNonZero[T int | int64](vals ...T) T {
	for _, v := range vals {
		if v != 0 {
			return v
		}
	}
	return 0
}

// checkImageArtifacts makes sure every file a VM of img needs exists, so
// a missing kernel fails before anything is made.
func checkImageArtifacts(img model.Image) error {
	files := []struct{ what, path string }{
		{"rootfs", img.RootfsPath},
		{"kernel", img.KernelPath},
		{"initrd", img.InitrdPath},
		{"work seed", img.WorkSeedPath},
	}
	for _, f := range files {
		if f.path == "" {
			if f.what == "rootfs" || f.what == "kernel" {
				return errdefs.Invalid(fmt.Errorf("image %q has no %s", img.Name, f.what))
			}
			continue
		}
		st, err := os.Stat(f.path)
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.Invalid(fmt.Errorf("image %q: %s %s is missing", img.Name, f.what, f.path))
		}
		if err != nil {
			return fmt.Errorf("image %q: %s: %w", img.Name, f.what, err)
		}
		if st.IsDir() {
			return errdefs.Invalid(fmt.Errorf("image %q: %s %s is a directory", img.Name, f.what, f.path))
		}
	}
	return nil
}

// bootParams are the guest settings passed on the kernel command line.
type bootParams struct {
	GuestIP  string // "172.16.0.5"
	Prefix   string // "24"
	Gateway  string
	DNS      string
	Hostname string
	MAC      string
	// FirstBoot boots image.FirstBootInit instead of the image's init.
	FirstBoot bool
}

// kernelCmdline builds the guest kernel command line: the console, the
// root disk, and banger's network settings that a guest unit applies.
func kernelCmdline(p bootParams) string {
	args := []string{
		"console=ttyS0",
		"root=/dev/vda",
		"rw",
		"net.ifnames=0",
		"panic=-1",
		"banger.ip=" + p.GuestIP + "/" + p.Prefix,
		"banger.gw=" + p.Gateway,
		"banger.dns=" + p.DNS,
		"banger.hostname=" + p.Hostname,
		"banger.mac=" + p.MAC,
	}
	if p.FirstBoot {
		args = append(args, "init="+image.FirstBootInit)
	}
	return strings.Join(args, " ")
}
