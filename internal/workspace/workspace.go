// Package workspace copies a host repository into a VM and brings the
// guest's changes back. It is host-side logic only and knows nothing of
// SSH: it inspects a repository (Inspect), plans what a prepare sends
// (NewPlan), writes that plan as one tar stream (WriteTar), and returns
// the exact shell scripts the caller runs in the guest over SSH
// (ExtractCommand, BranchCommand, ExportCommand) with the tar stream on
// stdin or the patch on stdout. Fingerprint lets the caller notice that a
// host repository changed since its last prepare.
//
// The CLI and the daemon import it; it imports only model, errdefs and
// hostexec, and runs git on the host through hostexec.
//
// Behaviour in brief:
//   - shallow_overlay (default) gives the guest a one-commit .git for HEAD
//     (the commit, its trees and blobs, marked shallow) and the host's
//     tracked working tree byte for byte, exec bits included. Tracked
//     files equal to HEAD's version are not sent as files: the guest
//     checks them out of the sent .git, so their bytes travel once,
//     compressed. Changed, staged, added and mode-changed files travel in
//     the archive; files deleted on the host are absent in the guest.
//     Each initialized submodule gets a one-commit .git of its own, made
//     the same way from the commit HEAD records for it (HEAD detached
//     there), nested ones too: its unchanged files travel once, and an
//     export has its base. A submodule whose host repository lacks the
//     recorded commit arrives as plain files.
//     A repository without commits gets an empty .git on the same
//     branch; its files arrive untracked.
//   - full_copy sends the whole .git (submodules' git dirs included) and
//     the tracked files of the repository and its submodules. A plain
//     directory that is not a git repository is allowed only in this mode
//     and is copied whole.
//   - metadata_only sends nothing.
//   - Symlinks travel as symlinks, never followed, wherever they point.
//     Files are sent 0644 or 0755 (after the owner's exec bit),
//     directories 0755, all owned by root.
//   - Untracked files that are not ignored are sent only with
//     Options.IncludeUntracked; ignored files never are.
//   - A prepare replaces the guest copy: ExtractCommand removes it first.
//   - ExportCommand prints a binary patch of everything that differs in
//     the guest copy from the base commit, untracked files included and
//     ignored files excluded, without touching any index, HEAD or ref in
//     the guest. Submodules are part of it, nested ones too: each one's
//     files are diffed against the commit the base records for it, and
//     appear with paths from the top, so one plain `git apply` at the
//     top of a clean checkout of the base, submodules checked out
//     (`git submodule update --init --recursive`), reproduces the
//     guest's files. A submodule the guest committed in is no exception:
//     the patch carries its files' changes and leaves its gitlink out,
//     so the host's submodule keeps its HEAD and ends with the guest's
//     files as uncommitted changes. A repository added in the guest (a
//     new submodule or a clone) arrives as new files; a submodule the
//     guest removed shows as its gitlink's deletion only, which
//     `git apply` cannot carry out on a populated directory (it warns).
//     A submodule the guest copy holds no base for (not a repository
//     there, or lacking the recorded commit) is left out with a warning
//     on stderr. A plain-directory copy has no git to export from.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/model"
)

// Repo is a host directory resolved for a workspace prepare.
type Repo struct {
	// Path is the absolute form of the path the user gave.
	Path string
	// Root is the git top-level of Path, or Path itself when Git is false.
	Root string
	// Name is the base name of Root made into one safe path component.
	Name string
	// Git is false for a plain directory that is not in a git repository.
	Git bool
	// HeadCommit is the commit HEAD names; empty when there are no commits.
	HeadCommit string
	// Branch is the current branch; empty when HEAD is detached.
	Branch string
}

