package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"banger/internal/config"
	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
)

// File sync copies the [[file_sync]] entries of the config from the
// owner's home into each new VM's work disk, which the guest mounts at
// /root: guest "/root/.gitconfig" is "/.gitconfig" in the image.
//
// Rules:
//   - Host paths are "~", "~/..." or absolute, and must lie under the
//     home directory, also once symlinks are resolved; the host path
//     itself may be a symlink (dotfile managers make them) as long as it
//     resolves inside home.
//   - A missing host path is a warning, not an error.
//   - A file gets the entry's mode (default 0600). A directory is copied
//     recursively: its top gets the entry's mode (default 0755), what is
//     inside keeps its own permission bits (without setuid, setgid and
//     sticky). Guest "/root" itself keeps its mode unless one is given.
//   - Symlinks inside a directory are copied as symlinks, never followed;
//     sockets, fifos and devices are skipped with a warning.
//   - Everything is owned by root:root. Missing guest parents are made
//     0755. Existing guest files are replaced, existing directories
//     merged into; a file where a directory is (or the reverse) fails.
//   - /root/.ssh/authorized_keys is banger's own (its SSH key) and is
//     never overwritten.
//
// Host files are read only through an os.Root opened on the resolved
// home, and copied to a private staging directory before debugfs (which
// runs as root) sees them, so a path swapped for a symlink during the
// copy cannot make it read outside home.

// authorizedKeysImagePath is banger's authorized_keys inside the work disk.
const authorizedKeysImagePath = "/.ssh/authorized_keys"

// Default modes of synced files and directories.
const (
	defaultSyncFileMode os.FileMode = 0o600
	defaultSyncDirMode  os.FileMode = 0o755
)

// syncFiles copies s.cfg.FileSync into the unmounted work disk workDisk.
// Every entry is resolved, checked and staged before the first write, so
// bad host input fails before the disk changes; a clash with what the
// disk holds (a file where a directory is) fails at that entry's write,
// and create's undo then discards the disk. Warnings go to report (step
// "warning") and the log.
func (s *Service) syncFiles(ctx context.Context, workDisk string, report func(step, msg string)) error {
	if len(s.cfg.FileSync) == 0 {
		return nil
	}
	own := []string{s.layout.StateDir, s.layout.CacheDir, s.layout.RuntimeDir}
	syncer, err := newFileSyncer(s.cfg.HostHomeDir, filepath.Dir(workDisk), own)
	if err != nil {
		return fmt.Errorf("file sync: %w", err)
	}
	defer syncer.close()

	trees := make([][]storage.TreeEntry, len(s.cfg.FileSync))
	for i, e := range s.cfg.FileSync {
		syncer.warn = func(msg string) {
			s.logger.Warn("file sync: skipped", "host", e.Host, "guest", e.Guest, "reason", msg)
			if report != nil {
				report("warning", fmt.Sprintf("file_sync %s: %s; skipped", e.Host, msg))
			}
		}
		tree, err := syncer.plan(ctx, e)
		if err == nil {
			err = storage.CheckTree(tree)
		}
		if err != nil {
			return fmt.Errorf("file_sync[%d] %q: %w", i, e.Host, err)
		}
		trees[i] = tree
	}
	for i, tree := range trees {
		if err := storage.WriteTree(ctx, workDisk, tree); err != nil {
			return fmt.Errorf("file_sync[%d] %q: %w", i, s.cfg.FileSync[i].Host, err)
		}
	}
	return nil
}

