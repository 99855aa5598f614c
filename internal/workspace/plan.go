package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// Options say what a prepare sends.
type Options struct {
	// Mode is how the repository reaches the guest; empty means
	// shallow_overlay.
	Mode model.WorkspacePrepareMode
	// IncludeUntracked also sends untracked files that are not ignored.
	IncludeUntracked bool
	// From is a commit id (see ResolveCommit) a branch in the guest copy
	// starts at: a shallow overlay then holds that commit too.
	From string
}

// Kind is the type of a plan entry.
type Kind uint8

// The entry kinds.
const (
	KindFile Kind = iota + 1
	KindDir
	KindSymlink
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one archive member.
type Entry struct {
	// Path is slash-separated and relative to the guest copy.
	Path string
	Kind Kind
	// Size is the byte count of a regular file, 0 for other kinds.
	Size int64
	// Mode is 0644 or 0755 for files, 0755 for directories, 0777 for
	// symlinks.
	Mode fs.FileMode
	// Target is a symlink's target, copied verbatim.
	Target string

	source  string    // host file the entry is read from
	modTime time.Time // whole seconds
}

// Plan is what a prepare sends, in archive order. A plan may own a
// temporary directory on the host: Close it when done.
type Plan struct {
	Mode model.WorkspacePrepareMode
	// Entries are the archive's members.
	Entries []Entry
	// TotalBytes is the sum of the archived regular files' sizes.
	TotalBytes int64
	// Checkout are the tracked files (shallow_overlay) that are not in
	// the archive because they equal HEAD's version (a submodule's: the
	// commit HEAD records for it): the guest writes them from the
	// archived .git (the submodule's own), in this order.
	Checkout []Entry
	// CheckoutBytes is the sum of the Checkout files' sizes.
	CheckoutBytes int64

	tmpDir string
}

// Close removes the plan's temporary files.
func (p *Plan) Close() error {
	if p == nil || p.tmpDir == "" {
		return nil
	}
	err := os.RemoveAll(p.tmpDir)
	p.tmpDir = ""
	if err != nil {
		return fmt.Errorf("remove workspace plan files: %w", err)
	}
	return nil
}

// NewPlan lists what a prepare of repo sends in opts.Mode.
func NewPlan(ctx context.Context, repo Repo, opts Options) (*Plan, error) {
	mode, err := ParseMode(string(opts.Mode))
	if err != nil {
		return nil, err
	}
	b := &builder{entries: map[string]*Entry{}, dirs: map[string]bool{}, subs: map[string]bool{}}
	p := &Plan{Mode: mode}
	switch {
	case mode == model.WorkspacePrepareModeMetadataOnly:
		return p, nil
	case !repo.Git && mode == model.WorkspacePrepareModeFullCopy:
		err = b.addTree(repo.Root, "")
	case !repo.Git:
		return nil, errdefs.Invalid(fmt.Errorf("%q is not a git repository; use --mode full_copy to copy a plain directory", repo.Path))
	case mode == model.WorkspacePrepareModeFullCopy:
		err = b.addFullCopy(ctx, repo, opts.IncludeUntracked)
	default:
		p.tmpDir, err = b.addShallowOverlay(ctx, repo, opts.IncludeUntracked, opts.From)
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("plan workspace %q: %w", repo.Root, err)
	}
	if b.entries[doneMarker] != nil || slices.ContainsFunc(b.checkout, func(e Entry) bool { return e.Path == doneMarker }) {
		p.Close()
		return nil, errdefs.Invalid(fmt.Errorf("plan workspace %q: the file name %s at the top of the repository is reserved by banger; rename it", repo.Root, doneMarker))
	}
	p.Entries, p.TotalBytes = b.list()
	p.Checkout = b.checkout
	for _, e := range p.Checkout {
		p.CheckoutBytes += e.Size
	}
	return p, nil
}

// builder collects entries by archive path.
type builder struct {
	entries  map[string]*Entry
	dirs     map[string]bool // host directories checked to be real directories
	checkout []Entry         // files the guest checks out of .git
	subs     map[string]bool // archive paths of the submodules whose files were added
}

// list returns the entries with their parent directories, sorted by path
// (so that a directory precedes what it holds), and their total size.
func (b *builder) list() ([]Entry, int64) {
	for p, e := range b.entries {
		src := e.source
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			src = filepath.Dir(src)
			if _, ok := b.entries[dir]; ok {
				break
			}
			var mt time.Time
			if fi, err := os.Lstat(src); err == nil {
				mt = fi.ModTime().Truncate(time.Second)
			}
			b.entries[dir] = &Entry{Path: dir, Kind: KindDir, Mode: 0o755, source: src, modTime: mt}
		}
	}
	out := make([]Entry, 0, len(b.entries))
	var total int64
	for _, e := range b.entries {
		out = append(out, *e)
		total += e.Size
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, total
}

// addPath adds the host file src as archive path rel, as it is now: a
// regular file, a symlink (never followed) or, with dirOK, a directory
// (the entry alone). A path that is missing, sits below something that
// is not a real directory, or is another kind of file is left out, as
// git would.
func (b *builder) addPath(src, rel string, dirOK bool) (*Entry, error) {
	if !validRel(rel) {
		return nil, fmt.Errorf("refuse archive path %q", rel)
	}
	if ok, err := b.realParents(src, rel); err != nil || !ok {
		return nil, err
	}
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := &Entry{Path: rel, source: src, modTime: fi.ModTime().Truncate(time.Second)}
	switch {
	case fi.Mode().IsRegular():
		e.Kind, e.Size, e.Mode = KindFile, fi.Size(), 0o644
		if fi.Mode()&0o100 != 0 {
			e.Mode = 0o755
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return nil, err
		}
		e.Kind, e.Mode, e.Target = KindSymlink, 0o777, target
	case fi.IsDir() && dirOK:
		e.Kind, e.Mode = KindDir, 0o755
	default:
		return nil, nil // sockets, fifos, devices
	}
	b.entries[rel] = e
	return e, nil
}

// realParents reports whether every directory between the archive root
// and rel is a real directory on the host, not a symlink.
func (b *builder) realParents(src, rel string) (bool, error) {
	dir := filepath.Dir(src)
	for r := path.Dir(rel); r != "."; r = path.Dir(r) {
		ok, seen := b.dirs[dir]
		if seen {
			if !ok {
				return false, nil
			}
			dir = filepath.Dir(dir)
			continue
		}
		fi, err := os.Lstat(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		ok = err == nil && fi.IsDir()
		b.dirs[dir] = ok
		if !ok {
			return false, nil
		}
		dir = filepath.Dir(dir)
	}
	return true, nil
}

// addTree adds everything under the host directory src as archive path
// prefix (the directory itself too unless prefix is empty).
func (b *builder) addTree(src, prefix string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		rel = path.Join(prefix, filepath.ToSlash(rel))
		if rel == "." {
			return nil
		}
		_, err = b.addPath(p, rel, true)
		return err
	})
}

