package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// MakeExt4FromDir creates dst, an ext4 image of size bytes labelled label,
// holding a copy of the tree srcDir (mkfs.ext4 -d: no mount, no loop
// device). Owners, modes, symlinks, device nodes, hard links and extended
// attributes are kept as the caller sees them, so building an image tree
// owned by root needs root only to read it; the filesystem root takes the
// mode and owner of srcDir itself. dst must not exist; on error it is
// removed.
func MakeExt4FromDir(ctx context.Context, srcDir, dst string, size int64, label string) (err error) {
	if err := validateSize(size); err != nil {
		return fmt.Errorf("make ext4 %q: %w", dst, err)
	}
	if len(label) > 16 {
		return errdefs.Invalid(fmt.Errorf("make ext4 %q: label %q is longer than 16 bytes", dst, label))
	}
	srcInfo, err := os.Stat(srcDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("make ext4 %q: %w", dst, err))
		}
		return fmt.Errorf("make ext4 %q: %w", dst, err)
	}
	if !srcInfo.IsDir() {
		return errdefs.Invalid(fmt.Errorf("make ext4 %q: %s is not a directory", dst, srcDir))
	}
	entries, err := countEntries(srcDir)
	if err != nil {
		return fmt.Errorf("make ext4 %q: %w", dst, err)
	}
	f, err := createExclusive(dst)
	if err != nil {
		return fmt.Errorf("make ext4: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(dst)
		}
	}()
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("make ext4 %q: %w", dst, err)
	}
	opts := mkfsOptions{Path: dst, Label: label, SrcDir: srcDir, Inodes: inodeCount(size, entries)}
	if _, err := hostexec.Run(ctx, "mkfs.ext4", mkfsArgs(opts)...); err != nil {
		return fmt.Errorf("make ext4 %q from %s: %w", dst, srcDir, err)
	}
	// mkfs.ext4 -d gives the filesystem root 0755 root:root whatever srcDir
	// is; a work seed's root is /root (0700).
	if st, ok := srcInfo.Sys().(*syscall.Stat_t); ok {
		if srcInfo.Mode().Perm() != 0o755 || st.Uid != 0 || st.Gid != 0 {
			script := debugfsSetOwnerScript("/", typeDirectory, srcInfo.Mode(), int(st.Uid), int(st.Gid))
			want := inodeInfo{Exists: true, Type: "directory", Mode: unixPerm(srcInfo.Mode()), UID: int(st.Uid), GID: int(st.Gid), Size: -1}
			if err := runAndVerify(ctx, dst, script, []string{"/"}, []inodeInfo{want}); err != nil {
				return fmt.Errorf("make ext4 %q: set root directory mode: %w", dst, err)
			}
		}
	}
	return nil
}

// countEntries counts the files, directories and links under dir.
func countEntries(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// inodeCount returns an explicit inode count for mkfs when the default
// ratio (one inode per 16 KiB) would not hold entries files with a
// quarter to spare, else 0 (keep the default).
func inodeCount(size, entries int64) int64 {
	want := entries + entries/4 + 64
	if size/16384 >= want {
		return 0
	}
	return want
}
