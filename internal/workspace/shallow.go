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
	"path/filepath"
	"strconv"
	"strings"
)

// rehashFile is where, inside the guest's .git, a shallow overlay lists
// the files whose git blobs the guest rebuilds after extraction; the
// guest deletes it once done. One path a line, C-quoted when needed, the
// form `git hash-object --stdin-paths` reads.
const rehashFile = "banger-rehash"

// addShallowOverlay adds the host's tracked working tree and a .git that
// holds HEAD's commit and trees and only the blobs the guest cannot
// rebuild from the files it receives. It returns the temporary directory
// that holds that .git.
func (b *builder) addShallowOverlay(ctx context.Context, repo Repo, untracked bool) (tmp string, err error) {
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
	// No template: no sample hooks, no description; reflogs off.
	if _, err := git(ctx, tmp, "init", "-q", "--template=", "--object-format="+format); err != nil {
		return "", err
	}
	if _, err := git(ctx, tmp, "config", "core.logAllRefUpdates", "false"); err != nil {
		return "", err
	}
	if repo.HeadCommit != "" {
		if err := b.writeShallowHead(ctx, repo, tmp, format); err != nil {
			return "", err
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

// treeEntry is one line of `git ls-tree -r -t -l`.
type treeEntry struct {
	mode, typ, id string
	size          int64 // -1 for trees
}

// writeShallowHead fills the .git in tmp with HEAD's commit: a pack of
// the commit, its trees and the blobs no sent file reproduces, the
// branch or detached HEAD, the shallow boundary and an index that
// matches HEAD. Sent files that reproduce a blob are marked and listed in
// the rehash file.
func (b *builder) writeShallowHead(ctx context.Context, repo Repo, tmp, format string) error {
	head := repo.HeadCommit
	out, err := git(ctx, repo.Root, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", head)
	if err != nil {
		return err
	}
	tree := map[string]treeEntry{}
	var paths []string // in ls-tree's order, which is stable
	for _, rec := range splitNul(out) {
		// <mode> SP <type> SP <object> SP+ <size> TAB <path>
		meta, p, ok := bytes.Cut(rec, []byte{'\t'})
		f := strings.Fields(string(meta))
		if !ok || len(f) != 4 {
			return fmt.Errorf("parse git ls-tree line %q", rec)
		}
		size := int64(-1)
		if f[3] != "-" {
			if size, err = strconv.ParseInt(f[3], 10, 64); err != nil {
				return fmt.Errorf("parse git ls-tree line %q: %w", rec, err)
			}
		}
		tree[string(p)] = treeEntry{mode: f[0], typ: f[1], id: f[2], size: size}
		paths = append(paths, string(p))
	}

	// Blobs the guest rebuilds: a regular file sent at the path HEAD has it,
	// whose raw bytes hash to HEAD's blob.
	rebuilt := map[string]bool{}
	var list bytes.Buffer
	for _, p := range paths {
		te, e := tree[p], b.entries[p]
		if te.typ != "blob" || te.mode == "120000" || e == nil || e.Kind != KindFile || e.Size != te.size || rebuilt[te.id] {
			continue
		}
		id, err := blobID(format, e.source, e.Size)
		if err != nil {
			return err
		}
		if id != te.id {
			continue
		}
		e.blobID = id
		rebuilt[id] = true
		list.WriteString(quotePathLine(p))
		list.WriteByte('\n')
	}

	root, err := git(ctx, repo.Root, "rev-parse", head+"^{tree}")
	if err != nil {
		return err
	}
	objects := bytes.NewBufferString(head + "\n" + string(root))
	packed := map[string]bool{}
	for _, p := range paths {
		if te := tree[p]; (te.typ == "tree" || te.typ == "blob" && !rebuilt[te.id]) && !packed[te.id] {
			packed[te.id] = true
			objects.WriteString(te.id + "\n")
		}
	}
	packBase := filepath.Join(tmp, ".git", "objects", "pack", "pack")
	if _, err := gitStdin(ctx, objects.Bytes(), repo.Root, "pack-objects", "-q", "--delta-base-offset", packBase); err != nil {
		return err
	}

	if repo.Branch != "" {
		_, err = git(ctx, tmp, "update-ref", "refs/heads/"+repo.Branch, head)
	} else {
		_, err = git(ctx, tmp, "update-ref", "--no-deref", "HEAD", head)
	}
	if err != nil {
		return err
	}
	out, err = git(ctx, repo.Root, "rev-list", "--parents", "-n", "1", head)
	if err != nil {
		return err
	}
	if len(strings.Fields(string(out))) > 1 {
		if err := os.WriteFile(filepath.Join(tmp, ".git", "shallow"), []byte(head+"\n"), 0o644); err != nil {
			return err
		}
	}
	if _, err := git(ctx, tmp, "read-tree", head); err != nil {
		return err
	}
	if list.Len() > 0 {
		if err := os.WriteFile(filepath.Join(tmp, ".git", rehashFile), list.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
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

// quotePathLine writes p the way git reads a path line: as is, or
// C-quoted when it starts with a double quote or holds a control byte
// (a line break, or a carriage return git would strip).
func quotePathLine(p string) string {
	needs := strings.HasPrefix(p, `"`)
	for i := 0; i < len(p) && !needs; i++ {
		needs = p[i] < 0x20 || p[i] == 0x7f
	}
	if !needs {
		return p
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
