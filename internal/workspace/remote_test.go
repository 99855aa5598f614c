package workspace

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// guestEdits changes a prepared guest copy the ways a command might:
// edit, add (text, binary, odd names, symlink), delete, rename, binary
// change, mode change, a commit of its own, and an ignored file.
func guestEdits(t *testing.T, guest string) {
	t.Helper()
	writeFile(t, guest, "README.md", []byte("hello from the guest\n"), 0o644)
	writeFile(t, guest, "added.txt", []byte("added\n"), 0o644)
	writeFile(t, guest, "new.bin", randomBytes(10, 5000), 0o644)
	writeFile(t, guest, "guest\nnew.txt", []byte("newline name\n"), 0o644)
	writeFile(t, guest, "ü/ñ é.txt", []byte("unicode\n"), 0o644)
	writeFile(t, guest, "bin/blob.bin", randomBytes(11, 70<<10), 0o644)
	if err := os.Remove(filepath.Join(guest, "with space.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(guest, "deep/a/b/c.txt"), filepath.Join(guest, "deep/moved.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(guest, "bin/same.bin"), filepath.Join(guest, "bin/renamed.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(guest, "run.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(guest, "link-up")); err != nil {
		t.Fatal(err)
	}
	symlink(t, guest, "link-up", "README.md")
	symlink(t, guest, "new-link", "../escapes")
	writeFile(t, guest, "guest.log", []byte("ignored in the guest\n"), 0o644)
	writeFile(t, guest, "build/guest.o", []byte("ignored\n"), 0o644)
	// A commit in the guest does not hide its changes from the export.
	gitT(t, guest, "add", "added.txt")
	gitT(t, guest, "commit", "-q", "-m", "guest commit")
	submoduleEdits(t, filepath.Join(guest, fixtureSubmodule))
}

// submoduleEdits changes the fixture's submodule in a guest copy, sub
// being its directory: edit, add (text, binary, odd names, symlink),
// delete, rename (text and binary), binary change, mode changes both
// ways, and an ignored file.
func submoduleEdits(t *testing.T, sub string) {
	t.Helper()
	writeFile(t, sub, "sub.txt", []byte("in the submodule, changed in the guest\n"), 0o644)
	writeFile(t, sub, "new in sub.txt", []byte("new\n"), 0o644)
	writeFile(t, sub, "ü/new\nline.bin", randomBytes(13, 3000), 0o755)
	writeFile(t, sub, ".gitignore", []byte("*.tmp\n"), 0o644)
	writeFile(t, sub, "scratch.tmp", []byte("ignored in the submodule\n"), 0o644)
	if err := os.Remove(filepath.Join(sub, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(sub, "docs/notes.txt"), filepath.Join(sub, "notes-moved.txt")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(sub, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(sub, "data.bin")); err != nil {
		t.Fatal(err)
	}
	data[100] ^= 0xff // a binary change too, found as a rename by similarity
	writeFile(t, sub, "bin/data-renamed.bin", data, 0o644)
	if err := os.Chmod(filepath.Join(sub, "tools/tool.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(sub, "link")); err != nil {
		t.Fatal(err)
	}
	symlink(t, sub, "link", "tools/tool.sh")
	symlink(t, sub, "new-link", "../../escapes")
}

// applyOnClean clones origin, checks out base (an empty repository when
// base is empty) with its submodules at the commits base records (cloned
// from the origins its .gitmodules names), applies patch with a plain
// git apply at the top and returns the checkout.
func applyOnClean(t *testing.T, origin, base string, patch []byte) string {
	t.Helper()
	host := filepath.Join(t.TempDir(), "host")
	if base == "" {
		gitT(t, "/", "init", "-q", host)
	} else {
		gitT(t, "/", "clone", "-q", "--no-checkout", origin, host)
		gitT(t, host, "checkout", "-q", "--detach", base)
		gitT(t, host, "submodule", "update", "-q", "--init", "--recursive")
	}
	patchFile := filepath.Join(t.TempDir(), "guest.patch")
	if err := os.WriteFile(patchFile, patch, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, host, nil, "git", "apply", "--whitespace=nowarn", patchFile)
	return host
}

// TestExportRoundTrip prepares a guest, changes it (the submodule too),
// exports the changes and applies them to a clean checkout of the base
// commit: that checkout must then equal the guest, .git and ignored
// files aside.
func TestExportRoundTrip(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	// A clean checkout writes crlf.txt with CRLF, as its attributes ask;
	// the host's and guest's copies keep LF.
	skip := skipPrefixes(".git", fixtureSubmodule+"/.git", "guest.log", "build", "crlf.txt", fixtureSubmodule+"/scratch.tmp")

	for _, mode := range []model.WorkspacePrepareMode{model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy} {
		t.Run(string(mode), func(t *testing.T) {
			guest := filepath.Join(t.TempDir(), "r", "my-repo")
			prepareGuest(t, repo, Options{Mode: mode}, guest)
			guestEdits(t, guest)
			dirs := []string{".", fixtureSubmodule}
			before := []repoState{stateOf(t, guest), stateOf(t, filepath.Join(guest, fixtureSubmodule))}

			patch := exportPatch(t, guest, repo.HeadCommit)

			checkStates(t, guest, dirs, before)

			for _, want := range []string{"GIT binary patch", "rename from deep/a/b/c.txt", "old mode 100755", "deleted file mode 100644", "new file mode 120000",
				// Inside the submodule, paths start at the top.
				"diff --git a/modules/sub/sub.txt b/modules/sub/sub.txt",
				"rename from modules/sub/docs/notes.txt\nrename to modules/sub/notes-moved.txt",
				"rename from modules/sub/data.bin\nrename to modules/sub/bin/data-renamed.bin",
				"diff --git a/modules/sub/tools/tool.sh b/modules/sub/tools/tool.sh\nold mode 100755\nnew mode 100644",
				"deleted file mode 100644\nindex ", "--- a/modules/sub/gone.txt",
				"+++ b/modules/sub/new-link",
				"+in the submodule, changed in the guest",
			} {
				if !bytes.Contains(patch, []byte(want)) {
					t.Errorf("patch: no %q", want)
				}
			}
			for _, unwanted := range []string{"guest.log", "guest.o", "untracked.txt", "scratch.tmp", "sub-local.txt", "Subproject commit"} {
				if bytes.Contains(patch, []byte(unwanted)) {
					t.Errorf("patch: mentions %q, which is ignored or was never sent", unwanted)
				}
			}
			host := applyOnClean(t, root, repo.HeadCommit, patch)
			compareTrees(t, snapshot(t, host, skip), snapshot(t, guest, skip))
		})
	}
}

func TestExportNoCommits(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "fresh")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	writeFile(t, root, "bin.dat", randomBytes(12, 2000), 0o755)
	gitT(t, root, "add", "-A")
	repo := inspect(t, root)

	guest := filepath.Join(t.TempDir(), "r", "fresh")
	prepareGuest(t, repo, Options{}, guest)
	writeFile(t, guest, "b.txt", []byte("b\n"), 0o644)
	if err := os.Remove(filepath.Join(guest, "a.txt")); err != nil {
		t.Fatal(err)
	}
	patch := exportPatch(t, guest, "")
	host := applyOnClean(t, root, "", patch)
	compareTrees(t, snapshot(t, host, skipPrefixes(".git")), snapshot(t, guest, skipPrefixes(".git")))
}

func TestExportUnchangedIsEmpty(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "clean")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	symlink(t, root, "l", "a.txt")
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	repo := inspect(t, root)
	for _, mode := range []model.WorkspacePrepareMode{model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy} {
		t.Run(string(mode), func(t *testing.T) {
			guest := filepath.Join(t.TempDir(), "r", "clean")
			prepareGuest(t, repo, Options{Mode: mode}, guest)
			if patch := exportPatch(t, guest, repo.HeadCommit); len(patch) != 0 {
				t.Errorf("patch of an untouched guest: got %q, want empty", patch)
			}
		})
	}
}

// TestExtractReplaces checks that a second prepare replaces the guest
// copy: files of the first are gone.
func TestExtractReplaces(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "r")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	repo := inspect(t, root)
	guest := filepath.Join(t.TempDir(), "g", "r")
	prepareGuest(t, repo, Options{}, guest)
	writeFile(t, guest, "left-over.txt", []byte("x\n"), 0o644)
	prepareGuest(t, repo, Options{}, guest)
	compareTrees(t, snapshot(t, guest, skipPrefixes(".git")), snapshot(t, root, skipPrefixes(".git")))
}

// TestExtractCutShort checks that a stream cut short, empty or ending at
// a member boundary, leaves the guest copy as it was and nothing beside
// it.
func TestExtractCutShort(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "r")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	writeFile(t, root, "b.txt", randomBytes(7, 40000), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	repo := inspect(t, root)
	guestDir := t.TempDir()
	guest := filepath.Join(guestDir, "r")
	prepareGuest(t, repo, Options{}, guest)
	before := snapshot(t, guest, nil)

	writeFile(t, root, "a.txt", []byte("changed\n"), 0o644)
	plan, err := NewPlan(t.Context(), repo, Options{})
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	defer plan.Close()
	var full bytes.Buffer
	if _, err := WriteTar(t.Context(), &full, plan); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	// "before-mark" is the archive without its marker and end blocks:
	// whole members up to the last file.
	cuts := map[string][]byte{
		"empty":       nil,
		"mid-member":  full.Bytes()[:full.Len()/2],
		"before-mark": full.Bytes()[:markerOffset(t, full.Bytes())],
	}
	script, err := ExtractCommand(guest)
	if err != nil {
		t.Fatalf("ExtractCommand: %v", err)
	}
	for name, stream := range cuts {
		t.Run(name, func(t *testing.T) {
			_, err := runScript(t, script, bytes.NewReader(stream))
			if err == nil {
				t.Fatalf("extract of a stream cut short: got success, want failure")
			}
			compareTrees(t, snapshot(t, guest, nil), before)
			entries, _ := os.ReadDir(guestDir)
			if len(entries) != 1 {
				t.Errorf("beside the guest copy: got %d entries, want only the copy", len(entries))
			}
		})
	}
}

// markerOffset is the offset in archive of the header of its last
// member, doneMarker.
func markerOffset(t *testing.T, archive []byte) int {
	t.Helper()
	for off := len(archive) - 512; off >= 0; off -= 512 {
		if bytes.HasPrefix(archive[off:], []byte(doneMarker+"\x00")) {
			return off
		}
	}
	t.Fatalf("no %s header in the archive", doneMarker)
	return 0
}

// TestReservedName checks that a repository holding the archive's
// marker name at its top is refused with a clear error.
func TestReservedName(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "r")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, doneMarker, []byte("x\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	for _, mode := range []model.WorkspacePrepareMode{model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy} {
		plan, err := NewPlan(t.Context(), inspect(t, root), Options{Mode: mode})
		if err == nil {
			plan.Close()
			t.Errorf("%s: NewPlan: got success, want the reserved name refused", mode)
		} else if !strings.Contains(err.Error(), "reserved") {
			t.Errorf("%s: NewPlan: got %v, want an error naming the reserved name", mode, err)
		}
	}
}

func TestBranchCommand(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	guest := filepath.Join(t.TempDir(), "r", "my-repo")
	prepareGuest(t, repo, Options{}, guest)
	statusBefore := gitT(t, guest, "status", "--porcelain")

	for _, tc := range []struct{ name, branch, from string }{
		{"from HEAD", "banger/feature-1", ""},
		{"from a commit", "second", repo.HeadCommit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, err := BranchCommand(t.Context(), guest, tc.branch, tc.from)
			if err != nil {
				t.Fatalf("BranchCommand: %v", err)
			}
			if _, err := runScript(t, script, nil); err != nil {
				t.Fatalf("branch script: %v", err)
			}
			if got := gitT(t, guest, "symbolic-ref", "--short", "HEAD"); got != tc.branch {
				t.Errorf("guest branch: got %q, want %q", got, tc.branch)
			}
			if got := gitT(t, guest, "rev-parse", "HEAD"); got != repo.HeadCommit {
				t.Errorf("guest HEAD: got %s, want %s", got, repo.HeadCommit)
			}
			if got := gitT(t, guest, "status", "--porcelain"); got != statusBefore {
				t.Errorf("guest status: got %q, want it unchanged %q", got, statusBefore)
			}
		})
	}

	t.Run("no commits", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "e")
		gitT(t, "/", "init", "-q", empty)
		g := filepath.Join(t.TempDir(), "r", "e")
		prepareGuest(t, inspect(t, empty), Options{}, g)
		script, err := BranchCommand(t.Context(), g, "work", "")
		if err != nil {
			t.Fatalf("BranchCommand: %v", err)
		}
		if _, err := runScript(t, script, nil); err != nil {
			t.Fatalf("branch script: %v", err)
		}
		if got := gitT(t, g, "symbolic-ref", "HEAD"); got != "refs/heads/work" {
			t.Errorf("guest HEAD: got %q, want refs/heads/work", got)
		}
	})

	bad := []struct{ name, guest, branch, from string }{
		{"empty name", guest, "", ""},
		{"leading dash", guest, "-f", ""},
		{"double dot", guest, "a..b", ""},
		{"space", guest, "a b", ""},
		{"lock suffix", guest, "x.lock", ""},
		{"HEAD", guest, "HEAD", ""},
		{"colon", guest, "a:b", ""},
		{"tilde", guest, "a~1", ""},
		{"start is not an id", guest, "ok", "HEAD~1"},
		{"relative guest path", "root/x", "ok", ""},
	}
	for _, tc := range bad {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			if _, err := BranchCommand(t.Context(), tc.guest, tc.branch, tc.from); !errdefs.IsInvalid(err) {
				t.Errorf("BranchCommand(%q, %q, %q): got %v, want an invalid-argument error", tc.guest, tc.branch, tc.from, err)
			}
		})
	}
}

