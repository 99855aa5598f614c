package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// debugfs reports most failures on stderr and still exits 0, and hostexec
// keeps stderr only for failed commands. So every operation here learns
// the state it starts from with a read-only stat script, builds a script
// that cannot fail on what it found, and ends the script with stats that
// prove the result.

// inodeInfo is what "stat" in debugfs says about one inode.
type inodeInfo struct {
	Exists bool
	Type   string // "regular", "directory", "symlink", ...
	Mode   uint32 // permission bits, with setuid/setgid/sticky
	UID    int
	GID    int
	Size   int64
}

// WriteFile writes data to guestPath inside the unmounted ext4 image img,
// replacing a regular file there, with the given mode and owner. The
// parent directory must exist (see MkdirAll).
func WriteFile(ctx context.Context, img, guestPath string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := validateGuestPath(guestPath); err != nil {
		return fmt.Errorf("write %s in %s: %w", guestPath, img, err)
	}
	if guestPath == "/" {
		return errdefs.Invalid(fmt.Errorf("write / in %s: not a file", img))
	}
	if err := prepareOfflineWrite(ctx, img); err != nil {
		return fmt.Errorf("write %s in %s: %w", guestPath, img, err)
	}
	dir, _ := splitGuestPath(guestPath)
	infos, err := statGuest(ctx, img, []string{dir, guestPath})
	if err != nil {
		return fmt.Errorf("write %s in %s: %w", guestPath, img, err)
	}
	switch parent, cur := infos[0], infos[1]; {
	case !parent.Exists:
		return errdefs.NotFound(fmt.Errorf("write %s in %s: directory %s does not exist", guestPath, img, dir))
	case parent.Type != "directory":
		return errdefs.Invalid(fmt.Errorf("write %s in %s: %s is not a directory", guestPath, img, dir))
	case cur.Exists && cur.Type != "regular":
		return errdefs.Invalid(fmt.Errorf("write %s in %s: it exists and is a %s, not a regular file", guestPath, img, cur.Type))
	}

	tmp, err := os.CreateTemp("", "banger-debugfs-*")
	if err != nil {
		return fmt.Errorf("write %s in %s: %w", guestPath, img, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s in %s: %w", guestPath, img, err)
	}
	if strings.ContainsRune(tmp.Name(), '"') {
		return fmt.Errorf("write %s in %s: temp file path %q contains a quote", guestPath, img, tmp.Name())
	}

	script := debugfsWriteScript(tmp.Name(), guestPath, infos[1].Exists, mode, uid, gid)
	want := inodeInfo{Exists: true, Type: "regular", Mode: unixPerm(mode), UID: uid, GID: gid, Size: int64(len(data))}
	if err := runAndVerify(ctx, img, script, []string{guestPath}, []inodeInfo{want}); err != nil {
		return fmt.Errorf("write %s in %s: %w", guestPath, img, err)
	}
	return nil
}

// ReadFile returns the content of the regular file guestPath inside the
// ext4 image img.
func ReadFile(ctx context.Context, img, guestPath string) ([]byte, error) {
	if err := validateGuestPath(guestPath); err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", guestPath, img, err)
	}
	statCmd := "stat " + debugfsQuote(guestPath)
	catCmd := "cat " + debugfsQuote(guestPath)
	out, err := runDebugfs(ctx, img, false, []string{statCmd, catCmd})
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", guestPath, img, err)
	}
	sections := debugfsSections(out, []string{statCmd, catCmd})
	info, err := parseDebugfsStat(sections[0])
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", guestPath, img, err)
	}
	switch {
	case !info.Exists:
		return nil, errdefs.NotFound(fmt.Errorf("read %s in %s: no such file", guestPath, img))
	case info.Type != "regular":
		return nil, errdefs.Invalid(fmt.Errorf("read %s in %s: it is a %s, not a regular file", guestPath, img, info.Type))
	case int64(len(sections[1])) != info.Size:
		return nil, fmt.Errorf("read %s in %s: got %d bytes, want %d", guestPath, img, len(sections[1]), info.Size)
	}
	return sections[1], nil
}

// MkdirAll creates the directory guestDir and any missing parents inside
// the unmounted ext4 image img, like os.MkdirAll: each directory it
// creates gets mode, uid and gid; directories that exist are left alone.
func MkdirAll(ctx context.Context, img, guestDir string, mode os.FileMode, uid, gid int) error {
	if err := validateGuestPath(guestDir); err != nil {
		return fmt.Errorf("mkdir %s in %s: %w", guestDir, img, err)
	}
	prefixes := guestPrefixes(guestDir)
	if len(prefixes) == 0 {
		return nil // "/"
	}
	if err := prepareOfflineWrite(ctx, img); err != nil {
		return fmt.Errorf("mkdir %s in %s: %w", guestDir, img, err)
	}
	infos, err := statGuest(ctx, img, prefixes)
	if err != nil {
		return fmt.Errorf("mkdir %s in %s: %w", guestDir, img, err)
	}
	var missing []string
	for i, info := range infos {
		if !info.Exists {
			missing = prefixes[i:]
			break
		}
		if info.Type != "directory" {
			return errdefs.Invalid(fmt.Errorf("mkdir %s in %s: %s exists and is a %s", guestDir, img, prefixes[i], info.Type))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	want := make([]inodeInfo, len(missing))
	for i := range want {
		want[i] = inodeInfo{Exists: true, Type: "directory", Mode: unixPerm(mode), UID: uid, GID: gid, Size: -1}
	}
	if err := runAndVerify(ctx, img, debugfsMkdirScript(missing, mode, uid, gid), missing, want); err != nil {
		return fmt.Errorf("mkdir %s in %s: %w", guestDir, img, err)
	}
	return nil
}

// prepareOfflineWrite replays the journal and repairs the filesystem when
// its last user did not unmount it cleanly: debugfs writes around an
// unreplayed journal.
func prepareOfflineWrite(ctx context.Context, img string) error {
	sb, err := readSuperblock(img)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound(err)
		}
		return err
	}
	if sb.State&stateValid == 0 || sb.State&stateErrors != 0 || sb.Incompat&incompatRecover != 0 {
		return checkFilesystem(ctx, img)
	}
	return nil
}

