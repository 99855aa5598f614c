package workspace

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/model"
)

// bothModes are the prepare modes that give the guest a git repository.
var bothModes = []model.WorkspacePrepareMode{model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy}

// repoState is what an export must leave alone in a guest repository:
// its index file's bytes and HEAD.
type repoState struct {
	index []byte
	head  string
}

// stateOf reads the index and HEAD of the repository whose top is dir.
func stateOf(t *testing.T, dir string) repoState {
	t.Helper()
	index := gitT(t, dir, "rev-parse", "--path-format=absolute", "--git-path", "index")
	data, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	return repoState{index: data, head: gitT(t, dir, "rev-parse", "HEAD")}
}

// checkStates checks that the repositories at dirs (relative to guest)
// have the states before holds.
func checkStates(t *testing.T, guest string, dirs []string, before []repoState) {
	t.Helper()
	for i, d := range dirs {
		after := stateOf(t, filepath.Join(guest, d))
		if !bytes.Equal(after.index, before[i].index) {
			t.Errorf("repository %q: index changed by the export", d)
		}
		if after.head != before[i].head {
			t.Errorf("repository %q: HEAD got %s after the export, want %s", d, after.head, before[i].head)
		}
	}
}

// exportWithStderr runs ExportCommand in guest and returns the patch and
// what the script wrote to stderr.
func exportWithStderr(t *testing.T, guest, base string) (patch, stderr []byte) {
	t.Helper()
	script, err := ExportCommand(guest, base)
	if err != nil {
		t.Fatalf("ExportCommand: %v", err)
	}
	cmd := exec.Command("sh", "-c", ShellCommand(script))
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("export script: %v: %s", err, errBuf.Bytes())
	}
	return out, errBuf.Bytes()
}

// Submodule paths of nestedRepo.
const (
	nestedSub   = "libs/sub ü"              // a submodule of the top
	nestedInner = nestedSub + "/deep/inner" // a submodule of nestedSub
)

// nestedRepo builds DIR/top, a repository with a submodule (nestedSub)
// that has a submodule of its own (nestedInner), all clean and checked
// out, their origins beside it.
func nestedRepo(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	inner := filepath.Join(base, "inner-origin")
	gitT(t, base, "init", "-q", inner)
	writeFile(t, inner, "inner.txt", []byte("inner\n"), 0o644)
	writeFile(t, inner, "inner.bin", randomBytes(30, 5000), 0o644)
	gitT(t, inner, "add", "-A")
	gitT(t, inner, "commit", "-q", "-m", "inner")

	sub := filepath.Join(base, "sub-origin")
	gitT(t, base, "init", "-q", sub)
	writeFile(t, sub, "sub.txt", []byte("sub\n"), 0o644)
	writeFile(t, sub, "run.sh", []byte("#!/bin/sh\n"), 0o755)
	gitT(t, sub, "add", "-A")
	gitT(t, sub, "submodule", "add", "-q", inner, "deep/inner")
	gitT(t, sub, "commit", "-q", "-m", "sub")

	top := filepath.Join(base, "top")
	gitT(t, base, "init", "-q", top)
	writeFile(t, top, "top.txt", []byte("top\n"), 0o644)
	gitT(t, top, "add", "-A")
	gitT(t, top, "submodule", "add", "-q", sub, nestedSub)
	gitT(t, top, "submodule", "update", "-q", "--init", "--recursive")
	gitT(t, top, "commit", "-q", "-m", "top")
	return top
}

