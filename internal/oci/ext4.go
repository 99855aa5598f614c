package oci

import (
	"context"
	"fmt"
	"regexp"
	"strconv"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/image"
	"banger/internal/model"
	"banger/internal/storage"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
	// MinRootfsSize is the smallest default rootfs.
	MinRootfsSize = gib
)

// minE2fsprogs is the oldest e2fsprogs whose mkfs.ext4 -d copies hard
// links, device nodes and xattrs as this package needs.
var minE2fsprogs = [2]int{1, 45}

// DefaultSize is the rootfs size for a tree of content bytes: the
// content times 1.5, rounded up to a MiB, at least MinRootfsSize.
func DefaultSize(content int64) int64 {
	size := content + content/2
	size = (size + mib - 1) / mib * mib
	return max(size, MinRootfsSize)
}

// MakeExt4 makes out, an ext4 image labelled image.RootLabel holding the
// tree dir, with mkfs.ext4 -d: nothing is mounted. size 0 means
// DefaultSize of the tree's content; an explicit size below the content
// is an errdefs.ErrInvalid error. It returns the size used. out must
// not exist; on error it is removed.
func MakeExt4(ctx context.Context, dir, out string, size int64) (int64, error) {
	size, _, err := makeExt4(ctx, dir, out, size)
	return size, err
}

// makeExt4 is MakeExt4, also returning the tree's content bytes.
func makeExt4(ctx context.Context, dir, out string, size int64) (used, content int64, err error) {
	if err := checkE2fsprogs(ctx); err != nil {
		return 0, 0, fmt.Errorf("make rootfs %s: %w", out, err)
	}
	content, err = image.TreeBytes(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("make rootfs %s: measure %s: %w", out, dir, err)
	}
	switch {
	case size == 0:
		size = DefaultSize(content)
	case size < 0:
		return 0, 0, errdefs.Invalid(fmt.Errorf("make rootfs %s: size %d must be positive", out, size))
	case size < content:
		return 0, 0, errdefs.Invalid(fmt.Errorf("make rootfs %s: size %s is smaller than the image content (%s); give at least %s",
			out, model.FormatSizeBytes(size), model.FormatSizeBytes(content), model.FormatSizeBytes(DefaultSize(content))))
	}
	if err := storage.MakeExt4FromDir(ctx, dir, out, size, image.RootLabel); err != nil {
		return 0, 0, err
	}
	return size, content, nil
}

// checkE2fsprogs makes sure mkfs.ext4 and debugfs exist and are recent
// enough.
func checkE2fsprogs(ctx context.Context) error {
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := hostexec.Look(tool, "e2fsprogs"); err != nil {
			return errdefs.WithKind(errdefs.ErrUnavailable, err)
		}
	}
	out, err := hostexec.Run(ctx, "sh", mkfsVersionArgs()...)
	if err != nil {
		return fmt.Errorf("mkfs.ext4 version: %w", err)
	}
	v, err := parseMke2fsVersion(string(out))
	if err != nil {
		return err
	}
	if v[0] < minE2fsprogs[0] || v[0] == minE2fsprogs[0] && v[1] < minE2fsprogs[1] {
		return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("e2fsprogs %d.%d is too old: mkfs.ext4 -d needs %d.%d or later to copy hard links, devices and xattrs",
			v[0], v[1], minE2fsprogs[0], minE2fsprogs[1]))
	}
	return nil
}

// mkfsVersionArgs runs mkfs.ext4 -V, which prints on stderr, so that
// its version comes out on stdout.
func mkfsVersionArgs() []string {
	return []string{"-c", "exec mkfs.ext4 -V 2>&1"}
}

var mke2fsVersionRE = regexp.MustCompile(`mke2fs (\d+)\.(\d+)`)

// parseMke2fsVersion reads "mke2fs 1.47.0 (5-Feb-2023)".
func parseMke2fsVersion(s string) ([2]int, error) {
	m := mke2fsVersionRE.FindStringSubmatch(s)
	if m == nil {
		return [2]int{}, fmt.Errorf("cannot read the mkfs.ext4 version from %q", errdefs.OneLine(s))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return [2]int{major, minor}, nil
}
