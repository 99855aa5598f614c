package workspace

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randomBytes returns n bytes from a seeded generator (NUL bytes
// included), so a test's binary files are the same on every run.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Paths of the fixture repository that are not part of its tracked
// working tree.
var (
	fixtureUntracked = []string{"untracked.txt", "untracked dir/u.bin", "typechange"}
	fixtureIgnored   = []string{"debug.log", "build"}
	fixtureNested    = "nested" // an untracked repository of its own
	fixtureSubmodule = "modules/sub"
	// fixtureLong is too long for a ustar header (changed on the host, so
	// that every mode sends it).
	fixtureLong = "long/" + strings.Repeat("directory-name-", 8) + "/" + strings.Repeat("ü", 60) + ".txt"
)

// fixtureRepo builds a repository at DIR/"my repo" with a submodule (its
// origin at DIR/sub-origin), three commits, and a working tree that
// differs from HEAD in every way git knows: unstaged and staged edits, a
// staged new file, a deletion, a staged rename, a mode change, a binary
// change, an edit inside the submodule; plus untracked, ignored and
// nested-repository files.
func fixtureRepo(t testing.TB) string {
	t.Helper()
	base := t.TempDir()

	sub := filepath.Join(base, "sub-origin")
	writeFile(t, sub, "sub.txt", []byte("in the submodule\n"), 0o644)
	writeFile(t, sub, "tools/tool.sh", []byte("#!/bin/sh\necho tool\n"), 0o755)
	writeFile(t, sub, "data.bin", randomBytes(6, 20<<10), 0o644)
	writeFile(t, sub, "docs/notes.txt", []byte("notes of the submodule, long enough to be found as a rename\n"), 0o644)
	writeFile(t, sub, "gone.txt", []byte("deleted in the guest\n"), 0o644)
	symlink(t, sub, "link", "sub.txt")
	gitT(t, base, "init", "-q", sub)
	gitT(t, sub, "add", "-A")
	gitT(t, sub, "commit", "-q", "-m", "sub")

	root := filepath.Join(base, "my repo")
	gitT(t, base, "init", "-q", root)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"README.md", []byte("hello\n"), 0o644},
		{"src/a.txt", []byte("alpha\n"), 0o644},
		{"b.txt", []byte("bravo\n"), 0o644},
		{"bin/blob.bin", randomBytes(1, 64<<10), 0o644},
		{"bin/same.bin", randomBytes(2, 3000), 0o644},
		{"run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755},
		{"mode.txt", []byte("mode\n"), 0o644},
		{"gone.txt", []byte("gone\n"), 0o644},
		{"old-name.txt", []byte("rename me, I am long enough to be found as a rename\n"), 0o644},
		{"dossier/café ünï.txt", []byte("unicode\n"), 0o644},
		{"with space.txt", []byte("space\n"), 0o644},
		{"new\nline.txt", []byte("newline\n"), 0o644},
		{"carriage\r", []byte("cr\n"), 0o644},
		{`"leading quote.txt`, []byte("quote\n"), 0o644},
		{`back\slash.txt`, []byte("backslash\n"), 0o644},
		{"deep/a/b/c.txt", []byte("deep\n"), 0o644},
		{"dup1.txt", []byte("duplicate\n"), 0o644},
		{"dup2.txt", []byte("duplicate\n"), 0o644},
		{"empty.txt", nil, 0o644},
		{".gitignore", []byte("*.log\nbuild/\n"), 0o644},
		{"crlf.txt", []byte("one\ntwo\n"), 0o644},
		{"typechange", []byte("a file in HEAD, a directory now\n"), 0o644},
		{fixtureLong, []byte("long\n"), 0o644},
	}
	for _, f := range files {
		writeFile(t, root, f.path, f.data, f.mode)
	}
	symlink(t, root, "link-in", "src/a.txt")
	symlink(t, root, "link-dir", "src")
	symlink(t, root, "link-out", "/etc/hostname")
	symlink(t, root, "link-up", "../../outside")
	symlink(t, root, "link-dangling", "does/not/exist")
	gitT(t, root, "add", "-A")
	writeFile(t, root, "keep.log", []byte("tracked although ignored\n"), 0o644)
	gitT(t, root, "add", "-f", "keep.log")
	gitT(t, root, "commit", "-q", "-m", "first")

	writeFile(t, root, "src/a.txt", []byte("alpha 2\n"), 0o644)
	// A checkout would now write crlf.txt with CRLF; the host's copy keeps
	// LF, and so must the guest's.
	writeFile(t, root, ".gitattributes", []byte("crlf.txt eol=crlf\n"), 0o644)
	gitT(t, root, "add", ".gitattributes")
	gitT(t, root, "commit", "-q", "-a", "-m", "second")
	gitT(t, root, "submodule", "add", "-q", sub, fixtureSubmodule)
	gitT(t, root, "commit", "-q", "-m", "third: submodule")

	// The working tree drifts from HEAD.
	writeFile(t, root, "src/a.txt", []byte("alpha 3, unstaged\n"), 0o644)
	writeFile(t, root, "b.txt", []byte("bravo, staged\n"), 0o644)
	gitT(t, root, "add", "b.txt")
	writeFile(t, root, "staged-new.txt", []byte("staged new\n"), 0o644)
	gitT(t, root, "add", "staged-new.txt")
	os.Remove(filepath.Join(root, "gone.txt"))
	gitT(t, root, "mv", "old-name.txt", "new-name.txt")
	os.Chmod(filepath.Join(root, "mode.txt"), 0o755)
	writeFile(t, root, "bin/blob.bin", randomBytes(3, 64<<10), 0o644)
	os.Remove(filepath.Join(root, "typechange"))
	writeFile(t, root, "typechange/inner.txt", []byte("untracked below a deleted file\n"), 0o644)
	writeFile(t, root, fixtureSubmodule+"/sub-local.txt", []byte("untracked in the submodule\n"), 0o644)
	writeFile(t, root, fixtureSubmodule+"/sub.txt", []byte("in the submodule, changed on the host\n"), 0o644)

	writeFile(t, root, fixtureLong, []byte("long, changed\n"), 0o644)
	writeFile(t, root, "untracked.txt", []byte("untracked\n"), 0o644)
	writeFile(t, root, "untracked dir/u.bin", randomBytes(4, 100), 0o644)
	writeFile(t, root, "debug.log", []byte("ignored\n"), 0o644)
	writeFile(t, root, "build/out.bin", randomBytes(5, 100), 0o644)
	gitT(t, base, "init", "-q", filepath.Join(root, fixtureNested))
	writeFile(t, root, fixtureNested+"/n.txt", []byte("nested\n"), 0o644)
	return root
}

// fixtureTracked is the fixture's tracked working tree as a snapshot:
// everything but .git, untracked, ignored and nested-repository files,
// the submodule's .git file, and untracked files unless withUntracked.
func fixtureTracked(t testing.TB, root string, withUntracked bool) map[string]node {
	t.Helper()
	skip := []string{".git", fixtureNested, fixtureSubmodule + "/.git"}
	skip = append(skip, fixtureIgnored...)
	if !withUntracked {
		skip = append(skip, fixtureUntracked...)
		skip = append(skip, fixtureSubmodule+"/sub-local.txt")
	}
	return snapshot(t, root, skipPrefixes(skip...))
}