// ValidateFileSyncHome checks entries against the home directory home
// without reading any file: each must pass config.ValidateFileSync, and
// an absolute host path must lie under home. The daemon calls it at
// start so a bad entry fails there rather than at the first vm create.
// Errors are errdefs.ErrInvalid and name every bad entry.
func ValidateFileSyncHome(entries []model.FileSyncEntry, home string) error {
	if len(entries) == 0 {
		return nil
	}
	if !filepath.IsAbs(home) {
		return errdefs.Invalid(fmt.Errorf("file_sync: home directory %q is not an absolute path", home))
	}
	home = filepath.Clean(home)
	realHome, err := filepath.EvalSymlinks(home)
	if err != nil {
		realHome = home
	}
	var msgs []string
	for i, e := range entries {
		if err := checkFileSyncEntry(e, home, realHome); err != nil {
			msgs = append(msgs, fmt.Sprintf("file_sync[%d]: %v", i, err))
		}
	}
	if len(msgs) > 0 {
		return errdefs.Invalid(errors.New(strings.Join(msgs, "; ")))
	}
	return nil
}

// checkFileSyncEntry checks one entry's syntax, its host path against
// home (as configured, or with its symlinks resolved) and its guest path.
func checkFileSyncEntry(e model.FileSyncEntry, home, realHome string) error {
	if err := config.ValidateFileSync(e); err != nil {
		return err
	}
	host, err := expandHostPath(e.Host, home)
	if err != nil {
		return err
	}
	if !isUnder(host, home) && !isUnder(host, realHome) {
		return fmt.Errorf("host %q: not under your home %s", e.Host, home)
	}
	if _, err := guestImagePath(e.Guest); err != nil {
		return err
	}
	if _, _, err := parseSyncMode(e.Mode); err != nil {
		return err
	}
	return nil
}

// expandHostPath turns "~", "~/x" or an absolute path into a clean
// absolute host path. Relative paths, "~user" and ".." are refused.
func expandHostPath(host, home string) (string, error) {
	for _, part := range strings.Split(host, "/") {
		if part == ".." {
			return "", fmt.Errorf("host %q: must not contain '..'", host)
		}
	}
	switch {
	case host == "~":
		return filepath.Clean(home), nil
	case strings.HasPrefix(host, "~/"):
		return filepath.Join(home, host[2:]), nil
	case strings.HasPrefix(host, "~"):
		return "", fmt.Errorf("host %q: ~user paths are not supported; use ~/...", host)
	case filepath.IsAbs(host):
		return filepath.Clean(host), nil
	}
	return "", fmt.Errorf("host %q: must be ~/... or an absolute path under your home", host)
}

// guestImagePath maps a guest path under /root (absolute, or relative to
// /root) to its path inside the work disk, whose root is /root.
func guestImagePath(guest string) (string, error) {
	if guest == "" {
		return "", errors.New("guest: must not be empty")
	}
	for _, part := range strings.Split(guest, "/") {
		if part == ".." {
			return "", fmt.Errorf("guest %q: must not contain '..'", guest)
		}
	}
	p := guest
	if !strings.HasPrefix(p, "/") {
		p = "/root/" + p
	}
	p = path.Clean(p)
	switch {
	case p == "/root":
		return "/", nil
	case strings.HasPrefix(p, "/root/"):
		return strings.TrimPrefix(p, "/root"), nil
	}
	return "", fmt.Errorf("guest %q: must be under /root", guest)
}

// parseSyncMode reads an octal mode such as "0600"; "" means the
// default (explicit false).
func parseSyncMode(s string) (mode os.FileMode, explicit bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, false, fmt.Errorf("mode %q: want an octal mode such as 0600", s)
	}
	mode = os.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if v&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if v&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode, true, nil
}

// isUnder reports whether the clean absolute path p is dir or inside it.
func isUnder(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// parentDirs lists the directories above the image path p, root
// excluded, as entries that make them 0755 root:root when missing and
// leave them alone otherwise.
func parentDirs(p string) []storage.TreeEntry {
	var out []storage.TreeEntry
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, storage.TreeEntry{Path: p[:i], Kind: storage.TreeDir, Mode: defaultSyncDirMode, KeepExisting: true})
		}
	}
	return out
}