// TestExportSubmoduleCommitted exports a guest that committed inside the
// fixture's submodule, then changed more: the patch carries every change
// against the commit the base records, and no gitlink change.
func TestExportSubmoduleCommitted(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	skip := skipPrefixes(".git", fixtureSubmodule+"/.git", "crlf.txt", fixtureSubmodule+"/scratch.tmp")
	for _, mode := range bothModes {
		t.Run(string(mode), func(t *testing.T) {
			guest := filepath.Join(t.TempDir(), "r", "my-repo")
			prepareGuest(t, repo, Options{Mode: mode}, guest)
			sub := filepath.Join(guest, fixtureSubmodule)
			submoduleEdits(t, sub)
			gitT(t, sub, "add", "-A")
			gitT(t, sub, "commit", "-q", "-m", "guest commit in the submodule")
			writeFile(t, sub, "sub.txt", []byte("changed again after the commit\n"), 0o644)
			writeFile(t, sub, "after.txt", []byte("added after the commit\n"), 0o644)
			dirs := []string{".", fixtureSubmodule}
			before := []repoState{stateOf(t, guest), stateOf(t, sub)}

			patch := exportPatch(t, guest, repo.HeadCommit)

			checkStates(t, guest, dirs, before)
			if bytes.Contains(patch, []byte("Subproject commit")) {
				t.Errorf("patch: got a gitlink change, want the submodule's files only")
			}
			for _, want := range []string{"+changed again after the commit", "+++ b/modules/sub/after.txt", "rename to modules/sub/notes-moved.txt"} {
				if !bytes.Contains(patch, []byte(want)) {
					t.Errorf("patch: no %q", want)
				}
			}
			host := applyOnClean(t, root, repo.HeadCommit, patch)
			compareTrees(t, snapshot(t, host, skip), snapshot(t, guest, skip))
		})
	}
}

// TestExportNestedSubmodules changes a guest whose submodule has a
// submodule of its own, under a path with a space and non-ASCII letters.
func TestExportNestedSubmodules(t *testing.T) {
	needTools(t)
	root := nestedRepo(t)
	repo := inspect(t, root)
	dirs := []string{".", nestedSub, nestedInner}
	skip := skipPrefixes(".git", nestedSub+"/.git", nestedInner+"/.git")
	for _, mode := range bothModes {
		t.Run(string(mode), func(t *testing.T) {
			guest := filepath.Join(t.TempDir(), "r", "top")
			prepareGuest(t, repo, Options{Mode: mode}, guest)
			for _, d := range dirs {
				if got := gitT(t, filepath.Join(guest, d), "rev-parse", "--show-prefix"); got != "" {
					t.Fatalf("%q in the guest: got prefix %q in a repository above it, want a repository of its own", d, got)
				}
			}

			t.Run("untouched", func(t *testing.T) {
				if patch := exportPatch(t, guest, repo.HeadCommit); len(patch) != 0 {
					t.Errorf("patch of an untouched guest: got %q, want empty", patch)
				}
			})

			t.Run("superproject only", func(t *testing.T) {
				writeFile(t, guest, "top.txt", []byte("top, changed\n"), 0o644)
				patch := exportPatch(t, guest, repo.HeadCommit)
				if !bytes.Contains(patch, []byte("+top, changed")) {
					t.Errorf("patch: got %q, want the change of top.txt", patch)
				}
				if bytes.Contains(patch, []byte("libs/")) {
					t.Errorf("patch: got a section for an unchanged submodule:\n%s", patch)
				}
			})

			t.Run("all levels", func(t *testing.T) {
				inner := filepath.Join(guest, nestedInner)
				writeFile(t, inner, "inner.txt", []byte("inner, committed in the guest\n"), 0o644)
				gitT(t, inner, "commit", "-q", "-a", "-m", "inner moves")
				writeFile(t, inner, "inner.bin", randomBytes(31, 5000), 0o644)
				writeFile(t, filepath.Join(guest, nestedSub), "new.txt", []byte("new in the submodule\n"), 0o644)
				if err := os.Chmod(filepath.Join(guest, nestedSub, "run.sh"), 0o644); err != nil {
					t.Fatal(err)
				}
				before := make([]repoState, len(dirs))
				for i, d := range dirs {
					before[i] = stateOf(t, filepath.Join(guest, d))
				}

				patch, stderr := exportWithStderr(t, guest, repo.HeadCommit)

				checkStates(t, guest, dirs, before)
				if len(stderr) != 0 {
					t.Errorf("export stderr: got %q, want nothing", stderr)
				}
				for _, want := range []string{
					`+++ "b/libs/sub \303\274/new.txt"`,
					`diff --git "a/libs/sub \303\274/deep/inner/inner.txt"`,
					`diff --git "a/libs/sub \303\274/deep/inner/inner.bin"`,
				} {
					if !bytes.Contains(patch, []byte(want)) {
						t.Errorf("patch: no %q", want)
					}
				}
				if bytes.Contains(patch, []byte("Subproject commit")) {
					t.Errorf("patch: got a gitlink change, want the files only")
				}
				host := applyOnClean(t, root, repo.HeadCommit, patch)
				compareTrees(t, snapshot(t, host, skip), snapshot(t, guest, skip))
			})
		})
	}
}

