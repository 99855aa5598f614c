package workspace

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFingerprint(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "fp")
	gitT(t, "/", "init", "-q", root)
	writeFile(t, root, "a.txt", []byte("a\n"), 0o644)
	writeFile(t, root, "b.txt", []byte("b\n"), 0o644)
	gitT(t, root, "add", "-A")
	gitT(t, root, "commit", "-q", "-m", "one")
	repo := inspect(t, root)

	fp := func() string {
		t.Helper()
		s, err := Fingerprint(t.Context(), repo)
		if err != nil {
			t.Fatalf("Fingerprint: %v", err)
		}
		return s
	}
	base := fp()

	// Each step is applied on top of the previous ones.
	steps := []struct {
		name    string
		change  func()
		changed bool // compared with the fingerprint before the step
	}{
		{"nothing", func() {}, false},
		{"untracked file", func() { writeFile(t, root, "u.txt", []byte("u\n"), 0o644) }, false},
		{"timestamps only", func() {
			now := time.Now().Add(time.Hour)
			os.Chtimes(filepath.Join(root, "a.txt"), now, now)
		}, false},
		{"unstaged edit", func() { writeFile(t, root, "a.txt", []byte("a2\n"), 0o644) }, true},
		{"second edit of the same file", func() { writeFile(t, root, "a.txt", []byte("a3\n"), 0o644) }, true},
		{"staging it", func() { gitT(t, root, "add", "a.txt") }, true},
		{"mode change", func() { os.Chmod(filepath.Join(root, "b.txt"), 0o755) }, true},
		{"deletion", func() { os.Remove(filepath.Join(root, "b.txt")) }, true},
		{"commit", func() { gitT(t, root, "commit", "-q", "-a", "-m", "two") }, true},
		{"branch switch to the same commit", func() { gitT(t, root, "checkout", "-q", "-b", "other") }, true},
	}
	prev := base
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.change()
			got := fp()
			if changed := got != prev; changed != s.changed {
				t.Errorf("fingerprint changed: got %v, want %v", changed, s.changed)
			}
			prev = got
		})
	}

	t.Run("reverting an edit restores it", func(t *testing.T) {
		before := fp()
		writeFile(t, root, "a.txt", []byte("temporary\n"), 0o644)
		if fp() == before {
			t.Fatalf("fingerprint after an edit: unchanged, want changed")
		}
		writeFile(t, root, "a.txt", []byte("a3\n"), 0o644)
		if got := fp(); got != before {
			t.Errorf("fingerprint after reverting: got %s, want %s", got, before)
		}
	})

	t.Run("no commits", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "e")
		gitT(t, "/", "init", "-q", empty)
		r := inspect(t, empty)
		first, err := Fingerprint(t.Context(), r)
		if err != nil {
			t.Fatalf("Fingerprint: %v", err)
		}
		writeFile(t, empty, "x", []byte("x\n"), 0o644)
		gitT(t, empty, "add", "x")
		second, err := Fingerprint(t.Context(), r)
		if err != nil {
			t.Fatalf("Fingerprint: %v", err)
		}
		if first == second {
			t.Errorf("fingerprint after staging a first file: unchanged, want changed")
		}
	})

	t.Run("plain directory", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "x", []byte("x\n"), 0o644)
		r := inspect(t, dir)
		first, err := Fingerprint(t.Context(), r)
		if err != nil {
			t.Fatalf("Fingerprint: %v", err)
		}
		writeFile(t, dir, "y", []byte("y\n"), 0o644)
		second, err := Fingerprint(t.Context(), r)
		if err != nil {
			t.Fatalf("Fingerprint: %v", err)
		}
		if first == second {
			t.Errorf("fingerprint after adding a file: unchanged, want changed")
		}
	})
}