// indexEntry is one line of `git ls-files -s`.
type indexEntry struct {
	mode string
	path string
}

// gitlinkMode is the index mode of a submodule.
const gitlinkMode = "160000"

// lsFilesStage lists the index of the repository at dir, one entry per
// path.
func lsFilesStage(ctx context.Context, dir string) ([]indexEntry, error) {
	out, err := git(ctx, dir, "ls-files", "-z", "--stage")
	if err != nil {
		return nil, err
	}
	var list []indexEntry
	seen := map[string]bool{}
	for _, rec := range splitNul(out) {
		// <mode> SP <object> SP <stage> TAB <path>
		meta, p, ok := bytes.Cut(rec, []byte{'\t'})
		if !ok {
			return nil, fmt.Errorf("parse git ls-files line %q", rec)
		}
		mode, _, _ := bytes.Cut(meta, []byte{' '})
		if seen[string(p)] { // unmerged paths are listed once per stage
			continue
		}
		seen[string(p)] = true
		list = append(list, indexEntry{mode: string(mode), path: string(p)})
	}
	return list, nil
}

// addWorkTree adds the working tree files the index of the repository at
// dir tracks, as archive paths under prefix, recursing into initialized
// submodules. With withGitFiles, submodules' own .git (file or
// directory) is added too; with untracked, untracked files that are not
// ignored.
func (b *builder) addWorkTree(ctx context.Context, dir, prefix string, withGitFiles, untracked bool) error {
	index, err := lsFilesStage(ctx, dir)
	if err != nil {
		return err
	}
	for _, ie := range index {
		src := filepath.Join(dir, filepath.FromSlash(ie.path))
		rel := path.Join(prefix, ie.path)
		if ie.mode != gitlinkMode {
			if _, err := b.addPath(src, rel, false); err != nil { // a file that became a directory is gone for git
				return err
			}
			continue
		}
		gitEntry := filepath.Join(src, ".git")
		fi, err := os.Lstat(gitEntry)
		if err != nil || !(fi.Mode().IsRegular() || fi.IsDir()) {
			continue // submodule not initialized: an empty directory, as git leaves it
		}
		if ok, err := b.realParents(gitEntry, rel+"/.git"); err != nil {
			return err
		} else if !ok {
			continue // below a symlink: not part of the tree
		}
		b.subs[rel] = true
		if withGitFiles {
			if fi.IsDir() {
				err = b.addTree(gitEntry, rel+"/.git")
			} else {
				_, err = b.addPath(gitEntry, rel+"/.git", false)
			}
			if err != nil {
				return err
			}
		}
		if err := b.addWorkTree(ctx, src, rel, withGitFiles, untracked); err != nil {
			return fmt.Errorf("submodule %q: %w", rel, err)
		}
	}
	if !untracked {
		return nil
	}
	out, err := git(ctx, dir, "ls-files", "-z", "--others", "--exclude-standard")
	if err != nil {
		return err
	}
	for _, p := range splitNul(out) {
		if bytes.HasSuffix(p, []byte{'/'}) {
			continue // a nested repository of its own: not part of this one
		}
		if _, err := b.addPath(filepath.Join(dir, filepath.FromSlash(string(p))), path.Join(prefix, string(p)), false); err != nil {
			return err
		}
	}
	return nil
}

// addFullCopy adds the repository's .git directory and its working tree.
func (b *builder) addFullCopy(ctx context.Context, repo Repo, untracked bool) error {
	gitDir := filepath.Join(repo.Root, ".git")
	fi, err := os.Lstat(gitDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errdefs.Invalid(fmt.Errorf("%s is not a directory (a linked worktree or a submodule): full_copy needs the repository's own .git; use shallow_overlay", gitDir))
	}
	if err := b.addTree(gitDir, ".git"); err != nil {
		return err
	}
	return b.addWorkTree(ctx, repo.Root, "", true, untracked)
}

// validRel reports whether rel is a clean, relative, slash-separated path
// that stays below the archive root.
func validRel(rel string) bool {
	return rel != "" && rel != "." && !strings.HasPrefix(rel, "/") && path.Clean(rel) == rel &&
		rel != ".." && !strings.HasPrefix(rel, "../") && !strings.ContainsRune(rel, 0)
}

// splitNul splits NUL-terminated records.
func splitNul(out []byte) [][]byte {
	out = bytes.TrimSuffix(out, []byte{0})
	if len(out) == 0 {
		return nil
	}
	return bytes.Split(out, []byte{0})
}