// fileSyncer plans file sync entries: it resolves host paths inside
// home, walks directories and stages copies of host files.
type fileSyncer struct {
	home     string   // as configured, clean
	realHome string   // home with its symlinks resolved
	root     *os.Root // opened on realHome; every host read goes through it
	stage    string   // private directory holding copies of host files
	staged   int
	own      []fs.FileInfo // banger's own directories, never copied
	warn     func(msg string)
}

// newFileSyncer opens home and makes a staging directory in stageParent.
// The directories in own (banger's state, cache and runtime directories)
// and stageParent are never copied, should they lie under home.
func newFileSyncer(home, stageParent string, own []string) (*fileSyncer, error) {
	if !filepath.IsAbs(home) {
		return nil, errdefs.Invalid(fmt.Errorf("home directory %q is not an absolute path", home))
	}
	home = filepath.Clean(home)
	realHome, err := filepath.EvalSymlinks(home)
	if err != nil {
		return nil, fmt.Errorf("home directory: %w", err)
	}
	root, err := os.OpenRoot(realHome)
	if err != nil {
		return nil, fmt.Errorf("home directory: %w", err)
	}
	stage, err := os.MkdirTemp(stageParent, ".file-sync-")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	f := &fileSyncer{home: home, realHome: realHome, root: root, stage: stage, warn: func(string) {}}
	for _, dir := range append(own, stageParent) {
		if dir == "" {
			continue
		}
		if st, err := os.Stat(dir); err == nil {
			f.own = append(f.own, st)
		}
	}
	return f, nil
}

// isOwn reports whether info is one of banger's own directories.
func (f *fileSyncer) isOwn(info fs.FileInfo) bool {
	return slices.ContainsFunc(f.own, func(o fs.FileInfo) bool { return os.SameFile(o, info) })
}

func (f *fileSyncer) close() {
	f.root.Close()
	os.RemoveAll(f.stage)
}

// plan resolves one entry and returns the tree to write, nil when it is
// skipped.
func (f *fileSyncer) plan(ctx context.Context, e model.FileSyncEntry) ([]storage.TreeEntry, error) {
	if err := checkFileSyncEntry(e, f.home, f.realHome); err != nil {
		return nil, errdefs.Invalid(err)
	}
	host, _ := expandHostPath(e.Host, f.home)
	img, _ := guestImagePath(e.Guest)
	mode, explicit, _ := parseSyncMode(e.Mode)

	real, err := filepath.EvalSymlinks(host)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		f.warn("does not exist on the host")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if !isUnder(real, f.realHome) {
		return nil, errdefs.Invalid(fmt.Errorf("%s resolves to %s, outside your home %s", host, real, f.home))
	}
	rel, err := filepath.Rel(f.realHome, real)
	if err != nil {
		return nil, err
	}
	info, err := f.root.Lstat(rel)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", real, err)
	}
	tree := parentDirs(img)
	switch {
	case info.Mode().IsRegular():
		if img == "/" {
			return nil, errdefs.Invalid(fmt.Errorf("%s is a file; it cannot replace the directory /root", host))
		}
		if img == authorizedKeysImagePath {
			f.warn("/root/.ssh/authorized_keys holds banger's SSH key and is not overwritten")
			return nil, nil
		}
		if !explicit {
			mode = defaultSyncFileMode
		}
		src, err := f.stageFile(rel, info)
		if err != nil {
			return nil, err
		}
		return append(tree, storage.TreeEntry{Path: img, Kind: storage.TreeFile, Mode: mode, Source: src}), nil
	case info.IsDir():
		if f.isOwn(info) {
			f.warn(fmt.Sprintf("%s holds banger's own files", f.display(rel)))
			return nil, nil
		}
		if !explicit {
			mode = defaultSyncDirMode
		}
		tree = append(tree, storage.TreeEntry{Path: img, Kind: storage.TreeDir, Mode: mode, KeepExisting: img == "/" && !explicit})
		return f.walk(ctx, rel, info, img, tree)
	}
	f.warn(fmt.Sprintf("%s is a %s, not a file or directory", f.display(rel), fileKind(info.Mode())))
	return nil, nil
}

