package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// Formats of a system disk that FlattenRootfs reads.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// Headroom a flattened rootfs keeps over its filesystem's minimum size:
// a quarter of the minimum plus flattenHeadroom, rounded up to
// flattenRounding. A guest grows its root filesystem to its disk at
// boot; the headroom is for guests that cannot (no resize2fs).
const (
	flattenHeadroom = 256 << 20
	flattenRounding = 64 << 20
)

// FlattenRequest says which system disk to flatten into which new file.
type FlattenRequest struct {
	// Source is a VM's system disk: a qcow2 overlay (over its image's
	// rootfs) or a raw ext4 image. No VM may be using it.
	Source string
	// Format is FormatQCOW2 or FormatRaw.
	Format string
	// Output is the raw ext4 file to make; it must not exist.
	Output string
}

// FlattenRootfs makes req.Output a standalone raw ext4 image with the
// content of the system disk req.Source, without mounting anything: a
// qcow2 overlay is converted with its backing file merged in (qemu-img
// convert, which writes zeros as holes and takes a shared lock that a
// running QEMU's write lock conflicts with), a raw disk is cloned or
// copied sparsely. The copy is then checked and repaired (e2fsck -f -y:
// a VM that was killed leaves a journal to replay) and, when the guest
// grew the filesystem to its disk, shrunk to its minimum size plus
// headroom (resize2fs), the file cut to the filesystem's end. It
// returns the size of the output. On error, ctx's end included, no
// output is left.
func FlattenRootfs(ctx context.Context, req FlattenRequest) (size int64, err error) {
	fail := func(err error) error { return fmt.Errorf("flatten %s: %w", req.Source, err) }
	if req.Format != FormatQCOW2 && req.Format != FormatRaw {
		return 0, errdefs.Invalid(fail(fmt.Errorf("format %q: want %s or %s", req.Format, FormatQCOW2, FormatRaw)))
	}
	if req.Output == "" {
		return 0, errdefs.Invalid(fail(errors.New("no output path")))
	}
	st, err := os.Stat(req.Source)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errdefs.NotFound(fail(err))
		}
		return 0, fail(err)
	}
	if !st.Mode().IsRegular() {
		return 0, errdefs.Invalid(fail(errors.New("not a regular file")))
	}
	if err := checkAbsent(req.Output); err != nil {
		return 0, fail(err)
	}
	defer func() {
		if err != nil {
			if rerr := os.Remove(req.Output); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fail(fmt.Errorf("remove output: %w", rerr)))
			}
		}
	}()
	if req.Format == FormatQCOW2 {
		if _, err := hostexec.Run(ctx, "qemu-img", qemuImgConvertArgs(req.Source, req.Output)...); err != nil {
			return 0, fail(err)
		}
	} else if err := copyDisk(req.Source, req.Output); err != nil {
		return 0, fail(err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fail(err)
	}
	if _, err := readSuperblock(req.Output); err != nil {
		return 0, errdefs.Invalid(fail(fmt.Errorf("the disk holds no ext4 filesystem: %w", err)))
	}
	if err := repairFilesystem(ctx, req.Output); err != nil {
		return 0, fail(err)
	}
	if size, err = shrinkFilesystem(ctx, req.Output); err != nil {
		return 0, fail(err)
	}
	return size, nil
}

