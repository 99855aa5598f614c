package workspace

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"banger/internal/errdefs"
)

// The scripts below run in the guest under `sh -c` (see ShellCommand) as
// root, with git, tar and coreutils. Every git call there reads a
// private global config that trusts any directory (safe.directory) and
// no system config, so neither the guest's nor root's git settings
// (diff prefixes, external diff, colours) can change what they do.

// gitEnv keeps git's system and global config (root's ~/.gitconfig may
// come from file_sync) out of git calls that need no settings of their
// own; the files they touch belong to root, so safe.directory does not
// apply.
const gitEnv = `GIT_CONFIG_GLOBAL=/dev/null
GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL GIT_CONFIG_NOSYSTEM
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_CEILING_DIRECTORIES
`

// gitPreamble makes a private temporary directory $t, removed on exit,
// and points git's global config at a file in it.
const gitPreamble = `t=$(mktemp -d)
trap 'rm -rf -- "$t"' EXIT
printf '[safe]\n\tdirectory = *\n' >"$t/gitconfig"
GIT_CONFIG_GLOBAL="$t/gitconfig"
GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL GIT_CONFIG_NOSYSTEM
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_CEILING_DIRECTORIES
`

// ExtractCommand returns the script that replaces the guest copy at
// guestPath with the tar stream on its stdin. The stream is extracted
// beside it, into a new directory; the files a shallow overlay did not
// send (Plan.Checkout) are checked out of the received .git, and of each
// submodule's own .git, bytes as in the blobs (the stream's
// .git/info/attributes turns off conversions);
// only then, and only when the stream's last member (doneMarker)
// arrived, does the new directory replace the old copy. A stream cut
// short leaves the old copy as it was. The script starts few processes:
// under software emulation each costs tens of milliseconds.
func ExtractCommand(guestPath string) (string, error) {
	if err := checkGuestPath(guestPath); err != nil {
		return "", err
	}
	next := path.Join(path.Dir(guestPath), ".banger-new-"+path.Base(guestPath))
	return "set -e\n" + gitEnv +
		"d=" + ShellQuote(guestPath) + "\n" +
		"n=" + ShellQuote(next) + "\n" +
		`trap '[ ! -e "$n" ] || rm -rf -- "$n"' EXIT
[ ! -e "$n" ] || rm -rf -- "$n"
mkdir -p -- "$n"
tar -x --warning=no-timestamp -f - -C "$n"
if [ ! -f "$n/` + doneMarker + `" ]; then
	echo "the workspace stream ended early; $d is unchanged" >&2
	exit 1
fi
if [ -f "$n/.git/` + submodulesFile + `" ]; then
	(cd "$n" && xargs -0 sh -ec 'for s; do
		git -C "$s" checkout-index -u -z --stdin <"$s/.git/` + checkoutFile + `"
		rm -rf -- "$s/.git/info" "$s/.git/` + checkoutFile + `"
	done' sh <".git/` + submodulesFile + `")
	rm -f -- "$n/.git/` + submodulesFile + `"
fi
if [ -f "$n/.git/` + checkoutFile + `" ]; then
	git -C "$n" checkout-index -u -z --stdin <"$n/.git/` + checkoutFile + `"
	rm -rf -- "$d" "$n/` + doneMarker + `" "$n/.git/info" "$n/.git/` + checkoutFile + `"
else
	rm -rf -- "$d" "$n/` + doneMarker + `"
fi
mv -- "$n" "$d"
`, nil
}

// BranchCommand returns the script that creates branch in the guest copy
// at guestPath and checks it out, starting at commit from (HEAD when
// empty) and keeping the working tree as it is. The branch name is
// checked with `git check-ref-format --branch` on the host.
func BranchCommand(ctx context.Context, guestPath, branch, from string) (string, error) {
	if err := checkGuestPath(guestPath); err != nil {
		return "", err
	}
	if err := CheckBranchName(ctx, branch); err != nil {
		return "", err
	}
	if from != "" && !isObjectID(from) {
		return "", errdefs.Invalid(fmt.Errorf("branch start %q is not a commit id", from))
	}
	cmd := "git -C \"$d\" checkout -q -b " + ShellQuote(branch)
	if from != "" {
		cmd += " " + from
	}
	return "set -e\n" + gitPreamble + "d=" + ShellQuote(guestPath) + "\n" + cmd + "\n", nil
}

// CheckBranchName reports whether name is a valid new branch name.
func CheckBranchName(ctx context.Context, name string) error {
	if name == "" || strings.HasPrefix(name, "-") {
		return errdefs.Invalid(fmt.Errorf("invalid branch name %q", name))
	}
	if _, err := git(ctx, "/", "check-ref-format", "--branch", name); err != nil {
		if exitCode(err) > 0 {
			return errdefs.Invalid(fmt.Errorf("invalid branch name %q", name))
		}
		return fmt.Errorf("check branch name %q: %w", name, err)
	}
	return nil
}

// ShellCommand wraps script as the one remote command line to give ssh:
// `sh -c '<script>'`.
func ShellCommand(script string) string {
	return "sh -c " + ShellQuote(script)
}

// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkGuestPath refuses guest paths a prepare must not replace: not
// absolute, not clean, or fewer than two levels deep (/, /root, /etc).
func checkGuestPath(p string) error {
	switch {
	case strings.ContainsRune(p, 0):
		return errdefs.Invalid(errors.New("guest path holds a NUL byte"))
	case !path.IsAbs(p) || path.Clean(p) != p:
		return errdefs.Invalid(fmt.Errorf("guest path %q is not a clean absolute path", p))
	case strings.Count(p, "/") < 2:
		return errdefs.Invalid(fmt.Errorf("guest path %q is too close to / (want a directory like /root/NAME)", p))
	}
	return nil
}

// isObjectID reports whether s is a full hex git object id.
func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
