package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"banger/internal/hostexec"
)

// Listing describes the content of the ext4 image rootfsPath without
// mounting it: one line per file, sorted by path,
//
//	PATH TYPE MODE UID:GID SIZE DIGEST
//
// tab-separated, where TYPE is dir, file, symlink, char, block, fifo or
// socket, MODE the permission bits in octal, DIGEST "sha256:<hex>" of a
// regular file's content, "-> TARGET" for a symlink and "-" otherwise.
// Times, inode numbers and the filesystem's own identity (UUID, hash
// seed) are left out: they differ between any two mkfs runs. Two images
// with the same listing have the same content. It reads the image with
// debugfs (rdump into a temporary directory, then ls -p of every
// directory for the metadata) and needs space for a copy of the files.
func Listing(ctx context.Context, rootfsPath string) ([]byte, error) {
	return listing(ctx, rootfsPath, "")
}

// listing is Listing with the copy made under scratchParent ("" for the
// default temporary directory).
func listing(ctx context.Context, rootfsPath, scratchParent string) (_ []byte, err error) {
	if _, err := os.Stat(rootfsPath); err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	scratch, err := os.MkdirTemp(scratchParent, "listing-")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	defer func() {
		if rerr := removeDump(scratch); rerr != nil {
			err = errors.Join(err, fmt.Errorf("list %s: clean up: %w", rootfsPath, rerr))
		}
	}()
	dump := filepath.Join(scratch, "root")
	if err := os.Mkdir(dump, 0o700); err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	if _, err := hostexec.Run(ctx, "debugfs", "-R", "rdump / "+debugfsQuote(dump), rootfsPath); err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	dirs, err := dumpedDirs(dump)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	cmds := filepath.Join(scratch, "ls-commands")
	if err := os.WriteFile(cmds, []byte(lsCommands(dirs)), 0o600); err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	out, err := hostexec.Run(ctx, "debugfs", "-f", cmds, rootfsPath)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	entries, err := parseLsOutput(string(out), dirs)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
	}
	var b bytes.Buffer
	for _, e := range entries {
		if excludedFromListing(e.path) {
			continue
		}
		digest := "-"
		local := filepath.Join(dump, filepath.FromSlash(e.path))
		switch e.typ {
		case "file":
			if digest, err = fileDigest(local, e.size); err != nil {
				return nil, fmt.Errorf("list %s: %s: %w", rootfsPath, e.path, err)
			}
		case "symlink":
			target, err := os.Readlink(local)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", rootfsPath, err)
			}
			digest = "-> " + listingQuote(target)
		}
		fmt.Fprintf(&b, "%s\t%s\t%04o\t%d:%d\t%d\t%s\n", listingQuote(e.path), e.typ, e.perm, e.uid, e.gid, e.size, digest)
	}
	return b.Bytes(), nil
}

// excludedFromListing reports paths left out of a listing. There are
// none today: the build removes what would differ between two builds
// (customize.sh and mmdebstrap's reproducible cleanup), so a difference
// in a listing is a finding, not noise.
func excludedFromListing(string) bool { return false }

// ListingDigest is "sha256:<hex>" of a listing.
func ListingDigest(listing []byte) string {
	sum := sha256.Sum256(listing)
	return digestPrefix + hex.EncodeToString(sum[:])
}

// listingEntry is one file as debugfs ls -p shows it.
type listingEntry struct {
	path     string
	typ      string
	perm     uint32
	uid, gid uint64
	size     int64
}

// dumpedDirs lists the directories of an rdump copy as image paths,
// "/" first, sorted.
func dumpedDirs(dump string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(dump, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, err := filepath.Rel(dump, p)
			if err != nil {
				return err
			}
			dirs = append(dirs, path.Join("/", filepath.ToSlash(rel)))
		}
		return nil
	})
	sort.Strings(dirs)
	return dirs, err
}

// lsCommands is the debugfs command file that lists every directory.
func lsCommands(dirs []string) string {
	var b strings.Builder
	for _, d := range dirs {
		b.WriteString("ls -p " + debugfsQuote(d) + "\n")
	}
	return b.String()
}

