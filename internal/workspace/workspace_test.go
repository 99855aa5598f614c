package workspace

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
)

func TestInspect(t *testing.T) {
	needTools(t)
	base := t.TempDir()

	repo := filepath.Join(base, "Proj ect")
	gitT(t, base, "init", "-q", repo)
	writeFile(t, repo, "sub/dir/f.txt", []byte("f\n"), 0o644)
	gitT(t, repo, "add", "-A")
	gitT(t, repo, "commit", "-q", "-m", "one")
	head := gitT(t, repo, "rev-parse", "HEAD")

	detached := filepath.Join(base, "detached")
	gitT(t, base, "clone", "-q", repo, detached)
	gitT(t, detached, "checkout", "-q", "--detach", "HEAD")

	empty := filepath.Join(base, "empty")
	gitT(t, base, "init", "-q", "-b", "trunk", empty)

	plain := filepath.Join(base, "plain")
	writeFile(t, plain, "x.txt", []byte("x\n"), 0o644)
	writeFile(t, base, "file.txt", []byte("x\n"), 0o644)
	symlink(t, base, "repo-link", "Proj ect")

	tests := []struct {
		name string
		path string
		want Repo
	}{
		{"repository top", repo, Repo{Path: repo, Root: repo, Name: "Proj-ect", Git: true, HeadCommit: head, Branch: "main"}},
		{"subdirectory resolves to the top", filepath.Join(repo, "sub", "dir"),
			Repo{Path: filepath.Join(repo, "sub", "dir"), Root: repo, Name: "Proj-ect", Git: true, HeadCommit: head, Branch: "main"}},
		{"symlink to a repository", filepath.Join(base, "repo-link"),
			Repo{Path: filepath.Join(base, "repo-link"), Root: repo, Name: "Proj-ect", Git: true, HeadCommit: head, Branch: "main"}},
		{"detached HEAD has no branch", detached, Repo{Path: detached, Root: detached, Name: "detached", Git: true, HeadCommit: head}},
		{"no commits", empty, Repo{Path: empty, Root: empty, Name: "empty", Git: true, Branch: "trunk"}},
		{"plain directory", plain, Repo{Path: plain, Root: plain, Name: "plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := inspect(t, tt.path)
			if got != tt.want {
				t.Errorf("Inspect: got %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("relative path is made absolute", func(t *testing.T) {
		t.Chdir(repo)
		got := inspect(t, "sub")
		if want := filepath.Join(repo, "sub"); got.Path != want || got.Root != repo {
			t.Errorf("Inspect(sub): got Path %q Root %q, want %q and %q", got.Path, got.Root, want, repo)
		}
	})

	errTests := []struct {
		name    string
		path    string
		wantMsg string
		kind    error
	}{
		{"missing path", filepath.Join(base, "nope"), `path "` + filepath.Join(base, "nope") + `" does not exist`, errdefs.ErrNotFound},
		{"a file", filepath.Join(base, "file.txt"), `path "` + filepath.Join(base, "file.txt") + `" is not a directory`, errdefs.ErrInvalid},
		{"empty path", "", "path is empty", errdefs.ErrInvalid},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(context.Background(), tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || !errors.Is(err, tt.kind) {
				t.Errorf("Inspect(%q): got error %v, want one saying %q of kind %v", tt.path, err, tt.wantMsg, tt.kind)
			}
		})
	}
}

func TestSafeName(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "banger", "banger"},
		{"keeps dots and underscores", "my_repo.v2", "my_repo.v2"},
		{"spaces become dashes", "my repo", "my-repo"},
		{"runs collapse", "a  //  b", "a-b"},
		{"non-ASCII replaced", "café-ü", "caf"},
		{"non-ASCII inside", "naïve", "na-ve"},
		{"only non-ASCII", "проект", "repo"},
		{"leading dot and dash trimmed", ".-hidden", "hidden"},
		{"dot dot", "..", "repo"},
		{"empty", "", "repo"},
		{"newline", "a\nb", "a-b"},
		{"long cut to 64", strings.Repeat("x", 100), strings.Repeat("x", 64)},
		{"cut does not end in dash", strings.Repeat("x", 63) + " y", strings.Repeat("x", 63)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SafeName(tt.in); got != tt.want {
				t.Errorf("SafeName(%q): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    model.WorkspacePrepareMode
		wantErr bool
	}{
		{"", model.WorkspacePrepareModeShallowOverlay, false},
		{"shallow_overlay", model.WorkspacePrepareModeShallowOverlay, false},
		{"full_copy", model.WorkspacePrepareModeFullCopy, false},
		{"metadata_only", model.WorkspacePrepareModeMetadataOnly, false},
		{"full", "", true},
		{"SHALLOW_OVERLAY", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if got != tt.want || (err != nil) != tt.wantErr || (err != nil && !errdefs.IsInvalid(err)) {
				t.Errorf("ParseMode(%q): got %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestResult(t *testing.T) {
	repo := Repo{Path: "/h/r/sub", Root: "/h/r", Name: "r", Git: true, HeadCommit: "abc", Branch: "main"}
	got := Result(repo, model.WorkspacePrepareModeFullCopy, DefaultGuestPath(repo))
	want := model.WorkspacePrepareResult{SourcePath: "/h/r/sub", RepoRoot: "/h/r", RepoName: "r", GuestPath: "/root/r",
		Mode: model.WorkspacePrepareModeFullCopy, HeadCommit: "abc", CurrentBranch: "main", BaseCommit: "abc"}
	if got != want {
		t.Errorf("Result: got %+v, want %+v", got, want)
	}
}
