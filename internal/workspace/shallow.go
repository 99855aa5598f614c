package workspace

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// checkoutFile is where, inside the guest's .git, a shallow overlay
// lists the files the guest writes from HEAD's blobs instead of
// receiving them: NUL-terminated paths, the form `git checkout-index -z
// --stdin` reads. The guest deletes it once done.
const checkoutFile = "banger-checkout"

// checkoutAttributes turns off every attribute that would make a checked
// out file differ from its blob.
const checkoutAttributes = "* -text !eol -filter -ident !working-tree-encoding\n"

// submodulesFile is where, inside the top .git of a shallow overlay, the
// guest finds the paths (NUL-terminated) of the submodules whose own
// .git has a checkoutFile. The guest deletes it once done.
const submodulesFile = "banger-submodules"

// addShallowOverlay adds the host's tracked working tree and a .git that
// holds HEAD's commit, trees and blobs. Tracked files whose bytes and
// exec bit equal HEAD's are not sent: the guest checks them out of the
// .git, so their bytes travel once, compressed. Submodules get a .git of
// their own (addShallowSubmodules). It returns the temporary directory
// that holds the .git directories.
//
// from, when set and not HEAD, is another commit the .git must hold (the
// start of a branch made with --from): its commit, trees and blobs are
// packed too, as a second shallow root.
func (b *builder) addShallowOverlay(ctx context.Context, repo Repo, untracked bool, from string) (tmp string, err error) {
	if err := b.addWorkTree(ctx, repo.Root, "", false, untracked); err != nil {
		return "", err
	}
	out, err := git(ctx, repo.Root, "rev-parse", "--show-object-format")
	if err != nil {
		return "", err
	}
	format := strings.TrimSpace(string(out))

	tmp, err = os.MkdirTemp("", "banger-workspace-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
			tmp = ""
		}
	}()
	// No template: no sample hooks, no description.
	if _, err := git(ctx, tmp, "init", "-q", "--template=", "--object-format="+format); err != nil {
		return "", err
	}
	if repo.HeadCommit != "" {
		entries, _, err := b.writeShallowHead(ctx, repo, tmp, format, from, "")
		if err != nil {
			return "", err
		}
		var subs bytes.Buffer
		n := 0
		if err := b.addShallowSubmodules(ctx, repo.Root, "", entries, tmp, &n, &subs); err != nil {
			return "", err
		}
		if subs.Len() > 0 {
			if err := os.WriteFile(filepath.Join(tmp, ".git", submodulesFile), subs.Bytes(), 0o644); err != nil {
				return "", err
			}
		}
	}
	if repo.Branch != "" {
		if _, err := git(ctx, tmp, "symbolic-ref", "HEAD", "refs/heads/"+repo.Branch); err != nil {
			return "", err
		}
	}
	if err := b.addTree(filepath.Join(tmp, ".git"), ".git"); err != nil {
		return "", err
	}
	return tmp, nil
}