func TestGuestPathChecks(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/root/repo", true},
		{"/root/my repo/it's", true},
		{"/srv/work/x", true},
		{"", false},
		{"root/repo", false},
		{"/", false},
		{"/root", false},
		{"/etc", false},
		{"/root/", false},
		{"/root/../etc/x", false},
		{"/root//x", false},
		{"/root/x\x00y", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, e1 := ExtractCommand(tt.path)
			_, e2 := ExportCommand(tt.path, "")
			for i, err := range []error{e1, e2} {
				if tt.ok && err != nil || !tt.ok && !errdefs.IsInvalid(err) {
					t.Errorf("command %d for %q: got %v, want ok=%v", i, tt.path, err, tt.ok)
				}
			}
		})
	}
}

// TestShellQuote runs quoted words through a real shell.
func TestShellQuote(t *testing.T) {
	needTools(t)
	for _, s := range []string{"plain", "", "it's", "a b", "$(x) `y` \\ \" ;|&", "new\nline", "'''"} {
		t.Run(s, func(t *testing.T) {
			got := run(t, "/", nil, "sh", "-c", "printf %s "+ShellQuote(s))
			if string(got) != s {
				t.Errorf("shell read ShellQuote(%q) as %q", s, got)
			}
		})
	}
	if got := run(t, "/", nil, "sh", "-c", ShellCommand("printf '%s|' \"$0\" it\\'s")); !strings.HasSuffix(string(got), "it's|") {
		t.Errorf("ShellCommand: got %q", got)
	}
}