// debugfsQuote quotes an argument for debugfs's command parser.
func debugfsQuote(s string) string {
	return `"` + s + `"`
}

// parseLsOutput reads the output of debugfs -f with lsCommands(dirs):
// for each directory an echo of the command, then "/ino/mode/uid/gid/
// name/size/" lines. It returns every entry, the root from its "."
// line, sorted by path.
func parseLsOutput(out string, dirs []string) ([]listingEntry, error) {
	var entries []listingEntry
	i := -1
	for _, line := range strings.Split(out, "\n") {
		if cmd, ok := strings.CutPrefix(line, "debugfs: "); ok {
			i++
			if i >= len(dirs) || cmd != "ls -p "+debugfsQuote(dirs[i]) {
				return nil, fmt.Errorf("unexpected debugfs output %q", line)
			}
			continue
		}
		if line == "" {
			continue
		}
		if i < 0 {
			return nil, fmt.Errorf("unexpected debugfs output %q", line)
		}
		if strings.HasPrefix(line, "/0/") {
			continue // an unused directory entry (lost+found has them)
		}
		e, name, err := parseLsLine(line)
		if err != nil {
			return nil, fmt.Errorf("ls %s: %w", dirs[i], err)
		}
		switch {
		case name == "..":
			continue
		case name == ".":
			if dirs[i] != "/" {
				continue
			}
			e.path = "/"
		default:
			e.path = path.Join(dirs[i], name)
		}
		entries = append(entries, e)
	}
	if i != len(dirs)-1 {
		return nil, fmt.Errorf("debugfs listed %d of %d directories", i+1, len(dirs))
	}
	sort.Slice(entries, func(a, b int) bool { return entries[a].path < entries[b].path })
	return entries, nil
}

// parseLsLine parses one "/ino/mode/uid/gid/name/size/" line of ls -p.
func parseLsLine(line string) (listingEntry, string, error) {
	if !strings.HasPrefix(line, "/") || !strings.HasSuffix(line, "/") {
		return listingEntry{}, "", fmt.Errorf("bad line %q", line)
	}
	f := strings.Split(line[1:len(line)-1], "/")
	if len(f) != 6 {
		return listingEntry{}, "", fmt.Errorf("bad line %q", line)
	}
	mode, err1 := strconv.ParseUint(f[1], 8, 32)
	uid, err2 := strconv.ParseUint(f[2], 10, 32)
	gid, err3 := strconv.ParseUint(f[3], 10, 32)
	var size uint64
	var err4 error
	if f[5] != "" {
		size, err4 = strconv.ParseUint(f[5], 10, 63)
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return listingEntry{}, "", fmt.Errorf("bad line %q: %w", line, err)
	}
	e := listingEntry{perm: uint32(mode & 0o7777), uid: uid, gid: gid, size: int64(size)}
	switch mode >> 12 {
	case 0o04:
		e.typ = "dir"
		e.size = 0 // the directory's block count, not its content
	case 0o10:
		e.typ = "file"
	case 0o12:
		e.typ = "symlink"
	case 0o02:
		e.typ = "char"
	case 0o06:
		e.typ = "block"
	case 0o01:
		e.typ = "fifo"
	case 0o14:
		e.typ = "socket"
	default:
		return listingEntry{}, "", fmt.Errorf("bad line %q: unknown file type", line)
	}
	return e, f[4], nil
}

// fileDigest hashes a dumped file, which must have the listed size.
func fileDigest(p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("dumped %d bytes, the image lists %d", n, size)
	}
	return digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

// listingQuote leaves plain paths as they are and quotes those with
// blanks or control characters, so every line keeps its fields.
func listingQuote(s string) string {
	if strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '"' || c == '\\' }) {
		return strconv.Quote(s)
	}
	return s
}

// removeDump removes an rdump copy; directories copied without write
// permission are made writable first when that is what stops it.
func removeDump(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