// addShallowSubmodules gives each submodule the commit of the repository
// at dir records (entries, its tree; prefix, its archive path) a
// one-commit .git of its own, made like the top one's: the recorded
// commit with its trees and blobs, a detached HEAD, an index that
// matches it, and the files equal to it moved to that .git's checkout
// list. An export diffs the submodule's files against that commit. Only
// submodules whose files were sent (addWorkTree found them initialized)
// and whose host repository holds the recorded commit get one; the
// others arrive as plain files. Nested submodules are handled the same
// way. The paths of submodules with a checkout list are appended to
// subs, NUL-terminated, for ExtractCommand; n numbers their
// directories under tmp.
func (b *builder) addShallowSubmodules(ctx context.Context, dir, prefix string, entries []pathEntry, tmp string, n *int, subs *bytes.Buffer) error {
	for _, e := range entries {
		if e.typ != "commit" {
			continue
		}
		src := filepath.Join(dir, filepath.FromSlash(e.path))
		rel := path.Join(prefix, e.path)
		if !b.subs[rel] {
			continue
		}
		if _, err := git(ctx, src, "cat-file", "-e", e.id+"^{commit}"); err != nil {
			if exitCode(err) > 0 {
				continue // the submodule never fetched the recorded commit
			}
			return fmt.Errorf("submodule %q: %w", rel, err)
		}
		out, err := git(ctx, src, "rev-parse", "--show-object-format")
		if err != nil {
			return fmt.Errorf("submodule %q: %w", rel, err)
		}
		format := strings.TrimSpace(string(out))
		*n++
		subTmp := filepath.Join(tmp, "modules", strconv.Itoa(*n))
		if _, err := git(ctx, "/", "init", "-q", "--template=", "--object-format="+format, subTmp); err != nil {
			return fmt.Errorf("submodule %q: %w", rel, err)
		}
		subEntries, checkedOut, err := b.writeShallowHead(ctx, Repo{Root: src, HeadCommit: e.id}, subTmp, format, "", rel)
		if err != nil {
			return fmt.Errorf("submodule %q: %w", rel, err)
		}
		if err := b.addTree(filepath.Join(subTmp, ".git"), rel+"/.git"); err != nil {
			return err
		}
		if checkedOut {
			subs.WriteString(rel)
			subs.WriteByte(0)
		}
		if err := b.addShallowSubmodules(ctx, src, rel, subEntries, tmp, n, subs); err != nil {
			return err
		}
	}
	return nil
}

// treeEntry is one line of `git ls-tree -r -t -l`.
type treeEntry struct {
	mode, typ, id string
	size          int64 // -1 for trees
}

// writeShallowHead fills the .git in tmp with the commit repo.HeadCommit
// names: a pack of the commit and its whole tree, the branch (or a
// detached HEAD), the shallow boundary and an index that matches the
// commit. Sent files that equal the commit's version move from the
// archive to the checkout list, which it writes into the .git when not
// empty (checkedOut says so). prefix is the archive path of the
// repository: empty for the top, a submodule's path otherwise. A from
// commit other than HEAD is packed as well, with its tree. It returns
// the entries of the commit's tree.
func (b *builder) writeShallowHead(ctx context.Context, repo Repo, tmp, format, from, prefix string) (entries []pathEntry, checkedOut bool, err error) {
	head := repo.HeadCommit
	var objects bytes.Buffer
	packed := map[string]bool{}
	entries, err = commitObjects(ctx, repo.Root, head, &objects, packed)
	if err != nil {
		return nil, false, err
	}
	roots := []string{head}
	if from != "" && from != head {
		if _, err := commitObjects(ctx, repo.Root, from, &objects, packed); err != nil {
			return nil, false, err
		}
		roots = append(roots, from)
	}
	var list bytes.Buffer
	for _, e := range entries {
		p := path.Join(prefix, e.path)
		same, err := b.sameAsHead(format, p, e.treeEntry)
		if err != nil {
			return nil, false, err
		}
		if same {
			b.checkout = append(b.checkout, *b.entries[p])
			delete(b.entries, p)
			list.WriteString(e.path)
			list.WriteByte(0)
		}
	}

	packBase := filepath.Join(tmp, ".git", "objects", "pack", "pack")
	if _, err := gitStdin(ctx, objects.Bytes(), repo.Root, "pack-objects", "-q", "--delta-base-offset", packBase); err != nil {
		return nil, false, err
	}
	// No reflog: it would carry the host user's name and a host path.
	if repo.Branch != "" {
		_, err = git(ctx, tmp, "-c", "core.logAllRefUpdates=false", "update-ref", "refs/heads/"+repo.Branch, head)
	} else {
		_, err = git(ctx, tmp, "-c", "core.logAllRefUpdates=false", "update-ref", "--no-deref", "HEAD", head)
	}
	if err != nil {
		return nil, false, err
	}
	// Every packed commit that has parents is a shallow root: the guest
	// holds none of its history.
	var shallow strings.Builder
	for _, c := range roots {
		out, err := git(ctx, repo.Root, "rev-list", "--parents", "-n", "1", c)
		if err != nil {
			return nil, false, err
		}
		if len(strings.Fields(string(out))) > 1 {
			shallow.WriteString(c + "\n")
		}
	}
	if shallow.Len() > 0 {
		if err := os.WriteFile(filepath.Join(tmp, ".git", "shallow"), []byte(shallow.String()), 0o644); err != nil {
			return nil, false, err
		}
	}
	if _, err := git(ctx, tmp, "read-tree", head); err != nil {
		return nil, false, err
	}
	if list.Len() == 0 {
		return entries, false, nil
	}
	if err := os.WriteFile(filepath.Join(tmp, ".git", checkoutFile), list.Bytes(), 0o644); err != nil {
		return nil, false, err
	}
	// The guest's checkout writes the blobs' bytes as they are: no
	// end-of-line conversion, filters or encodings from the tree's
	// .gitattributes (info/attributes overrides them). The guest
	// removes the file after the checkout.
	if err := os.MkdirAll(filepath.Join(tmp, ".git", "info"), 0o755); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".git", "info", "attributes"), []byte(checkoutAttributes), 0o644); err != nil {
		return nil, false, err
	}
	return entries, true, nil
}

