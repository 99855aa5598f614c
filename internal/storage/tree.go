package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"banger/internal/errdefs"
)

// TreeKind is what a TreeEntry makes.
type TreeKind int

// The kinds of TreeEntry.
const (
	TreeFile TreeKind = iota + 1
	TreeDir
	TreeSymlink
)

func (k TreeKind) String() string {
	switch k {
	case TreeFile:
		return "file"
	case TreeDir:
		return "directory"
	case TreeSymlink:
		return "symlink"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// TreeEntry is one regular file, directory or symbolic link that
// WriteTree makes inside an ext4 image.
type TreeEntry struct {
	// Path is the absolute, clean path inside the image.
	Path string
	Kind TreeKind
	// Mode holds the permission bits (with setuid, setgid and sticky);
	// symbolic links always get 0777.
	Mode     os.FileMode
	UID, GID int
	// Source is the host file a TreeFile's content is copied from. It is
	// read when WriteTree runs; callers that must not follow a path
	// twice pass a private copy.
	Source string
	// Target is a TreeSymlink's target, stored as it is: never resolved.
	Target string
	// KeepExisting leaves a TreeDir that already exists with its own mode
	// and owner, as mkdir -p does; a directory it creates gets Mode.
	KeepExisting bool
}

// maxDebugfsLine bounds every line of a generated debugfs script.
// debugfs reads its script with fgets into a BUFSIZ (8 KiB) buffer, so a
// longer line would be cut and its tail run as a command of its own.
const maxDebugfsLine = 4096

// maxNameLen is the longest ext4 file name, in bytes.
const maxNameLen = 255

// maxTreeString bounds an entry's path, source and target, so that every
// command naming them stays under maxDebugfsLine.
const maxTreeString = 3584

// Inode type bit of symbolic links, beside typeRegular and typeDirectory.
const typeSymlink = 0o120000

// WriteTree makes entries, in order, inside the unmounted ext4 image img
// with one debugfs run, then checks every entry's type, mode, owner and
// size. Each entry's parent must be "/" or an earlier TreeDir entry, so
// every directory on the way is checked. A file or symlink replaces a
// regular file or symlink at its path; a directory is merged into an
// existing directory. A path that exists with the other kind (a directory
// where a file goes, a file where a directory goes) is an
// errdefs.ErrInvalid error, found before anything is written.
func WriteTree(ctx context.Context, img string, entries []TreeEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := CheckTree(entries); err != nil {
		return fmt.Errorf("write tree in %s: %w", img, err)
	}
	sizes := make([]int64, len(entries))
	for i, e := range entries {
		if e.Kind != TreeFile {
			continue
		}
		st, err := os.Stat(e.Source)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return errdefs.NotFound(fmt.Errorf("write tree in %s: source of %s: %w", img, e.Path, err))
			}
			return fmt.Errorf("write tree in %s: source of %s: %w", img, e.Path, err)
		}
		if !st.Mode().IsRegular() {
			return errdefs.Invalid(fmt.Errorf("write tree in %s: source %s of %s is not a regular file", img, e.Source, e.Path))
		}
		sizes[i] = st.Size()
	}
	if err := prepareOfflineWrite(ctx, img); err != nil {
		return fmt.Errorf("write tree in %s: %w", img, err)
	}
	paths := pathsOf(entries)
	existing, err := statGuest(ctx, img, paths)
	if err != nil {
		return fmt.Errorf("write tree in %s: %w", img, err)
	}
	script, want, err := treeScript(entries, existing, sizes)
	if err != nil {
		return fmt.Errorf("write tree in %s: %w", img, err)
	}
	if err := runAndVerify(ctx, img, script, paths, want); err != nil {
		return fmt.Errorf("write tree in %s: %w", img, err)
	}
	return nil
}

// CheckTree validates entries for WriteTree without touching any file:
// paths debugfs can take quoted (absolute, clean, no "..", no double
// quote or control character, names of at most 255 bytes), parents
// listed first, no path twice, sources and targets debugfs can quote.
// Errors are errdefs.ErrInvalid.
func CheckTree(entries []TreeEntry) error {
	dirs := map[string]bool{"/": true}
	seen := map[string]bool{}
	for _, e := range entries {
		if err := checkTreeEntry(e); err != nil {
			return errdefs.Invalid(err)
		}
		if seen[e.Path] {
			return errdefs.Invalid(fmt.Errorf("%s is listed twice", e.Path))
		}
		seen[e.Path] = true
		if e.Path != "/" {
			if parent, _ := splitGuestPath(e.Path); !dirs[parent] {
				return errdefs.Invalid(fmt.Errorf("%s: its parent %s is not an earlier directory entry", e.Path, parent))
			}
		}
		if e.Kind == TreeDir {
			dirs[e.Path] = true
		}
	}
	return nil
}