// statGuest stats paths (read-only).
func statGuest(ctx context.Context, img string, paths []string) ([]inodeInfo, error) {
	script := debugfsStatScript(paths)
	out, err := runDebugfs(ctx, img, false, script)
	if err != nil {
		return nil, err
	}
	sections := debugfsSections(out, script)
	infos := make([]inodeInfo, len(paths))
	for i, s := range sections {
		if infos[i], err = parseDebugfsStat(s); err != nil {
			return nil, fmt.Errorf("stat %s: %w", paths[i], err)
		}
	}
	return infos, nil
}

// runAndVerify runs script read-write followed by stats of paths, and
// checks each stat against want (Size -1: any size).
func runAndVerify(ctx context.Context, img string, script, paths []string, want []inodeInfo) error {
	stats := debugfsStatScript(paths)
	full := append(append([]string(nil), script...), stats...)
	out, err := runDebugfs(ctx, img, true, full)
	if err != nil {
		return err
	}
	sections := debugfsSections(out, full)[len(script):]
	for i, s := range sections {
		got, err := parseDebugfsStat(s)
		if err != nil {
			return fmt.Errorf("verify %s: %w", paths[i], err)
		}
		if w := want[i]; w.Size < 0 {
			got.Size = -1
		}
		if got != want[i] {
			return fmt.Errorf("debugfs did not apply the change to %s: got %+v, want %+v", paths[i], got, want[i])
		}
	}
	return nil
}

// runDebugfs runs a debugfs script on img and returns its stdout.
func runDebugfs(ctx context.Context, img string, write bool, script []string) ([]byte, error) {
	in := []byte(strings.Join(script, "\n") + "\n")
	out, err := hostexec.RunStdin(ctx, in, "debugfs", debugfsArgs(img, write)...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// debugfsSections splits the stdout of a debugfs -f script into the
// output of each command: debugfs echoes every command as "debugfs: CMD"
// on a line of its own before running it. A command whose echo is
// missing gets nil.
func debugfsSections(out []byte, script []string) [][]byte {
	sections := make([][]byte, len(script))
	pos, last, lastStart := 0, -1, 0
	for i, cmd := range script {
		marker := []byte("debugfs: " + cmd + "\n")
		idx := -1
		if bytes.HasPrefix(out[pos:], marker) {
			idx = pos
		} else if j := bytes.Index(out[pos:], append([]byte("\n"), marker...)); j >= 0 {
			idx = pos + j + 1
		}
		if idx < 0 {
			continue
		}
		if last >= 0 {
			sections[last] = out[lastStart:idx]
		}
		pos = idx + len(marker)
		sections[i] = out[pos:]
		last, lastStart = i, pos
	}
	return sections
}

// parseDebugfsStat reads the output of debugfs "stat": empty output means
// the path does not exist. The first lines look like
//
//	Inode: 13   Type: directory    Mode:  0755   Flags: 0x80000
//	Generation: 0    Version: 0x00000000:00000000
//	User:     0   Group:     0   Project:     0   Size: 4096
func parseDebugfsStat(out []byte) (inodeInfo, error) {
	if len(strings.TrimSpace(string(out))) == 0 {
		return inodeInfo{}, nil
	}
	fields := strings.Fields(string(out))
	info := inodeInfo{Exists: true}
	seen := map[string]bool{}
	for i := 0; i+1 < len(fields); i++ {
		key, val := fields[i], fields[i+1]
		if seen[key] {
			continue
		}
		var err error
		switch key {
		case "Type:":
			info.Type = val
		case "Mode:":
			var m uint64
			m, err = strconv.ParseUint(val, 8, 32)
			info.Mode = uint32(m)
		case "User:":
			info.UID, err = strconv.Atoi(val)
		case "Group:":
			info.GID, err = strconv.Atoi(val)
		case "Size:":
			info.Size, err = strconv.ParseInt(val, 10, 64)
		default:
			continue
		}
		if err != nil {
			return inodeInfo{}, fmt.Errorf("parse debugfs stat %s %q: %w", key, val, err)
		}
		seen[key] = true
	}
	for _, key := range []string{"Type:", "Mode:", "User:", "Group:", "Size:"} {
		if !seen[key] {
			return inodeInfo{}, fmt.Errorf("parse debugfs stat: no %s field in %q", key, firstLine(out))
		}
	}
	return info, nil
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