// pathEntry is one entry of a commit's tree with its path.
type pathEntry struct {
	path string
	treeEntry
}

// commitObjects appends to objects the ids of commit, its root tree and
// every tree and blob under it that packed does not hold yet (marking
// them), and returns the tree's entries.
func commitObjects(ctx context.Context, root, commit string, objects *bytes.Buffer, packed map[string]bool) ([]pathEntry, error) {
	out, err := git(ctx, root, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit)
	if err != nil {
		return nil, err
	}
	tree, err := git(ctx, root, "rev-parse", commit+"^{tree}")
	if err != nil {
		return nil, err
	}
	for _, id := range []string{commit, strings.TrimSpace(string(tree))} {
		if !packed[id] {
			packed[id] = true
			objects.WriteString(id + "\n")
		}
	}
	var entries []pathEntry
	for _, rec := range splitNul(out) {
		// <mode> SP <type> SP <object> SP+ <size> TAB <path>
		meta, p, ok := bytes.Cut(rec, []byte{'\t'})
		f := strings.Fields(string(meta))
		if !ok || len(f) != 4 {
			return nil, fmt.Errorf("parse git ls-tree line %q", rec)
		}
		te := treeEntry{mode: f[0], typ: f[1], id: f[2], size: -1}
		if f[3] != "-" {
			if te.size, err = strconv.ParseInt(f[3], 10, 64); err != nil {
				return nil, fmt.Errorf("parse git ls-tree line %q: %w", rec, err)
			}
		}
		if (te.typ == "tree" || te.typ == "blob") && !packed[te.id] {
			packed[te.id] = true
			objects.WriteString(te.id + "\n")
		}
		entries = append(entries, pathEntry{string(p), te})
	}
	return entries, nil
}

// sameAsHead reports whether the file planned at path p is a regular
// file whose exec bit and raw bytes equal HEAD's blob te there, so that
// checking the blob out reproduces it.
func (b *builder) sameAsHead(format, p string, te treeEntry) (bool, error) {
	e := b.entries[p]
	if te.typ != "blob" || e == nil || e.Kind != KindFile || e.Size != te.size {
		return false, nil
	}
	switch {
	case te.mode == "100644" && e.Mode == 0o644, te.mode == "100755" && e.Mode == 0o755:
	default:
		return false, nil
	}
	id, err := blobID(format, e.source, e.Size)
	if err != nil {
		return false, err
	}
	return id == te.id, nil
}

// newBlobHash returns the hash of git's object format ("sha1" or
// "sha256").
func newBlobHash(format string) (hash.Hash, error) {
	switch format {
	case "sha1":
		return sha1.New(), nil
	case "sha256":
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("unknown git object format %q", format)
}

// blobID is the git blob id of the size bytes of the file at path.
func blobID(format, path string, size int64) (string, error) {
	h, err := newBlobHash(format)
	if err != nil {
		return "", err
	}
	f, err := openNoFollow(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprintf(h, "blob %d\x00", size)
	n, err := io.Copy(h, io.LimitReader(f, size+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if n != size {
		return "", fmt.Errorf("read %s: size changed while reading", path)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