func checkTreeEntry(e TreeEntry) error {
	if err := checkTreePath(e.Path); err != nil {
		return err
	}
	if e.UID < 0 || e.GID < 0 {
		return fmt.Errorf("%s: negative owner %d:%d", e.Path, e.UID, e.GID)
	}
	switch e.Kind {
	case TreeDir:
		return nil
	case TreeFile:
		if e.Path == "/" {
			return errors.New("/ cannot be a file")
		}
		if !strings.HasPrefix(e.Source, "/") {
			return fmt.Errorf("%s: source %q is not an absolute path", e.Path, e.Source)
		}
		if len(e.Source) > maxTreeString {
			return fmt.Errorf("%s: source %.40q... is longer than %d bytes", e.Path, e.Source, maxTreeString)
		}
		if !debugfsQuotable(e.Source) {
			return fmt.Errorf("%s: source %q contains a double quote or control character", e.Path, e.Source)
		}
		return nil
	case TreeSymlink:
		if e.Path == "/" {
			return errors.New("/ cannot be a symlink")
		}
		if e.Target == "" {
			return fmt.Errorf("%s: empty symlink target", e.Path)
		}
		if len(e.Target) > maxTreeString {
			return fmt.Errorf("%s: symlink target %.40q... is longer than %d bytes", e.Path, e.Target, maxTreeString)
		}
		if !debugfsQuotable(e.Target) {
			return fmt.Errorf("%s: symlink target %q contains a double quote or control character, which debugfs cannot write", e.Path, e.Target)
		}
		return nil
	}
	return fmt.Errorf("%s: unknown kind %d", e.Path, e.Kind)
}

// checkTreePath accepts absolute, clean paths whose names debugfs can
// take between double quotes. Backslashes are literal there.
func checkTreePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute", p)
	case len(p) > maxTreeString:
		return fmt.Errorf("path %.40q... is longer than %d bytes", p, maxTreeString)
	case p != "/" && (strings.HasSuffix(p, "/") || strings.Contains(p, "//")):
		return fmt.Errorf("path %q is not clean", p)
	case !debugfsQuotable(p):
		return fmt.Errorf("path %q contains a double quote or control character, which debugfs cannot write", p)
	}
	for _, name := range strings.Split(p[1:], "/") {
		switch {
		case name == "." || name == "..":
			return fmt.Errorf("path %q contains %q", p, name)
		case len(name) > maxNameLen:
			return fmt.Errorf("path %q: name %.20q... is longer than %d bytes", p, name, maxNameLen)
		}
	}
	return nil
}

// debugfsQuotable reports whether s can stand between double quotes on
// a debugfs command line: no double quote, no control character.
func debugfsQuotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '"' {
			return false
		}
	}
	return true
}

// treeScript builds the debugfs commands that make entries over what the
// image holds now (existing, one stat per entry) and what each entry
// must look like afterwards. sizes holds the source size of each
// TreeFile.
func treeScript(entries []TreeEntry, existing []inodeInfo, sizes []int64) ([]string, []inodeInfo, error) {
	var script []string
	want := make([]inodeInfo, len(entries))
	cwd := ""
	cd := func(dir string) {
		if dir != cwd {
			script = append(script, "cd "+debugfsQuote(dir))
			cwd = dir
		}
	}
	for i, e := range entries {
		cur := existing[i]
		dir, name := splitGuestPath(e.Path)
		q := debugfsQuote(e.Path)
		switch e.Kind {
		case TreeDir:
			want[i] = inodeInfo{Exists: true, Type: "directory", Mode: unixPerm(e.Mode), UID: e.UID, GID: e.GID, Size: -1}
			switch {
			case cur.Exists && cur.Type != "directory":
				return nil, nil, errdefs.Invalid(fmt.Errorf("%s exists and is a %s, not a directory", e.Path, cur.Type))
			case cur.Exists && e.KeepExisting:
				cur.Size = -1
				want[i] = cur
				continue
			case !cur.Exists:
				cd(dir)
				script = append(script, "mkdir "+debugfsQuote(name))
			}
			script = append(script, debugfsSetOwnerScript(e.Path, typeDirectory, e.Mode, e.UID, e.GID)...)
		case TreeFile, TreeSymlink:
			if cur.Exists && cur.Type != "regular" && cur.Type != "symlink" {
				return nil, nil, errdefs.Invalid(fmt.Errorf("%s exists and is a %s; a %s cannot replace it", e.Path, cur.Type, e.Kind))
			}
			if cur.Exists {
				script = append(script, "rm "+q)
			}
			cd(dir)
			if e.Kind == TreeFile {
				want[i] = inodeInfo{Exists: true, Type: "regular", Mode: unixPerm(e.Mode), UID: e.UID, GID: e.GID, Size: sizes[i]}
				script = append(script, "write "+debugfsQuote(e.Source)+" "+debugfsQuote(name))
				script = append(script, debugfsSetOwnerScript(e.Path, typeRegular, e.Mode, e.UID, e.GID)...)
			} else {
				want[i] = inodeInfo{Exists: true, Type: "symlink", Mode: 0o777, UID: e.UID, GID: e.GID, Size: int64(len(e.Target))}
				script = append(script, "symlink "+debugfsQuote(name)+" "+debugfsQuote(e.Target))
				script = append(script, debugfsSetOwnerScript(e.Path, typeSymlink, 0o777, e.UID, e.GID)...)
			}
		default:
			return nil, nil, errdefs.Invalid(fmt.Errorf("%s: unknown kind %d", e.Path, e.Kind))
		}
	}
	for _, line := range append(script, debugfsStatScript(pathsOf(entries))...) {
		if len(line) >= maxDebugfsLine {
			return nil, nil, errdefs.Invalid(fmt.Errorf("debugfs command for %.60q... is longer than %d bytes; shorten the path", line, maxDebugfsLine))
		}
	}
	return script, want, nil
}

func pathsOf(entries []TreeEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Path
	}
	return out
}