// copyDisk clones or sparsely copies the raw disk src into dst, a new
// file.
func copyDisk(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := createExclusive(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if err := cloneFile(out, in); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return out.Sync()
}

// repairFilesystem runs e2fsck -f -y: exit status 1 (errors fixed) and 2
// (fixed, reboot wanted: meaningless for a file) are success.
func repairFilesystem(ctx context.Context, path string) error {
	_, err := hostexec.Run(ctx, "e2fsck", e2fsckRepairArgs(path)...)
	var herr *hostexec.Error
	if err == nil || errors.As(err, &herr) && (herr.ExitCode == 1 || herr.ExitCode == 2) {
		return nil
	}
	return fmt.Errorf("check filesystem: %w", err)
}

// shrinkFilesystem shrinks the checked filesystem in path to its minimum
// plus headroom when it is larger, and cuts the file to the
// filesystem's end. It returns the file's size.
func shrinkFilesystem(ctx context.Context, path string) (int64, error) {
	sb, err := readSuperblock(path)
	if err != nil {
		return 0, err
	}
	out, err := hostexec.Run(ctx, "resize2fs", resize2fsMinimumArgs(path)...)
	if err != nil {
		return 0, fmt.Errorf("estimate minimum size: %w", err)
	}
	minBlocks, err := parseMinimumSize(out)
	if err != nil {
		return 0, err
	}
	blocks := sb.BlockCount
	if target := shrinkTarget(minBlocks, sb.BlockSize); target < blocks {
		if _, err := hostexec.Run(ctx, "resize2fs", resize2fsToArgs(path, target)...); err != nil {
			return 0, fmt.Errorf("shrink filesystem: %w", err)
		}
		if sb, err = readSuperblock(path); err != nil {
			return 0, err
		}
		if sb.BlockCount != target {
			return 0, fmt.Errorf("shrink filesystem: got %d blocks, want %d", sb.BlockCount, target)
		}
		blocks = target
	}
	size := int64(blocks * sb.BlockSize)
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st.Size() > size {
		if err := os.Truncate(path, size); err != nil {
			return 0, fmt.Errorf("cut the file to the filesystem: %w", err)
		}
	} else {
		size = st.Size()
	}
	return size, nil
}

// shrinkTarget is the block count of a flattened filesystem whose
// minimum is minBlocks: the minimum, a quarter more and flattenHeadroom,
// rounded up to flattenRounding.
func shrinkTarget(minBlocks, blockSize uint64) uint64 {
	if blockSize == 0 {
		return minBlocks
	}
	bytes := minBlocks*blockSize + minBlocks*blockSize/4 + flattenHeadroom
	bytes = (bytes + flattenRounding - 1) / flattenRounding * flattenRounding
	return bytes / blockSize
}

// parseMinimumSize reads resize2fs -P's "Estimated minimum size of the
// filesystem: N" (N in filesystem blocks).
func parseMinimumSize(out []byte) (uint64, error) {
	const prefix = "Estimated minimum size of the filesystem:"
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("parse resize2fs -P output %q", strings.TrimSpace(line))
		}
		return n, nil
	}
	return 0, fmt.Errorf("resize2fs -P printed no minimum size: %q", strings.TrimSpace(string(out)))
}

// qemuImgConvertArgs merges the qcow2 overlay src and its backing chain
// into the raw image dst; zeros become holes (qemu-img's default -S 4k).
func qemuImgConvertArgs(src, dst string) []string {
	return []string{"convert", "-q", "-f", FormatQCOW2, "-O", FormatRaw, src, dst}
}

// e2fsckRepairArgs checks path fully and answers yes to every repair:
// the file is a fresh copy nobody uses.
func e2fsckRepairArgs(path string) []string { return []string{"-f", "-y", path} }

// resize2fsMinimumArgs prints the estimated minimum size of path's
// filesystem.
func resize2fsMinimumArgs(path string) []string { return []string{"-P", path} }

// resize2fsToArgs resizes path's filesystem to blocks filesystem blocks
// (a size without unit is in blocks).
func resize2fsToArgs(path string, blocks uint64) []string {
	return []string{path, strconv.FormatUint(blocks, 10)}
}

// Guest paths that make a root filesystem one machine's: SSH host keys
// (every VM makes its own at first boot), the machine id (emptied:
// systemd makes one at boot), the hostname (banger-net sets it from the
// kernel command line), and the random seed.
const (
	sshDir         = "/etc/ssh"
	sshHostKeyName = "ssh_host_"
	machineIDPath  = "/etc/machine-id"
	dbusMachineID  = "/var/lib/dbus/machine-id"
)

var identityFiles = []string{"/etc/hostname", "/var/lib/systemd/random-seed"}

// ResetIdentity removes what makes the unmounted root filesystem img
// one machine's, as an image build leaves it: the SSH host keys
// (/etc/ssh/ssh_host_*), /etc/hostname and systemd's random seed, empties
// /etc/machine-id and removes D-Bus's copy of it when it is a file of
// its own rather than a link. What is missing is skipped.
func ResetIdentity(ctx context.Context, img string) error {
	if err := prepareOfflineWrite(ctx, img); err != nil {
		return fmt.Errorf("reset identity of %s: %w", img, err)
	}
	var doomed []string
	names, err := ListDir(ctx, img, sshDir)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("reset identity: %w", err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, sshHostKeyName) {
			doomed = append(doomed, sshDir+"/"+name)
		}
	}
	doomed = append(doomed, identityFiles...)
	infos, err := statGuest(ctx, img, []string{machineIDPath, dbusMachineID})
	if err != nil {
		return fmt.Errorf("reset identity: %w", err)
	}
	if dbus := infos[1]; dbus.Exists && dbus.Type == "regular" {
		doomed = append(doomed, dbusMachineID)
	}
	if err := RemoveFiles(ctx, img, doomed...); err != nil {
		return fmt.Errorf("reset identity: %w", err)
	}
	if id := infos[0]; id.Exists && id.Type == "regular" {
		if err := EmptyFile(ctx, img, machineIDPath); err != nil {
			return fmt.Errorf("reset identity: %w", err)
		}
	}
	return nil
}
