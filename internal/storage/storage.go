// Package storage makes and edits the disk files of images and VMs:
// qcow2 system overlays over an image's raw rootfs, ext4 work disks
// cloned from a seed and grown, ext4 images built from a directory tree,
// and single files read or written inside an unmounted ext4 image. It
// needs no mounts and no loop devices: every external tool (qemu-img,
// mkfs.ext4, resize2fs, e2fsck, tune2fs, debugfs) runs through
// internal/hostexec with arguments built by pure functions in args.go.
//
// The daemon's VM and image services import it.
package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

// WorkLabel is the filesystem label of every work disk; the guest mounts
// LABEL=banger-work at /root.
const WorkLabel = "banger-work"

// AllocatedBytes reports the bytes a file really occupies on the host
// (st_blocks*512), which for sparse disk images is far below their size.
func AllocatedBytes(p string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, errdefs.NotFound(fmt.Errorf("allocated bytes of %q: %w", p, err))
		}
		return 0, fmt.Errorf("allocated bytes of %q: %w", p, err)
	}
	return st.Blocks * 512, nil
}

// createExclusive creates p, failing with errdefs.ErrAlreadyExists when
// it exists: disk files hold user data and are never overwritten.
func createExclusive(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, errdefs.WithKind(errdefs.ErrAlreadyExists, err)
		}
		return nil, err
	}
	return f, nil
}

// checkAbsent fails with errdefs.ErrAlreadyExists when p exists.
func checkAbsent(p string) error {
	if _, err := os.Lstat(p); err == nil {
		return errdefs.WithKind(errdefs.ErrAlreadyExists, fmt.Errorf("%s already exists", p))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// validateSize rejects sizes that are not positive.
func validateSize(size int64) error {
	if size <= 0 {
		return errdefs.Invalid(fmt.Errorf("size %d must be positive", size))
	}
	return nil
}

// validateGuestPath accepts absolute, clean paths inside an ext4 image
// that debugfs can take quoted: no "..", no double quotes, no control
// characters.
func validateGuestPath(p string) error {
	switch {
	case p == "":
		return errdefs.Invalid(errors.New("guest path is empty"))
	case !strings.HasPrefix(p, "/"):
		return errdefs.Invalid(fmt.Errorf("guest path %q is not absolute", p))
	case path.Clean(p) != p:
		return errdefs.Invalid(fmt.Errorf("guest path %q is not clean (want %q)", p, path.Clean(p)))
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return errdefs.Invalid(fmt.Errorf("guest path %q contains ..", p))
		}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return errdefs.Invalid(fmt.Errorf("guest path %q contains a quote, backslash or control character", p))
		}
	}
	return nil
}
