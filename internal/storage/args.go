package storage

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// This file holds the pure functions that build the argument lists and
// scripts of the tools this package runs. They are unit-tested; the
// functions that run them live beside their callers.

// qemuImgOverlayArgs creates a qcow2 file of virtual size size whose
// backing file is the raw image base. With the backing format and the
// size given, qemu-img only opens base, it reads none of its data.
func qemuImgOverlayArgs(base, overlay string, size int64) []string {
	return []string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay, strconv.FormatInt(size, 10)}
}

// mkfsOptions describes an ext4 filesystem to make on an existing file.
type mkfsOptions struct {
	Path   string
	Label  string
	SrcDir string // populate from this tree (mkfs.ext4 -d), optional
	Inodes int64  // explicit inode count, 0 for the default ratio
}

// mkfsArgs makes ext4 with the same geometry whatever the size (4 KiB
// blocks, 256-byte inodes, one inode per 16 KiB, no blocks reserved for
// root, who is the only user anyway), so small seeds grow into big disks
// well. Lazy init leaves inode tables and the journal unwritten: the
// file stays sparse and mkfs takes milliseconds.
func mkfsArgs(o mkfsOptions) []string {
	args := []string{"-q", "-F", "-b", "4096", "-I", "256", "-i", "16384", "-m", "0", "-L", o.Label}
	if o.Inodes > 0 {
		args = append(args, "-N", strconv.FormatInt(o.Inodes, 10))
	}
	args = append(args, "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0")
	if o.SrcDir != "" {
		args = append(args, "-d", o.SrcDir)
	}
	return append(args, o.Path)
}

// resize2fsArgs grows the filesystem in path to the size of the file.
func resize2fsArgs(path string) []string { return []string{path} }

// e2fsckArgs checks path fully, repairing what is safe to repair.
func e2fsckArgs(path string) []string { return []string{"-f", "-p", path} }

// tune2fsLabelArgs sets the filesystem label.
func tune2fsLabelArgs(path, label string) []string { return []string{"-L", label, path} }

// debugfsArgs runs a debugfs script read from stdin, read-write when
// write is set.
func debugfsArgs(img string, write bool) []string {
	if write {
		return []string{"-w", "-f", "-", img}
	}
	return []string{"-f", "-", img}
}

// debugfsQuote quotes a path for a debugfs command line. Paths reaching it
// passed validateGuestPath (or are host temp paths): no quotes inside.
func debugfsQuote(p string) string { return `"` + p + `"` }

// debugfsMode formats a full inode mode (type and permission bits) the
// way set_inode_field reads it: octal with a leading 0.
func debugfsMode(typeBits uint32, perm os.FileMode) string {
	return fmt.Sprintf("0%o", typeBits|unixPerm(perm))
}

// unixPerm converts permission, setuid, setgid and sticky bits to their
// Unix values.
func unixPerm(m os.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// Inode type bits as ext4 stores them.
const (
	typeRegular   = 0o100000
	typeDirectory = 0o040000
)

// debugfsSetOwnerScript sets the mode, uid and gid of one inode.
func debugfsSetOwnerScript(p string, typeBits uint32, mode os.FileMode, uid, gid int) []string {
	q := debugfsQuote(p)
	return []string{
		"set_inode_field " + q + " mode " + debugfsMode(typeBits, mode),
		"set_inode_field " + q + " uid " + strconv.Itoa(uid),
		"set_inode_field " + q + " gid " + strconv.Itoa(gid),
	}
}

// debugfsWriteScript replaces guestPath with the host file src.
func debugfsWriteScript(src, guestPath string, exists bool, mode os.FileMode, uid, gid int) []string {
	dir, name := splitGuestPath(guestPath)
	var script []string
	if exists {
		script = append(script, "rm "+debugfsQuote(guestPath))
	}
	script = append(script, "cd "+debugfsQuote(dir), "write "+debugfsQuote(src)+" "+debugfsQuote(name))
	return append(script, debugfsSetOwnerScript(guestPath, typeRegular, mode, uid, gid)...)
}

// debugfsMkdirScript creates dirs (parents first) and sets each one's mode
// and owner.
func debugfsMkdirScript(dirs []string, mode os.FileMode, uid, gid int) []string {
	var script []string
	for _, d := range dirs {
		script = append(script, "mkdir "+debugfsQuote(d))
		script = append(script, debugfsSetOwnerScript(d, typeDirectory, mode, uid, gid)...)
	}
	return script
}

// debugfsStatScript stats each path; parseDebugfsStat reads the result.
func debugfsStatScript(paths []string) []string {
	script := make([]string, len(paths))
	for i, p := range paths {
		script[i] = "stat " + debugfsQuote(p)
	}
	return script
}

// splitGuestPath splits a clean absolute path into its directory and
// base name: "/a/b" -> "/a", "b"; "/a" -> "/", "a".
func splitGuestPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	dir, name = p[:i], p[i+1:]
	if dir == "" {
		dir = "/"
	}
	return dir, name
}

// guestPrefixes lists every directory from the root down to p:
// "/a/b" -> ["/a", "/a/b"]. The root itself is left out.
func guestPrefixes(p string) []string {
	var out []string
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > 1 {
				out = append(out, p[:i])
			}
		}
	}
	return out
}
