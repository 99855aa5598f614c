package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Fingerprint summarizes the state a prepare of repo would copy, so a
// caller can tell that the host repository changed since its last
// prepare: for a git repository, HEAD, the tracked files' status and the
// content of every difference from HEAD (staged or not); untracked files
// do not count. For a plain directory, every file's path, type, mode,
// size, modification time and symlink target. Reading it takes no git
// lock and changes nothing.
func Fingerprint(ctx context.Context, repo Repo) (string, error) {
	h := sha256.New()
	if !repo.Git {
		if err := fingerprintTree(h, repo.Root); err != nil {
			return "", fmt.Errorf("fingerprint %q: %w", repo.Root, err)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	head, err := git(ctx, repo.Root, "rev-parse", "-q", "--verify", "HEAD^{commit}")
	if err != nil && exitCode(err) != 1 {
		return "", fmt.Errorf("fingerprint %q: %w", repo.Root, err)
	}
	base := strings.TrimSpace(string(head))
	if base == "" {
		out, err := git(ctx, repo.Root, "hash-object", "-t", "tree", "/dev/null")
		if err != nil {
			return "", fmt.Errorf("fingerprint %q: %w", repo.Root, err)
		}
		base = strings.TrimSpace(string(out)) // the empty tree
	}
	status, err := git(ctx, repo.Root, "--no-optional-locks", "status", "--porcelain=v2", "-z", "--branch", "--untracked-files=no")
	if err != nil {
		return "", fmt.Errorf("fingerprint %q: %w", repo.Root, err)
	}
	diff, err := git(ctx, repo.Root, "--no-optional-locks", "diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", base, "--")
	if err != nil {
		return "", fmt.Errorf("fingerprint %q: %w", repo.Root, err)
	}
	fmt.Fprintf(h, "head %s\x00status %d\x00", base, len(status))
	h.Write(status)
	fmt.Fprintf(h, "diff %d\x00", len(diff))
	h.Write(diff)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fingerprintTree hashes the metadata of everything under root.
func fingerprintTree(h io.Writer, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var target string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%q %v %d %d %q\x00", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), target)
		return nil
	})
}