// TestExportForeignOwner checks that the guest scripts work on a copy
// owned by another user, which git refuses without safe.directory.
func TestExportForeignOwner(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the guest copy to another user; run the tests as root to include it")
	}
	root := filepath.Join(t.TempDir(), "r")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	repo := inspect(t, root)
	guest := filepath.Join(t.TempDir(), "g", "r")
	prepareGuest(t, repo, Options{}, guest)
	writeFile(t, guest, "b.txt", []byte("b\n"), 0o644)
	run(t, "/", nil, "chown", "-R", "12345:12345", guest)
	if _, err := runScript(t, "cd "+ShellQuote(guest)+" && git status", nil); err == nil || !strings.Contains(err.Error(), "dubious ownership") {
		t.Fatalf("plain git status on a foreign copy: got %v, want git's dubious-ownership refusal", err)
	}
	patch := exportPatch(t, guest, repo.HeadCommit)
	if !bytes.Contains(patch, []byte("+++ b/b.txt")) {
		t.Errorf("patch of a foreign-owned copy: got %q, want b.txt added", patch)
	}
	script, err := BranchCommand(t.Context(), guest, "topic", "")
	if err != nil {
		t.Fatalf("BranchCommand: %v", err)
	}
	if _, err := runScript(t, script, nil); err != nil {
		t.Errorf("branch script on a foreign copy: %v", err)
	}
}

