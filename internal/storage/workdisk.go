package storage

import (
	"context"
	"errors"
	"fmt"
	"os"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/model"
)

// CreateWorkDisk creates dst, a raw ext4 work disk of size bytes labelled
// banger-work. With a seed it clones the seed image (reflink where the
// host filesystem can, else a sparse copy of its data) and grows file and
// filesystem to size; with seed "" it makes an empty filesystem. dst must
// not exist; on error it is removed.
func CreateWorkDisk(ctx context.Context, seed, dst string, size int64) (err error) {
	if err := validateSize(size); err != nil {
		return fmt.Errorf("create work disk %q: %w", dst, err)
	}
	f, err := createExclusive(dst)
	if err != nil {
		return fmt.Errorf("create work disk: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(dst)
		}
	}()
	if seed == "" {
		err = f.Truncate(size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("create work disk %q: %w", dst, err)
		}
		if _, err := hostexec.Run(ctx, "mkfs.ext4", mkfsArgs(mkfsOptions{Path: dst, Label: WorkLabel})...); err != nil {
			return fmt.Errorf("create work disk %q: %w", dst, err)
		}
		return nil
	}
	err = cloneSeed(f, seed, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create work disk %q from %s: %w", dst, seed, err)
	}
	if err := growFilesystem(ctx, dst); err != nil {
		return fmt.Errorf("create work disk %q: %w", dst, err)
	}
	if err := ensureLabel(ctx, dst, WorkLabel); err != nil {
		return fmt.Errorf("create work disk %q: %w", dst, err)
	}
	return nil
}

// cloneSeed copies the ext4 image seed into dst and extends dst to size.
func cloneSeed(dst *os.File, seed string, size int64) error {
	src, err := os.Open(seed)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("work seed: %w", err))
		}
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if size < st.Size() {
		return errdefs.Invalid(fmt.Errorf("size %s is smaller than the work seed (%s)",
			model.FormatSizeBytes(size), model.FormatSizeBytes(st.Size())))
	}
	if _, err := readSuperblock(seed); err != nil {
		return fmt.Errorf("work seed: %w", err)
	}
	if err := cloneFile(dst, src); err != nil {
		return err
	}
	return dst.Truncate(size)
}

// GrowWorkDisk grows the work disk at path, which no VM may be using, to
// size bytes: the file first, then its filesystem. Shrinking is refused
// with errdefs.ErrInvalid.
func GrowWorkDisk(ctx context.Context, path string, size int64) error {
	if err := validateSize(size); err != nil {
		return fmt.Errorf("grow work disk %q: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("grow work disk %q: %w", path, err))
		}
		return fmt.Errorf("grow work disk %q: %w", path, err)
	}
	if size < st.Size() {
		return errdefs.Invalid(fmt.Errorf("grow work disk %q: refusing to shrink it from %s to %s (work disks only grow)",
			path, model.FormatSizeBytes(st.Size()), model.FormatSizeBytes(size)))
	}
	if _, err := readSuperblock(path); err != nil {
		return fmt.Errorf("grow work disk %q: %w", path, err)
	}
	if size > st.Size() {
		if err := os.Truncate(path, size); err != nil {
			return fmt.Errorf("grow work disk %q: %w", path, err)
		}
	}
	// The disk holds user data: once started, e2fsck and resize2fs run
	// to completion even if the caller gives up.
	if err := growFilesystem(context.WithoutCancel(ctx), path); err != nil {
		return fmt.Errorf("grow work disk %q: %w", path, err)
	}
	return nil
}

// growFilesystem grows the ext4 filesystem in the file path to the file's
// size, checking it first when resize2fs would demand that.
func growFilesystem(ctx context.Context, path string) error {
	sb, err := readSuperblock(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fileBlocks := uint64(st.Size()) / sb.BlockSize; fileBlocks <= sb.BlockCount {
		return nil // already fills the file
	}
	if sb.NeedsCheck() {
		if err := checkFilesystem(ctx, path); err != nil {
			return err
		}
	}
	if _, err := hostexec.Run(ctx, "resize2fs", resize2fsArgs(path)...); err != nil {
		return fmt.Errorf("grow filesystem: %w", err)
	}
	return nil
}

// checkFilesystem runs e2fsck -f -p. Exit status 1 means errors were
// found and fixed, which is success here.
func checkFilesystem(ctx context.Context, path string) error {
	_, err := hostexec.Run(ctx, "e2fsck", e2fsckArgs(path)...)
	if fsckSucceeded(err) {
		return nil
	}
	return fmt.Errorf("check filesystem: %w", err)
}

// fsckSucceeded reads e2fsck's exit status: 0 clean, 1 repaired.
func fsckSucceeded(err error) bool {
	if err == nil {
		return true
	}
	var herr *hostexec.Error
	return errors.As(err, &herr) && herr.ExitCode == 1
}

// ensureLabel sets the filesystem label unless it already is label.
func ensureLabel(ctx context.Context, path, label string) error {
	sb, err := readSuperblock(path)
	if err != nil {
		return err
	}
	if sb.VolumeLabel == label {
		return nil
	}
	if _, err := hostexec.Run(ctx, "tune2fs", tune2fsLabelArgs(path, label)...); err != nil {
		return fmt.Errorf("set label %q: %w", label, err)
	}
	return nil
}
