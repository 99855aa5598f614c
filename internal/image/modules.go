package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/storage"
)

// An image whose root filesystem lacks the modules of the kernel it
// boots (a pulled container image booting a borrowed kernel) gets them
// on a modules disk: a small ext4 labelled ModulesLabel whose root is a
// /lib/modules tree (<release>/kernel/..., modules.dep, ...), attached
// read-only to its VMs and mounted by the image's fstab.

// ModulesDiskName is the modules disk's file name in an image's dir.
const ModulesDiskName = "modules.ext4"

// ModulesLabel is the modules disk's filesystem label.
const ModulesLabel = "banger-modules"

// ModulesDiskOf returns the modules disk in the image dir artifactDir,
// "" when it has none.
func ModulesDiskOf(artifactDir string) string {
	if artifactDir == "" {
		return ""
	}
	p := filepath.Join(artifactDir, ModulesDiskName)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	return p
}

// modulesHeadroom is added to the modules' size for the filesystem's own
// structures.
const modulesHeadroom = 64 << 20

// MakeModulesDisk makes dst, a modules disk of the /lib/modules tree
// dir (a directory of release directories), or when dir is "" of the
// /usr/lib/modules (else /lib/modules) of the ext4 image rootfs, read
// with debugfs without mounting it. A source without modules is
// ErrNotFound. scratch is where the rootfs's modules are copied to
// ("" for the default temporary directory). dst must not exist; on
// error nothing is left.
func MakeModulesDisk(ctx context.Context, dst, dir, rootfs, scratch string) (err error) {
	if dir == "" {
		tmp, err := os.MkdirTemp(scratch, "modules-")
		if err != nil {
			return fmt.Errorf("modules disk: %w", err)
		}
		defer func() {
			if rerr := removeDump(tmp); rerr != nil && err == nil {
				err = fmt.Errorf("modules disk: clean up: %w", rerr)
			}
		}()
		if dir, err = dumpModules(ctx, rootfs, tmp); err != nil {
			return err
		}
	}
	releases, size, err := modulesTree(dir)
	if err != nil {
		return err
	}
	if releases == 0 {
		return errdefs.NotFound(fmt.Errorf("modules disk: %s holds no kernel release directory", dir))
	}
	size = (size + modulesHeadroom + 1<<20 - 1) &^ (1<<20 - 1)
	if err := storage.MakeExt4FromDir(ctx, dir, dst, size, ModulesLabel); err != nil {
		return fmt.Errorf("modules disk: %w", err)
	}
	return nil
}

// dumpModules copies the modules tree of the ext4 image rootfs into tmp
// and returns where it is.
func dumpModules(ctx context.Context, rootfs, tmp string) (string, error) {
	for _, p := range []string{"/usr/lib/modules", "/lib/modules"} {
		out, err := hostexec.Run(ctx, "debugfs", "-R", "stat "+p, rootfs)
		if err != nil {
			return "", fmt.Errorf("modules disk: read %s: %w", rootfs, err)
		}
		if !strings.Contains(string(out), "Type: directory") {
			continue // missing, or /lib a symlink on a merged-/usr root
		}
		if _, err := hostexec.Run(ctx, "debugfs", "-R", "rdump "+p+" "+debugfsQuote(tmp), rootfs); err != nil {
			return "", fmt.Errorf("modules disk: copy %s out of %s: %w", p, rootfs, err)
		}
		return filepath.Join(tmp, "modules"), nil
	}
	return "", errdefs.NotFound(fmt.Errorf("modules disk: %s has no /usr/lib/modules or /lib/modules", rootfs))
}

// modulesTree counts the release directories of a /lib/modules tree (a
// directory holding modules.dep) and sums the size of its files.
func modulesTree(dir string) (releases int, size int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("modules disk: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "modules.dep")); err == nil {
				releases++
			}
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size += info.Size() + 4096 // a block's worth per inode, rounded up
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("modules disk: %w", err)
	}
	return releases, size, nil
}
