//go:build integration

package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

func TestWriteTree(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "work.ext4")
	if err := CreateWorkDisk(ctx, "", img, 64<<20); err != nil {
		t.Fatalf("CreateWorkDisk: %v", err)
	}
	src := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one, two, empty := src("one", "first\n"), src("two with space", "second content\n"), src("empty", "")

	entries := []TreeEntry{
		{Path: "/d d", Kind: TreeDir, Mode: 0o750, UID: 0, GID: 0},
		{Path: "/d d/héllo ☃", Kind: TreeFile, Mode: 0o640, Source: one},
		{Path: "/d d/-rf", Kind: TreeFile, Mode: 0o600, Source: two},
		{Path: "/d d/empty", Kind: TreeFile, Mode: 0o644, Source: empty},
		{Path: "/d d/link", Kind: TreeSymlink, Target: "../outside target"},
		{Path: "/d d/sub", Kind: TreeDir, Mode: 0o700, UID: 7, GID: 8},
		{Path: `/d d/sub/back\slash`, Kind: TreeFile, Mode: 0o755 | os.ModeSetuid, UID: 7, GID: 8, Source: one},
	}
	if err := WriteTree(ctx, img, entries); err != nil {
		t.Fatalf("WriteTree: %v", err)
	}
	wantInfo := map[string]inodeInfo{
		"/d d":                {Exists: true, Type: "directory", Mode: 0o750},
		"/d d/héllo ☃":        {Exists: true, Type: "regular", Mode: 0o640, Size: 6},
		"/d d/-rf":            {Exists: true, Type: "regular", Mode: 0o600, Size: 15},
		"/d d/empty":          {Exists: true, Type: "regular", Mode: 0o644, Size: 0},
		"/d d/link":           {Exists: true, Type: "symlink", Mode: 0o777, Size: int64(len("../outside target"))},
		"/d d/sub":            {Exists: true, Type: "directory", Mode: 0o700, UID: 7, GID: 8},
		`/d d/sub/back\slash`: {Exists: true, Type: "regular", Mode: 0o4755, UID: 7, GID: 8, Size: 6},
	}
	for p, want := range wantInfo {
		got := statPath(t, img, p)
		if want.Type == "directory" {
			got.Size = 0
		}
		if got != want {
			t.Errorf("stat %q: got %+v, want %+v", p, got, want)
		}
	}
	if got, err := ReadFile(ctx, img, "/d d/-rf"); err != nil || string(got) != "second content\n" {
		t.Errorf("ReadFile /d d/-rf: got %q, %v; want %q", got, err, "second content\n")
	}

	t.Run("replace and merge", func(t *testing.T) {
		entries := []TreeEntry{
			{Path: "/d d", Kind: TreeDir, Mode: 0o755, KeepExisting: true},
			{Path: "/d d/-rf", Kind: TreeSymlink, Target: "empty"},
			{Path: "/d d/link", Kind: TreeFile, Mode: 0o600, Source: two},
			{Path: "/d d/new", Kind: TreeFile, Mode: 0o600, Source: one},
		}
		if err := WriteTree(ctx, img, entries); err != nil {
			t.Fatalf("WriteTree: %v", err)
		}
		checks := map[string]inodeInfo{
			"/d d":         {Exists: true, Type: "directory", Mode: 0o750}, // kept
			"/d d/-rf":     {Exists: true, Type: "symlink", Mode: 0o777, Size: 5},
			"/d d/link":    {Exists: true, Type: "regular", Mode: 0o600, Size: 15},
			"/d d/new":     {Exists: true, Type: "regular", Mode: 0o600, Size: 6},
			"/d d/héllo ☃": {Exists: true, Type: "regular", Mode: 0o640, Size: 6}, // untouched
		}
		for p, want := range checks {
			got := statPath(t, img, p)
			if want.Type == "directory" {
				got.Size = 0
			}
			if got != want {
				t.Errorf("stat %q: got %+v, want %+v", p, got, want)
			}
		}
	})

	t.Run("conflict writes nothing", func(t *testing.T) {
		entries := []TreeEntry{
			{Path: "/fresh", Kind: TreeFile, Mode: 0o600, Source: one},
			{Path: "/d d", Kind: TreeDir, Mode: 0o755, KeepExisting: true},
			{Path: "/d d/sub", Kind: TreeFile, Mode: 0o600, Source: one},
		}
		err := WriteTree(ctx, img, entries)
		if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "/d d/sub exists and is a directory") {
			t.Fatalf("WriteTree: got %v, want an ErrInvalid error naming /d d/sub", err)
		}
		if got := statPath(t, img, "/fresh"); got.Exists {
			t.Errorf("stat /fresh: got %+v, want it absent", got)
		}
	})

	t.Run("symlink where a directory goes", func(t *testing.T) {
		entries := []TreeEntry{
			{Path: "/d d", Kind: TreeDir, KeepExisting: true},
			{Path: "/d d/-rf", Kind: TreeDir, KeepExisting: true},
			{Path: "/d d/-rf/x", Kind: TreeFile, Source: one},
		}
		err := WriteTree(ctx, img, entries)
		if err == nil || !strings.Contains(err.Error(), "/d d/-rf exists and is a symlink, not a directory") {
			t.Fatalf("WriteTree: got %v, want an error naming the symlink", err)
		}
	})

	t.Run("bad name writes nothing", func(t *testing.T) {
		entries := []TreeEntry{
			{Path: "/ok", Kind: TreeFile, Source: one},
			{Path: "/bad\nwrite \"/etc/shadow\" \"x\"", Kind: TreeFile, Source: one},
		}
		err := WriteTree(ctx, img, entries)
		if err == nil || !errdefs.IsInvalid(err) {
			t.Fatalf("WriteTree: got %v, want an ErrInvalid error", err)
		}
		if got := statPath(t, img, "/ok"); got.Exists {
			t.Errorf("stat /ok: got %+v, want it absent", got)
		}
	})

	fsckClean(t, img)
}
