package firecracker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
	"banger/internal/vmm"
)

// Names of the files of a machine, in its directory or at the root of
// its jail.
const (
	apiSockName   = "firecracker.sock"
	logName       = "firecracker.log"
	metricsName   = "firecracker-metrics.json"
	stateName     = "firecracker.json"
	vsockName     = "vsock.sock"
	jailKernel    = "vmlinux"
	jailInitrd    = "initrd"
	jailDrivePref = "drive-"
	// jailMarker, beside the jail's root, marks a jail banger made.
	jailMarker = "banger-jail"
)

// Jail is the chroot the jailer builds for one machine:
// Base/ExecName/ID/root.
type Jail struct {
	Base     string // jailer_chroot_base
	ExecName string // file name of the Firecracker binary
	ID       string // the jailer's --id: the VM id
}

var jailIDRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func (j Jail) validate() error {
	var errs []error
	if !filepath.IsAbs(j.Base) {
		errs = append(errs, fmt.Errorf("jailer chroot base %q: not an absolute path", j.Base))
	}
	if !jailIDRE.MatchString(j.ID) {
		errs = append(errs, fmt.Errorf("jailer id %q: want 1 to 64 letters, digits and hyphens", j.ID))
	}
	if !strings.Contains(j.ExecName, "firecracker") {
		errs = append(errs, fmt.Errorf("firecracker binary %q: the jailer only runs a file whose name contains \"firecracker\"", j.ExecName))
	}
	if len(errs) > 0 {
		return errdefs.Invalid(errors.Join(errs...))
	}
	return nil
}

// Dir is the jail's directory, removed as a whole with the machine.
func (j Jail) Dir() string { return filepath.Join(j.Base, j.ExecName, j.ID) }

// Root is the directory Firecracker sees as /.
func (j Jail) Root() string { return filepath.Join(j.Dir(), "root") }

// PIDFile is where a jailer of 1.7 or later leaves Firecracker's pid.
func (j Jail) PIDFile() string { return filepath.Join(j.Root(), j.ExecName+".pid") }

// JailerArgs returns the jailer's command line (without the binary) that
// runs the Firecracker at fcBinary (an absolute path) in j as uid:gid.
// The jailer passes --id to Firecracker itself; the API socket lies at
// the jail's root.
func JailerArgs(j Jail, fcBinary string, uid, gid int) []string {
	return []string{
		"--id", j.ID,
		"--exec-file", fcBinary,
		"--uid", strconv.Itoa(uid),
		"--gid", strconv.Itoa(gid),
		"--chroot-base-dir", j.Base,
		"--",
		"--api-sock", "/" + apiSockName,
	}
}

// FirecrackerArgs returns Firecracker's command line (without the
// binary) for an unjailed machine.
func FirecrackerArgs(apiSock, id string) []string {
	args := []string{"--api-sock", apiSock}
	if jailIDRE.MatchString(id) {
		args = append(args, "--id", id)
	}
	return args
}

// prepareJail fills j's root with what the machine needs, owned by
// uid:gid where Firecracker writes: the kernel and initrd hard-linked
// (copied across filesystems, or when not readable by others), each disk
// as a device node for block devices, else a hard link or, across
// filesystems, a bind mount of the disk image, and empty log and metrics
// files. It returns the layout as Firecracker sees it inside the jail.
func prepareJail(j Jail, spec vmm.Spec, kernel string, uid, gid int) (Layout, error) {
	root := j.Root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Layout{}, fmt.Errorf("prepare jail %s: %w", root, err)
	}
	if err := os.WriteFile(filepath.Join(j.Dir(), jailMarker), []byte(j.ID+"\n"), 0o644); err != nil {
		return Layout{}, fmt.Errorf("prepare jail %s: %w", root, err)
	}
	l := Layout{Kernel: "/" + jailKernel, Log: "/" + logName, Metrics: "/" + metricsName}
	if err := linkReadable(kernel, filepath.Join(root, jailKernel)); err != nil {
		return Layout{}, fmt.Errorf("prepare jail: kernel: %w", err)
	}
	if spec.Initrd != "" {
		l.Initrd = "/" + jailInitrd
		if err := linkReadable(spec.Initrd, filepath.Join(root, jailInitrd)); err != nil {
			return Layout{}, fmt.Errorf("prepare jail: initrd: %w", err)
		}
	}
	for i, id := range vmm.DiskIDs(spec.Disks, driveIDRE) {
		name := jailDrivePref + id
		if err := exposeDisk(spec.Disks[i].Path, filepath.Join(root, name), uid, gid, spec.Disks[i].ReadOnly); err != nil {
			return Layout{}, fmt.Errorf("prepare jail: disk %q: %w", spec.Disks[i].ID, err)
		}
		l.Drives = append(l.Drives, "/"+name)
	}
	for _, name := range []string{logName, metricsName} {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return Layout{}, fmt.Errorf("prepare jail: %w", err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return Layout{}, fmt.Errorf("prepare jail: %w", err)
		}
	}
	if spec.AgentSocket != "" {
		l.Vsock = "/" + vsockName
	}
	return l, nil
}

// linkReadable makes src available at dst: a hard link when src is
// readable by everyone and on the same filesystem, else a copy readable
// by everyone.
func linkReadable(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		if err := os.Link(src, dst); err == nil {
			return nil
		} else if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EPERM) {
			return err
		}
	}
	return copyFile(src, dst, 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// exposeDisk makes the disk at src usable by uid:gid at dst inside a
// jail. A disk image is never copied: writes must reach it. A read-only
// image that everyone may read keeps its owner (one such disk, a
// modules disk, serves many VMs).
func exposeDisk(src, dst string, uid, gid int, readOnly bool) error {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return &os.PathError{Op: "stat", Path: src, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		if err := unix.Mknod(dst, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
		return os.Chown(dst, uid, gid)
	case unix.S_IFREG:
	default:
		return fmt.Errorf("%s: not a regular file or block device", src)
	}
	// Firecracker opens the image read-write as uid: the image itself
	// (the one inode behind the link or the mount) changes owner.
	if !readOnly || st.Mode&0o004 == 0 {
		if err := os.Chown(src, uid, gid); err != nil {
			return err
		}
	}
	err := os.Link(src, dst)
	if err == nil || !errors.Is(err, unix.EXDEV) {
		return err
	}
	if err := os.WriteFile(dst, nil, 0o600); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", src, dst, err)
	}
	return nil
}

// isBangerJail reports whether j carries banger's marker.
func isBangerJail(j Jail) bool {
	_, err := os.Stat(filepath.Join(j.Dir(), jailMarker))
	return err == nil
}

// removeJail unmounts what is mounted inside j and removes its directory.
// A jail that does not exist is no error.
func removeJail(j Jail) error {
	if err := j.validate(); err != nil {
		return err
	}
	dir := j.Dir()
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("remove jail %s: %w", dir, err)
	}
	for _, m := range mountsUnder(string(info), dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			// Never remove a tree with something still mounted in it.
			return fmt.Errorf("remove jail %s: unmount %s: %w", dir, m, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove jail %s: %w", dir, err)
	}
	return nil
}

// mountsUnder returns the mount points in mountinfo (the text of
// /proc/self/mountinfo) that lie inside dir, deepest first.
func mountsUnder(mountinfo, dir string) []string {
	prefix := filepath.Clean(dir) + "/"
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if strings.HasPrefix(mp, prefix) {
			out = append(out, mp)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return strings.Count(out[a], "/") > strings.Count(out[b], "/") })
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