// TestSHA256Repository runs a shallow prepare and an export round trip
// on a repository in git's SHA-256 object format.
func TestSHA256Repository(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "r256")
	gitT(t, "/", "init", "-q", "--object-format=sha256", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	writeFile(t, root, "b.bin", randomBytes(20, 4000), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	writeFile(t, root, "a.txt", []byte("a, changed\n"), 0o644)
	gitT(t, root, "commit", "-q", "-a", "-m", "two")
	writeFile(t, root, "c.txt", []byte("c\n"), 0o644)
	gitT(t, root, "add", "c.txt")
	repo := inspect(t, root)
	if len(repo.HeadCommit) != 64 {
		t.Fatalf("HEAD of a sha256 repository: got %q, want 64 hex digits", repo.HeadCommit)
	}

	guest := filepath.Join(t.TempDir(), "g", "r256")
	plan, _ := prepareGuest(t, repo, Options{}, guest)
	if len(plan.Checkout) != 2 {
		t.Errorf("checked out files: got %d, want 2 (a.txt and b.bin)", len(plan.Checkout))
	}
	run(t, guest, nil, "git", "fsck", "--full", "--strict", "--no-dangling")
	compareTrees(t, snapshot(t, guest, skipPrefixes(".git")), snapshot(t, root, skipPrefixes(".git")))

	writeFile(t, guest, "d.txt", []byte("d\n"), 0o644)
	patch := exportPatch(t, guest, repo.HeadCommit)
	host := applyOnClean(t, root, repo.HeadCommit, patch)
	compareTrees(t, snapshot(t, host, skipPrefixes(".git")), snapshot(t, guest, skipPrefixes(".git")))
}

// TestBranchFromOlderCommit makes a branch at a commit older than HEAD,
// named by a ref the host resolves: a shallow copy holds that commit as
// a second shallow root, a full copy has it anyway.
func TestBranchFromOlderCommit(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "older")
	gitT(t, "/", "init", "-q", "-b", "main", root)
	writeFile(t, root, "a.txt", []byte("one\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	gitT(t, root, "tag", "v1")
	writeFile(t, root, "a.txt", []byte("two\n"), 0o644)
	writeFile(t, root, "b.txt", []byte("bravo\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "two")
	writeFile(t, root, "c.txt", []byte("three\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "three")
	repo := inspect(t, root)
	older := gitT(t, root, "rev-parse", "HEAD~1")

	for _, mode := range []model.WorkspacePrepareMode{model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy} {
		for _, ref := range []string{"HEAD~1", older[:7], "v1"} {
			t.Run(string(mode)+" "+ref, func(t *testing.T) {
				from, err := ResolveCommit(t.Context(), repo, ref)
				if err != nil {
					t.Fatalf("ResolveCommit(%q): %v", ref, err)
				}
				want := gitT(t, root, "rev-parse", ref+"^{commit}")
				if from != want {
					t.Fatalf("ResolveCommit(%q): got %s, want %s", ref, from, want)
				}
				guest := filepath.Join(t.TempDir(), "r", "older")
				prepareGuest(t, repo, Options{Mode: mode, From: from}, guest)
				script, err := BranchCommand(t.Context(), guest, "feature", from)
				if err != nil {
					t.Fatalf("BranchCommand: %v", err)
				}
				if _, err := runScript(t, script, nil); err != nil {
					t.Fatalf("branch script: %v", err)
				}
				if got := gitT(t, guest, "symbolic-ref", "--short", "HEAD"); got != "feature" {
					t.Errorf("guest branch: got %q, want feature", got)
				}
				if got := gitT(t, guest, "rev-parse", "HEAD"); got != from {
					t.Errorf("guest HEAD: got %s, want %s", got, from)
				}
				// A clean tree follows the branch's commit.
				if got := gitT(t, guest, "status", "--porcelain"); got != "" {
					t.Errorf("guest status: got %q, want clean", got)
				}
				if _, err := os.Stat(filepath.Join(guest, "c.txt")); !os.IsNotExist(err) {
					t.Errorf("c.txt (added after %s): got %v, want it absent", ref, err)
				}
				if got := gitT(t, guest, "fsck", "--no-progress"); got != "" {
					t.Errorf("git fsck in the guest: %s", got)
				}
			})
		}
	}

	t.Run("shallow copy without From lacks the older commit", func(t *testing.T) {
		guest := filepath.Join(t.TempDir(), "r", "older")
		prepareGuest(t, repo, Options{}, guest)
		script, err := BranchCommand(t.Context(), guest, "feature", older)
		if err != nil {
			t.Fatalf("BranchCommand: %v", err)
		}
		if _, err := runScript(t, script, nil); err == nil {
			t.Errorf("branch script: got success, want git to miss commit %s", older)
		}
	})
}

func TestResolveCommitRefuses(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	plain := t.TempDir()
	for _, tc := range []struct {
		name string
		repo Repo
		ref  string
	}{
		{"empty", repo, ""},
		{"unknown", repo, "no-such-branch"},
		{"option", repo, "--all"},
		{"newline", repo, "HEAD\nHEAD"},
		{"too far back", repo, "HEAD~50"},
		{"a tree", repo, "HEAD^{tree}"},
		{"plain directory", inspect(t, plain), "HEAD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveCommit(t.Context(), tc.repo, tc.ref)
			if !errdefs.IsInvalid(err) {
				t.Errorf("ResolveCommit(%q): got %q, %v; want an invalid-argument error", tc.ref, got, err)
			}
		})
	}
}

// TestExportBaseRef exports against a ref the guest copy resolves, and
// refuses one it does not hold.
func TestExportBaseRef(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	guest := filepath.Join(t.TempDir(), "r", "my-repo")
	prepareGuest(t, repo, Options{}, guest)
	guestEdits(t, guest)

	byID := exportPatch(t, guest, repo.HeadCommit)
	// The guest committed on its branch, so HEAD~1 is the prepare base.
	byRef := exportPatch(t, guest, "HEAD~1")
	if !bytes.Equal(byRef, byID) {
		t.Errorf("export against HEAD~1: the patch differs from the one against %s", repo.HeadCommit)
	}
	pwned := filepath.Join(t.TempDir(), "pwned")
	for _, ref := range []string{"no-such-ref", "HEAD; touch " + pwned, "$(touch " + pwned + ")"} {
		script, err := ExportCommand(guest, ref)
		if err != nil {
			t.Fatalf("ExportCommand(%q): %v", ref, err)
		}
		out, err := runScript(t, script, nil)
		if want := fmt.Sprintf("base commit %q is not a commit in the guest copy", ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("export against %q: got %q, %v; want %q", ref, out, err, want)
		}
	}
	if _, err := os.Stat(pwned); !os.IsNotExist(err) {
		t.Errorf("a base ref ran as shell code: %s exists (%v)", pwned, err)
	}
	for _, bad := range []string{"-p", "a\nb"} {
		if _, err := ExportCommand(guest, bad); !errdefs.IsInvalid(err) {
			t.Errorf("ExportCommand(%q): got %v, want an invalid-argument error", bad, err)
		}
	}
}
