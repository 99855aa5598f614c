package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxXattrBytes bounds an entry's xattrs: ext4 keeps them in the inode
// or one 4 KiB block.
const maxXattrBytes = 3072

// applier applies tar entries into a tree.
type applier struct {
	res     *resolver
	owners  bool // chown entries (root only)
	limits  Limits
	bytes   int64
	entries int64
	buf     []byte

	layerPaths map[string]bool // paths the current layer made
	dirTimes   []dirTime
}

// apply applies one entry; content is read from r.
func (a *applier) apply(hdr *tar.Header, r io.Reader) error {
	p, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := splitPath(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dir, base)
	}
	if err := checkXattrs(hdr); err != nil {
		return err
	}

	if p == "" { // the root itself: only its metadata
		if hdr.Typeflag != tar.TypeDir {
			return hostile(ErrMalformed, "the image root must be a directory")
		}
		return a.setMeta(a.res.root, hdr, true)
	}
	parent, err := a.res.dir(dir, true)
	if err != nil {
		return err
	}
	host := hostPath(parent, base)
	a.markMade(p)

	switch hdr.Typeflag {
	case tar.TypeDir:
		st, err := os.Lstat(host)
		if err == nil && !st.IsDir() {
			if err := a.remove(host); err != nil {
				return err
			}
		}
		if err != nil || !st.IsDir() {
			if err := os.Mkdir(host, 0o700); err != nil {
				return err
			}
		}
		if err := a.setMeta(host, hdr, false); err != nil {
			return err
		}
		a.dirTimes = append(a.dirTimes, dirTime{path: p, hdr: hdr})
		return nil
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 {
			return hostile(ErrMalformed, "negative size")
		}
		if a.bytes+hdr.Size > a.limits.MaxBytes {
			return hostile(ErrTooLarge, "the layers unpack to more than %d bytes", a.limits.MaxBytes)
		}
		a.bytes += hdr.Size
		if err := a.replace(host); err != nil {
			return err
		}
		if err := a.copyFile(host, r, hdr.Size); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > maxPathBytes || strings.ContainsRune(hdr.Linkname, 0) {
			return hostile(ErrBadName, "symlink target %.40q is empty or longer than %d bytes", hdr.Linkname, maxPathBytes)
		}
		if err := a.replace(host); err != nil {
			return err
		}
		if err := os.Symlink(hdr.Linkname, host); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := a.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		if target == host {
			return nil
		}
		if err := a.replace(host); err != nil {
			return err
		}
		// No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
		if err := unix.Linkat(unix.AT_FDCWD, target, unix.AT_FDCWD, host, 0); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		return nil // the target's metadata is the link's
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor > 0xfffff {
			return hostile(ErrMalformed, "device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		if err := a.replace(host); err != nil {
			return err
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(host, mode|0o600, int(dev)); err != nil {
			if errors.Is(err, unix.EPERM) && !a.owners {
				return fmt.Errorf("make device node: %w (needs root)", err)
			}
			return fmt.Errorf("make device node: %w", err)
		}
	default:
		return hostile(ErrMalformed, "tar entry type %q is not imported", string(hdr.Typeflag))
	}
	return a.setMeta(host, hdr, true)
}

// markMade records that the current layer made p and its parents, which
// an opaque marker later in the layer must leave alone.
func (a *applier) markMade(p string) {
	for p != "" && !a.layerPaths[p] {
		a.layerPaths[p] = true
		p, _ = splitPath(p)
	}
}

// whiteout removes what a whiteout entry in the image dir dir hides.
func (a *applier) whiteout(dir, base string) error {
	host, err := a.res.dir(dir, false)
	if errors.Is(err, errMissing) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	switch {
	case base == whiteoutOpaque:
		entries, err := os.ReadDir(host)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if a.layerPaths[joinPath(dir, e.Name())] {
				continue // made by this layer: stays
			}
			if err := a.remove(hostPath(host, e.Name())); err != nil {
				return err
			}
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil // other aufs metadata: nothing to apply
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return hostile(ErrPathEscape, "whiteout %q names no file", base)
	}
	return a.remove(hostPath(host, name))
}

// replace removes what stands at host, unless it is a directory and
// the entry makes one (merged) — here only non-directory entries call it.
func (a *applier) replace(host string) error {
	if _, err := os.Lstat(host); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return a.remove(host)
}

// remove removes host and anything below it (symlinks are removed, not
// followed) and forgets cached resolutions.
func (a *applier) remove(host string) error {
	a.res.forget()
	return os.RemoveAll(host)
}

// linkTarget resolves a hard link's target: a path inside the image that
// exists and is not a directory.
func (a *applier) linkTarget(linkname string) (string, error) {
	p, err := entryPath(linkname)
	if errors.Is(err, ErrPathEscape) {
		return "", hostile(ErrHardlinkEscape, "target %q", linkname)
	}
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", hostile(ErrHardlinkEscape, "target %q is the image root", linkname)
	}
	dir, base := splitPath(p)
	parent, err := a.res.dir(dir, false)
	if errors.Is(err, errMissing) {
		return "", hostile(ErrHardlinkEscape, "target %q does not exist", linkname)
	}
	if errors.Is(err, ErrSymlinkEscape) {
		return "", hostile(ErrHardlinkEscape, "target %q: %s", linkname, err)
	}
	if err != nil {
		return "", err
	}
	target := hostPath(parent, base)
	st, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return "", hostile(ErrHardlinkEscape, "target %q does not exist", linkname)
	}
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return "", hostile(ErrHardlinkEscape, "target %q is a directory", linkname)
	}
	return target, nil
}

// checkXattrs refuses xattrs ext4 cannot hold.
func checkXattrs(hdr *tar.Header) error {
	total := 0
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if name == "" || len(name) > 255 || strings.ContainsRune(name, 0) {
			return hostile(ErrBadName, "xattr name %.40q", name)
		}
		total += len(name) + len(v)
	}
	if total > maxXattrBytes {
		return hostile(ErrTooLarge, "xattrs take %d bytes, more than ext4 keeps (%d)", total, maxXattrBytes)
	}
	return nil
}

// setMeta gives host the entry's owner, mode, xattrs and (unless
// times is false: directories get theirs at the end of the layer) times.
// The order matters: chown clears setuid bits and file capabilities.
func (a *applier) setMeta(host string, hdr *tar.Header, times bool) error {
	symlink := hdr.Typeflag == tar.TypeSymlink
	if a.owners {
		if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<31 || hdr.Gid > 1<<31 {
			return hostile(ErrMalformed, "owner %d:%d out of range", hdr.Uid, hdr.Gid)
		}
		if err := os.Lchown(host, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if !symlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, host, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Lsetxattr(host, name, []byte(v), 0); err != nil {
			if !a.owners && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP)) {
				continue // trusted.* and security.* need root
			}
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	if times {
		return setTimes(host, hdr)
	}
	return nil
}

// setTimes sets host's access and modification times from hdr, without
// following a symlink.
func setTimes(host string, hdr *tar.Header) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, host, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