// TestExportNewRepository exports a guest that cloned a repository into
// its copy: its files are new files in the patch.
func TestExportNewRepository(t *testing.T) {
	needTools(t)
	root := nestedRepo(t)
	repo := inspect(t, root)
	for _, mode := range bothModes {
		t.Run(string(mode), func(t *testing.T) {
			guest := filepath.Join(t.TempDir(), "r", "top")
			prepareGuest(t, repo, Options{Mode: mode}, guest)
			cloned := filepath.Join(guest, "vendor", "inner")
			gitT(t, guest, "clone", "-q", filepath.Join(filepath.Dir(root), "inner-origin"), cloned)
			writeFile(t, cloned, "local.txt", []byte("uncommitted in the clone\n"), 0o644)

			patch := exportPatch(t, guest, repo.HeadCommit)

			for _, want := range []string{"+++ b/vendor/inner/inner.txt", "+++ b/vendor/inner/local.txt", "diff --git a/vendor/inner/inner.bin"} {
				if !bytes.Contains(patch, []byte(want)) {
					t.Errorf("patch: no %q", want)
				}
			}
			host := applyOnClean(t, root, repo.HeadCommit, patch)
			skip := skipPrefixes(".git", nestedSub+"/.git", nestedInner+"/.git", "vendor/inner/.git")
			compareTrees(t, snapshot(t, host, skip), snapshot(t, guest, skip))
		})
	}
}

// TestExportSubmoduleWithoutBase checks the submodules an export cannot
// diff: it says which on stderr and exports the rest.
func TestExportSubmoduleWithoutBase(t *testing.T) {
	needTools(t)
	tests := []struct {
		name  string
		mode  model.WorkspacePrepareMode
		host  func(t *testing.T, root string) // before the prepare
		guest func(t *testing.T, guest string)
		want  string
	}{
		{
			name: "repository removed in the guest",
			mode: model.WorkspacePrepareModeFullCopy,
			guest: func(t *testing.T, guest string) {
				if err := os.Remove(filepath.Join(guest, nestedSub, ".git")); err != nil {
					t.Fatal(err)
				}
			},
			want: "warning: submodule " + nestedSub + " is not a git repository in the guest copy",
		},
		{
			name: "repository replaced in the guest",
			mode: model.WorkspacePrepareModeShallowOverlay,
			guest: func(t *testing.T, guest string) {
				sub := filepath.Join(guest, nestedSub)
				if err := os.RemoveAll(filepath.Join(sub, ".git")); err != nil {
					t.Fatal(err)
				}
				gitT(t, sub, "init", "-q")
			},
			want: "warning: submodule " + nestedSub + ": its base commit ",
		},
		{
			name: "host lacks the recorded commit",
			mode: model.WorkspacePrepareModeShallowOverlay,
			host: func(t *testing.T, root string) {
				missing := strings.Repeat("ab", 20)
				gitT(t, root, "update-index", "--cacheinfo", "160000,"+missing+","+nestedSub)
				gitT(t, root, "commit", "-q", "-m", "records a commit the submodule lacks")
			},
			want: "warning: submodule " + nestedSub + " is not a git repository in the guest copy",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := nestedRepo(t)
			if tc.host != nil {
				tc.host(t, root)
			}
			repo := inspect(t, root)
			guest := filepath.Join(t.TempDir(), "r", "top")
			prepareGuest(t, repo, Options{Mode: tc.mode}, guest)
			if tc.guest != nil {
				tc.guest(t, guest)
			}
			writeFile(t, guest, "top.txt", []byte("top, changed\n"), 0o644)
			writeFile(t, guest, nestedSub+"/sub.txt", []byte("sub, changed\n"), 0o644)

			patch, stderr := exportWithStderr(t, guest, repo.HeadCommit)

			if !strings.Contains(string(stderr), tc.want) {
				t.Errorf("export stderr: got %q, want %q", stderr, tc.want)
			}
			if !bytes.Contains(patch, []byte("+top, changed")) {
				t.Errorf("patch: got %q, want the superproject's change", patch)
			}
			if bytes.Contains(patch, []byte("sub, changed")) {
				t.Errorf("patch: got the change of a submodule without a base:\n%s", patch)
			}
		})
	}
}