// Inspect resolves path (which must be an existing directory) to the
// repository that contains it.
func Inspect(ctx context.Context, path string) (Repo, error) {
	if path == "" {
		return Repo{}, errdefs.Invalid(errors.New("inspect workspace: path is empty"))
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Repo{}, fmt.Errorf("inspect workspace %q: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Repo{}, errdefs.NotFound(fmt.Errorf("path %q does not exist", path))
	case err != nil:
		return Repo{}, fmt.Errorf("inspect workspace %q: %w", path, err)
	case !fi.IsDir():
		return Repo{}, errdefs.Invalid(fmt.Errorf("path %q is not a directory", path))
	}
	if _, err := hostexec.Look("git", "git"); err != nil {
		return Repo{}, fmt.Errorf("inspect workspace %q: %w", path, err)
	}

	out, err := git(ctx, abs, "rev-parse", "--show-toplevel")
	if err != nil {
		if notRepository(err) {
			return Repo{Path: abs, Root: abs, Name: SafeName(filepath.Base(abs))}, nil
		}
		return Repo{}, fmt.Errorf("inspect workspace %q: %w", path, err)
	}
	root := strings.TrimSuffix(string(out), "\n")
	if root == "" {
		return Repo{}, fmt.Errorf("inspect workspace %q: git reports no top-level directory (is it inside a .git directory?)", path)
	}
	repo := Repo{Path: abs, Root: root, Name: SafeName(filepath.Base(root)), Git: true}

	out, err = git(ctx, root, "rev-parse", "-q", "--verify", "HEAD^{commit}")
	switch {
	case err == nil:
		repo.HeadCommit = strings.TrimSpace(string(out))
	case exitCode(err) != 1: // 1: no commit yet
		return Repo{}, fmt.Errorf("inspect workspace %q: %w", path, err)
	}
	out, err = git(ctx, root, "symbolic-ref", "-q", "--short", "HEAD")
	switch {
	case err == nil:
		repo.Branch = strings.TrimSpace(string(out))
	case exitCode(err) != 1: // 1: detached HEAD
		return Repo{}, fmt.Errorf("inspect workspace %q: %w", path, err)
	}
	return repo, nil
}

// SafeName turns a directory's base name into one path component made of
// ASCII letters, digits, '.', '_' and '-', that starts with neither '.'
// nor '-' and is at most 64 bytes. Other characters become '-'; a name
// left empty becomes "repo".
func SafeName(base string) string {
	var b strings.Builder
	lastDash := false
	for _, r := range base {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			r = '-'
		}
		if r == '-' && lastDash {
			continue
		}
		lastDash = r == '-'
		b.WriteRune(r)
	}
	name := strings.TrimLeft(b.String(), ".-")
	if len(name) > 64 {
		name = name[:64]
	}
	name = strings.TrimRight(name, "-")
	if name == "" {
		return "repo"
	}
	return name
}

// DefaultGuestPath is where a repository lands in the guest unless the
// caller says otherwise: /root/<name>.
func DefaultGuestPath(repo Repo) string {
	return "/root/" + repo.Name
}

// ParseMode checks a prepare mode given by the user; empty means
// shallow_overlay.
func ParseMode(s string) (model.WorkspacePrepareMode, error) {
	switch m := model.WorkspacePrepareMode(s); m {
	case "":
		return model.WorkspacePrepareModeShallowOverlay, nil
	case model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy, model.WorkspacePrepareModeMetadataOnly:
		return m, nil
	}
	return "", errdefs.Invalid(fmt.Errorf("unknown workspace mode %q: want shallow_overlay, full_copy or metadata_only", s))
}

// Result fills what a prepare of repo into guestPath in mode reports; the
// caller adds VMID, BranchName and PreparedAt. BaseCommit, the commit an
// export diffs against, is HEAD at prepare time.
func Result(repo Repo, mode model.WorkspacePrepareMode, guestPath string) model.WorkspacePrepareResult {
	return model.WorkspacePrepareResult{
		SourcePath:    repo.Path,
		RepoRoot:      repo.Root,
		RepoName:      repo.Name,
		GuestPath:     guestPath,
		Mode:          mode,
		HeadCommit:    repo.HeadCommit,
		CurrentBranch: repo.Branch,
		BaseCommit:    repo.HeadCommit,
	}
}

// ResolveCommit returns the full id of the commit ref names in repo: a
// branch, tag, short id or expression such as HEAD~2.
func ResolveCommit(ctx context.Context, repo Repo, ref string) (string, error) {
	if err := checkRef(ref); err != nil {
		return "", err
	}
	if !repo.Git {
		return "", errdefs.Invalid(fmt.Errorf("%q is not a git repository, so it has no commit %q", repo.Path, ref))
	}
	out, err := git(ctx, repo.Root, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil {
		if exitCode(err) > 0 {
			return "", errdefs.Invalid(fmt.Errorf("%q is not a commit in %s", ref, repo.Root))
		}
		return "", fmt.Errorf("resolve %q in %s: %w", ref, repo.Root, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// checkRef refuses what cannot be a git revision: empty, a leading dash
// (an option to git) or control characters.
func checkRef(ref string) error {
	if ref == "" || strings.HasPrefix(ref, "-") || strings.ContainsFunc(ref, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errdefs.Invalid(fmt.Errorf("invalid commit or ref %q", ref))
	}
	return nil
}

// git runs git in dir on the host.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return hostexec.Run(ctx, "git", append([]string{"-C", dir}, args...)...)
}

// gitStdin runs git in dir with in on stdin.
func gitStdin(ctx context.Context, in []byte, dir string, args ...string) ([]byte, error) {
	return hostexec.RunStdin(ctx, in, "git", append([]string{"-C", dir}, args...)...)
}

// exitCode is the exit status of a failed host command, or -1.
func exitCode(err error) int {
	var e *hostexec.Error
	if errors.As(err, &e) {
		return e.ExitCode
	}
	return -1
}

// notRepository reports whether git failed because its directory is in
// no repository. Git says so only in words.
func notRepository(err error) bool {
	var e *hostexec.Error
	return errors.As(err, &e) && e.ExitCode == 128 && strings.Contains(e.Stderr, "not a git repository")
}
