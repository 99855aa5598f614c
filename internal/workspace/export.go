package workspace

import "fmt"

// ExportCommand returns the script that prints to stdout a binary patch
// (`git diff --binary`) from baseCommit to the guest copy at guestPath as
// it is on disk: new files (untracked ones too, ignored ones not),
// changes, deletions, renames, mode changes, in the repository and in
// its submodules. baseCommit is a commit id or a ref the guest copy
// resolves; empty means a repository that had no commits: the patch then
// creates every file.
//
// Each repository is diffed through a temporary index loaded from its
// base and given every file, so no index, HEAD or ref in the guest
// changes (git adds the new files' objects to the repositories' object
// stores). GIT_OPTIONAL_LOCKS=0 keeps the `git status` that `git add`
// runs in each submodule (to see whether it is dirty) from refreshing
// that submodule's own index.
//
// A submodule's base is the commit baseCommit records for it. Its file
// changes follow the superproject's in the patch, with paths from the
// superproject's top, whether or not the guest committed in it; the
// patch leaves out the gitlink when the guest moved the submodule's
// commit (the files carry the change, and `git apply` would only try to
// remove the submodule's directory). So one plain `git apply`, run at
// the top of a clean checkout of baseCommit whose submodules are checked
// out at the recorded commits, gives the guest's files; the patch is
// empty when nothing changed. See exportRepoScript for submodules added,
// removed or without a base in the guest.
func ExportCommand(guestPath, baseCommit string) (string, error) {
	if err := checkGuestPath(guestPath); err != nil {
		return "", err
	}
	base := `base="$(git hash-object -t tree /dev/null)"` // the empty tree
	if baseCommit != "" {
		if err := checkRef(baseCommit); err != nil {
			return "", err
		}
		base = "base=$(git rev-parse --verify --quiet --end-of-options " + ShellQuote(baseCommit+"^{commit}") + ") || {\n" +
			"\techo " + ShellQuote(fmt.Sprintf("base commit %q is not a commit in the guest copy", baseCommit)) + " >&2\n\texit 1\n}"
	}
	return "set -e\n" + gitPreamble +
		"cd " + ShellQuote(guestPath) + "\n" +
		base + "\n" +
		"printf '%s\\n' " + ShellQuote(exportRepoScript) + ` >"$t/repo.sh"` + "\n" +
		"printf '%s\\n' " + ShellQuote(exportSubmodulesScript) + ` >"$t/sub.sh"` + "\n" +
		"tab='\t'\n" +
		`GIT_OPTIONAL_LOCKS=0
export t tab GIT_OPTIONAL_LOCKS
set -- "" "$base"
. "$t/repo.sh"
`, nil
}

// exportRepoScript, run as `sh "$t/repo.sh" PREFIX BASE` at the top of a
// repository's working tree, prints the patch from BASE to that working
// tree, paths under PREFIX, then the patches of the repositories nested
// in it. PREFIX is empty for the guest copy itself, whose BASE the
// caller checked (ExportCommand sources the script for it, saving a
// process); for a submodule PREFIX is its path from the top with a
// trailing slash and BASE the commit the parent's base records, empty
// for a submodule the base lacks (added in the guest, or a repository
// cloned inside the copy): every file is then new. Its temporary files
// live in $t, which the top script removes on exit.
//
// A submodule without a repository in the guest (never initialized, or
// a shallow overlay's submodule whose recorded commit the host did not
// have), or whose repository lacks BASE, cannot be diffed: the script
// says so on stderr when its directory is not empty, and goes on. A
// submodule removed in the guest shows as its gitlink's deletion only;
// `git apply` then warns that it cannot remove the host's directory.
//
// A submodule's patch is made from two trees that hold its base and its
// files under PREFIX, so that every path in it, rename lines included,
// starts at the superproject's top (a diff with --src-prefix would
// leave "rename from" lines relative to the submodule).
const exportRepoScript = `set -e
p=$1
base=$2
if [ -n "$p" ]; then
	top=$(git rev-parse --show-prefix 2>/dev/null) || top=-
	if [ -n "$top" ]; then
		if [ -n "$(ls -A)" ]; then
			printf 'warning: submodule %s is not a git repository in the guest copy: changes inside it are not in the patch\n' "${p%/}" >&2
		fi
		exit 0
	fi
	if [ -z "$base" ]; then
		base=$(git hash-object -t tree /dev/null)
	elif ! git cat-file -e "$base^{commit}" 2>/dev/null; then
		printf 'warning: submodule %s: its base commit %s is not in the guest copy: changes inside it are not in the patch\n' "${p%/}" "$base" >&2
		exit 0
	fi
fi
r=$t
[ -z "$p" ] || r=$(mktemp -d "$t/r.XXXXXX")
GIT_INDEX_FILE="$r/index"
export GIT_INDEX_FILE
git read-tree "$base"
git add -A
if git ls-files -s | grep -q '^160000 '; then
	git ls-files -s -z | xargs -0 sh "$t/sub.sh" "$p" "$base" >"$r/nested"
fi
o='--binary --no-color --no-ext-diff --no-textconv --no-relative --find-renames --submodule=short --src-prefix=a/ --dst-prefix=b/'
if [ -z "$p" ]; then
	git diff --cached $o "$base" --
else
	tree=$(git write-tree)
	a=$(GIT_INDEX_FILE="$r/a" git read-tree --prefix="$p" "$base" && GIT_INDEX_FILE="$r/a" git write-tree)
	b=$(GIT_INDEX_FILE="$r/b" git read-tree --prefix="$p" "$tree" && GIT_INDEX_FILE="$r/b" git write-tree)
	git diff $o "$a" "$b" --
fi
if [ -f "$r/nested" ]; then
	cat -- "$r/nested"
fi`

// exportSubmodulesScript, run as `sh "$t/sub.sh" PREFIX BASE RECORD...`
// at the top of a repository whose temporary index ($GIT_INDEX_FILE)
// holds its working tree, exports the repository of each gitlink among
// RECORDs (lines of `git ls-files -s -z`) with exportRepoScript. A
// gitlink that BASE records too is first set back to BASE's commit in
// the temporary index, so that the parent's patch leaves it out.
const exportSubmodulesScript = `set -e
p=$1
base=$2
shift 2
for rec; do
	case $rec in
	"160000 "*) ;;
	*) continue ;;
	esac
	path=${rec#*"$tab"}
	id=${rec#160000 }
	id=${id%% *}
	sub=$(git --literal-pathspecs ls-tree --full-tree "$base" -- "$path")
	case $sub in
	"160000 commit "*)
		sub=${sub#160000 commit }
		sub=${sub%%"$tab"*}
		[ "$id" = "$sub" ] || git update-index --cacheinfo 160000 "$sub" "$path"
		;;
	*) sub= ;;
	esac
	(cd -- "./$path" && sh "$t/repo.sh" "$p$path/" "$sub")
done`