// walk appends the contents of the host directory rel (inside home),
// whose Lstat is want, to tree as children of the image directory img.
func (f *fileSyncer) walk(ctx context.Context, rel string, want fs.FileInfo, img string, tree []storage.TreeEntry) ([]storage.TreeEntry, error) {
	d, err := f.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.display(rel), err)
	}
	defer d.Close()
	if st, err := d.Stat(); err != nil || !os.SameFile(st, want) {
		return nil, fmt.Errorf("%s changed while it was being copied", f.display(rel))
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.display(rel), err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		childRel := filepath.Join(rel, name)
		childImg := path.Join(img, name)
		if !nameWritable(name) {
			return nil, errdefs.Invalid(fmt.Errorf("%s: the name contains a double quote or control character, which cannot be written into the work disk; rename it or sync a narrower path", f.display(childRel)))
		}
		info, err := f.root.Lstat(childRel)
		if errors.Is(err, fs.ErrNotExist) {
			f.warn(fmt.Sprintf("%s vanished while it was being copied", f.display(childRel)))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", f.display(childRel), err)
		}
		if childImg == authorizedKeysImagePath {
			f.warn(fmt.Sprintf("%s: /root/.ssh/authorized_keys holds banger's SSH key and is not overwritten", f.display(childRel)))
			continue
		}
		perm := info.Mode().Perm()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := f.root.Readlink(childRel)
			if err != nil {
				return nil, fmt.Errorf("read link %s: %w", f.display(childRel), err)
			}
			if !nameWritable(target) {
				return nil, errdefs.Invalid(fmt.Errorf("%s: the symlink target %q contains a double quote or control character, which cannot be written into the work disk", f.display(childRel), target))
			}
			tree = append(tree, storage.TreeEntry{Path: childImg, Kind: storage.TreeSymlink, Target: target})
		case info.IsDir() && f.isOwn(info):
			f.warn(fmt.Sprintf("%s holds banger's own files", f.display(childRel)))
		case info.IsDir():
			tree = append(tree, storage.TreeEntry{Path: childImg, Kind: storage.TreeDir, Mode: perm})
			if tree, err = f.walk(ctx, childRel, info, childImg, tree); err != nil {
				return nil, err
			}
		case info.Mode().IsRegular():
			src, err := f.stageFile(childRel, info)
			if err != nil {
				return nil, err
			}
			tree = append(tree, storage.TreeEntry{Path: childImg, Kind: storage.TreeFile, Mode: perm, Source: src})
		default:
			f.warn(fmt.Sprintf("%s is a %s", f.display(childRel), fileKind(info.Mode())))
		}
	}
	return tree, nil
}

// stageFile copies the regular host file rel (inside home), whose Lstat
// is want, into the staging directory and returns the copy's path.
func (f *fileSyncer) stageFile(rel string, want fs.FileInfo) (string, error) {
	// O_NONBLOCK: a file swapped for a fifo must not block the open.
	src, err := f.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", f.display(rel), err)
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil || !st.Mode().IsRegular() || !os.SameFile(st, want) {
		return "", fmt.Errorf("%s changed while it was being copied", f.display(rel))
	}
	f.staged++
	dst := filepath.Join(f.stage, strconv.Itoa(f.staged))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("stage %s: %w", f.display(rel), err)
	}
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("stage %s: %w", f.display(rel), err)
	}
	return dst, nil
}

// display names the host path rel (relative to the resolved home) for
// messages, as "~/...".
func (f *fileSyncer) display(rel string) string {
	if rel == "." {
		return "~"
	}
	return "~/" + filepath.ToSlash(rel)
}

// nameWritable reports whether a file name or symlink target can go into
// a debugfs command: no double quote and no control character.
func nameWritable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' })
}

// fileKind names the type of a special file for warnings.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
