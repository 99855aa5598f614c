package storage

import (
	"context"
	"fmt"
	"os"
	"strings"

	"banger/internal/errdefs"
)

// ListDir returns the names in the directory guestDir of the unmounted
// ext4 image img, "." and ".." left out. Names a debugfs script could
// not quote (quotes, backslashes, control characters) are left out too:
// no helper of this package could act on them.
func ListDir(ctx context.Context, img, guestDir string) ([]string, error) {
	if err := validateGuestPath(guestDir); err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", guestDir, img, err)
	}
	statCmd := "stat " + debugfsQuote(guestDir)
	lsCmd := "ls -p " + debugfsQuote(guestDir)
	out, err := runDebugfs(ctx, img, false, []string{statCmd, lsCmd})
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", guestDir, img, err)
	}
	sections := debugfsSections(out, []string{statCmd, lsCmd})
	info, err := parseDebugfsStat(sections[0])
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", guestDir, img, err)
	}
	switch {
	case !info.Exists:
		return nil, errdefs.NotFound(fmt.Errorf("list %s in %s: no such directory", guestDir, img))
	case info.Type != "directory":
		return nil, errdefs.Invalid(fmt.Errorf("list %s in %s: it is a %s, not a directory", guestDir, img, info.Type))
	}
	return parseDebugfsLsP(sections[1]), nil
}

// parseDebugfsLsP reads the output of debugfs "ls -p": one entry a line,
// "/INODE/MODE/UID/GID/NAME/SIZE/".
func parseDebugfsLsP(out []byte) []string {
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "/") || !strings.HasSuffix(line, "/") {
			continue
		}
		fields := strings.Split(line, "/")
		// "", inode, mode, uid, gid, name, size, ""
		if len(fields) != 8 {
			continue
		}
		name := fields[5]
		if name == "" || name == "." || name == ".." || !debugfsQuotable(name) || strings.ContainsRune(name, '\\') {
			continue
		}
		names = append(names, name)
	}
	return names
}

// RemoveFiles removes guestPaths (files, symlinks, device nodes; not
// directories) from the unmounted ext4 image img, like rm -f: paths
// that do not exist are skipped. A directory among them is an
// errdefs.ErrInvalid error and nothing is removed.
func RemoveFiles(ctx context.Context, img string, guestPaths ...string) error {
	if len(guestPaths) == 0 {
		return nil
	}
	for _, p := range guestPaths {
		if err := validateGuestPath(p); err != nil {
			return fmt.Errorf("remove %s in %s: %w", p, img, err)
		}
	}
	if err := prepareOfflineWrite(ctx, img); err != nil {
		return fmt.Errorf("remove files in %s: %w", img, err)
	}
	infos, err := statGuest(ctx, img, guestPaths)
	if err != nil {
		return fmt.Errorf("remove files in %s: %w", img, err)
	}
	var doomed []string
	for i, info := range infos {
		switch {
		case !info.Exists:
		case info.Type == "directory":
			return errdefs.Invalid(fmt.Errorf("remove %s in %s: it is a directory", guestPaths[i], img))
		default:
			doomed = append(doomed, guestPaths[i])
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	if err := runAndVerify(ctx, img, debugfsRemoveScript(doomed), doomed, make([]inodeInfo, len(doomed))); err != nil {
		return fmt.Errorf("remove files in %s: %w", img, err)
	}
	return nil
}

// debugfsRemoveScript unlinks each path ("rm" frees the inode with its
// last link).
func debugfsRemoveScript(paths []string) []string {
	script := make([]string, len(paths))
	for i, p := range paths {
		script[i] = "rm " + debugfsQuote(p)
	}
	return script
}

// EmptyFile truncates the regular file guestPath in the unmounted ext4
// image img to zero bytes, keeping its mode and owner. A missing file is
// an errdefs.ErrNotFound error.
func EmptyFile(ctx context.Context, img, guestPath string) error {
	if err := validateGuestPath(guestPath); err != nil {
		return fmt.Errorf("empty %s in %s: %w", guestPath, img, err)
	}
	if err := prepareOfflineWrite(ctx, img); err != nil {
		return fmt.Errorf("empty %s in %s: %w", guestPath, img, err)
	}
	infos, err := statGuest(ctx, img, []string{guestPath})
	if err != nil {
		return fmt.Errorf("empty %s in %s: %w", guestPath, img, err)
	}
	switch info := infos[0]; {
	case !info.Exists:
		return errdefs.NotFound(fmt.Errorf("empty %s in %s: no such file", guestPath, img))
	case info.Type != "regular":
		return errdefs.Invalid(fmt.Errorf("empty %s in %s: it is a %s, not a regular file", guestPath, img, info.Type))
	case info.Size == 0:
		return nil
	default:
		return WriteFile(ctx, img, guestPath, nil, fileMode(info.Mode), info.UID, info.GID)
	}
}

// fileMode converts Unix permission bits (setuid, setgid and sticky
// included) to an os.FileMode; unixPerm is its inverse.
func fileMode(perm uint32) os.FileMode {
	m := os.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
