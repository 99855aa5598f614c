package workspace

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/testutil/gitgen"
)

func TestShallowOverlay(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)

	for _, untracked := range []bool{false, true} {
		name := "tracked only"
		if untracked {
			name = "with untracked"
		}
		t.Run(name, func(t *testing.T) {
			guest := filepath.Join(t.TempDir(), "root", "my-repo")
			plan, _ := prepareGuest(t, repo, Options{IncludeUntracked: untracked}, guest)

			// Files equal to HEAD's come out of the .git; changed ones
			// (content or exec bit) travel in the archive.
			sent, checkedOut := map[string]bool{}, map[string]bool{}
			for _, e := range plan.Entries {
				sent[e.Path] = true
			}
			for _, e := range plan.Checkout {
				checkedOut[e.Path] = true
			}
			for _, p := range []string{"README.md", "bin/same.bin", "run.sh", "crlf.txt", "new\nline.txt", "dup1.txt", "dup2.txt", fixtureSubmodule + "/data.bin", fixtureSubmodule + "/tools/tool.sh"} {
				if !checkedOut[p] || sent[p] {
					t.Errorf("%q: got checked out %v, sent %v; want checked out only", p, checkedOut[p], sent[p])
				}
			}
			for _, p := range []string{"src/a.txt", "b.txt", "mode.txt", "bin/blob.bin", "new-name.txt", "staged-new.txt", "link-in", fixtureSubmodule + "/sub.txt"} {
				if checkedOut[p] || !sent[p] {
					t.Errorf("%q: got checked out %v, sent %v; want sent only", p, checkedOut[p], sent[p])
				}
			}

			compareTrees(t, snapshot(t, guest, skipPrefixes(".git", fixtureSubmodule+"/.git")), fixtureTracked(t, root, untracked))

			checks := []struct {
				name string
				args []string
				want string
			}{
				{"HEAD is the host's", []string{"rev-parse", "HEAD"}, repo.HeadCommit},
				{"same branch", []string{"symbolic-ref", "--short", "HEAD"}, "main"},
				{"history depth 1", []string{"rev-list", "--count", "HEAD"}, "1"},
				{"shallow", []string{"rev-parse", "--is-shallow-repository"}, "true"},
				{"index matches HEAD", []string{"diff", "--cached", "--name-only", "HEAD"}, ""},
				{"unstaged host edit shows as a change",
					[]string{"diff", "HEAD", "--", "src/a.txt"}, gitT(t, root, "diff", "HEAD", "--", "src/a.txt")},
				{"binary change shows as a change",
					[]string{"diff", "--binary", "HEAD", "--", "bin/blob.bin"}, gitT(t, root, "diff", "--binary", "HEAD", "--", "bin/blob.bin")},
				{"no origin remote", []string{"remote"}, ""},
			}
			for _, c := range checks {
				if got := gitT(t, guest, c.args...); got != c.want {
					t.Errorf("%s: git %q: got %.200q, want %.200q", c.name, c.args, got, c.want)
				}
			}
			if got := run(t, guest, nil, "git", "cat-file", "blob", "HEAD:bin/same.bin"); !bytes.Equal(got, randomBytes(2, 3000)) {
				t.Errorf("HEAD blob of an unchanged binary file: got %d bytes, want the file's 3000", len(got))
			}
			// Every object the index and HEAD need is there once the guest
			// rebuilt the blobs it was not sent.
			run(t, guest, nil, "git", "fsck", "--full", "--strict", "--no-dangling")
			for _, p := range []string{checkoutFile, "info"} {
				if _, err := os.Stat(filepath.Join(guest, ".git", p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf(".git/%s: got stat error %v, want it removed", p, err)
				}
			}
			// The submodule got a one-commit .git of the commit HEAD
			// records for it, its history did not travel.
			gsub, hsub := filepath.Join(guest, fixtureSubmodule), filepath.Join(root, fixtureSubmodule)
			subChecks := []struct {
				name string
				args []string
				want string
			}{
				{"HEAD is the recorded commit", []string{"rev-parse", "HEAD"}, gitT(t, root, "rev-parse", "HEAD:"+fixtureSubmodule)},
				{"detached", []string{"rev-parse", "--symbolic-full-name", "HEAD"}, "HEAD"},
				{"history depth 1", []string{"rev-list", "--count", "HEAD"}, "1"},
				{"top of its own repository", []string{"rev-parse", "--show-prefix"}, ""},
				{"index matches HEAD", []string{"diff", "--cached", "--name-only", "HEAD"}, ""},
				{"status as on the host", []string{"status", "--porcelain", "--untracked-files=no"}, gitT(t, hsub, "status", "--porcelain", "--untracked-files=no")},
			}
			for _, c := range subChecks {
				if got := gitT(t, gsub, c.args...); got != c.want {
					t.Errorf("submodule: %s: git %q: got %.200q, want %.200q", c.name, c.args, got, c.want)
				}
			}
			run(t, gsub, nil, "git", "fsck", "--full", "--strict", "--no-dangling")
			for _, p := range []string{checkoutFile, "info"} {
				if _, err := os.Stat(filepath.Join(gsub, ".git", p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("submodule .git/%s: got stat error %v, want it removed", p, err)
				}
			}
			if _, err := os.Stat(filepath.Join(guest, ".git", submodulesFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf(".git/%s: got stat error %v, want it removed", submodulesFile, err)
			}
			// The superproject sees the submodule as the host does.
			if got, want := gitT(t, guest, "status", "--porcelain", "--untracked-files=no", "--", fixtureSubmodule), gitT(t, root, "status", "--porcelain", "--untracked-files=no", "--", fixtureSubmodule); got != want {
				t.Errorf("guest status of the submodule: got %q, want %q", got, want)
			}
		})
	}
}

// TestShallowGitIsSmall checks that a long history does not travel: a
// repository whose history is many times its tree sends little more than
// one copy of the tree.
func TestShallowGitIsSmall(t *testing.T) {
	needTools(t)
	spec := gitgen.Spec{Files: 40, FileSize: 16 << 10, Commits: 200, Churn: 4} // 640 KiB tree, 12.5 MiB history
	root := filepath.Join(t.TempDir(), "history")
	gitgen.Generate(t, root, spec)
	writeFile(t, root, "data/f0001.bin", randomBytes(9, 16<<10), 0o644) // one changed file: its HEAD blob must travel
	repo := inspect(t, root)

	guest := filepath.Join(t.TempDir(), "g", "history")
	plan, st := prepareGuest(t, repo, Options{}, guest)
	var gitBytes int64
	for _, e := range plan.Entries {
		if strings.HasPrefix(e.Path, ".git/") {
			gitBytes += e.Size
		}
	}
	tracked := spec.TrackedBytes()
	if max := tracked + tracked/20 + 64<<10; gitBytes > max { // HEAD's blobs, incompressible, and metadata
		t.Errorf("shallow .git: got %d bytes, want at most %d (one copy of the tree)", gitBytes, max)
	}
	if ratio := float64(st.ArchiveBytes) / float64(tracked); ratio > 1.2 {
		t.Errorf("bytes sent: got %d (%.3fx the %d tracked bytes), want at most 1.2x", st.ArchiveBytes, ratio, tracked)
	}
	run(t, guest, nil, "git", "fsck", "--full", "--strict", "--no-dangling")
	if got, want := gitT(t, guest, "diff", "--stat", "HEAD"), gitT(t, root, "diff", "--stat", "HEAD"); got != want {
		t.Errorf("guest diff --stat: got %q, want %q", got, want)
	}
}

func TestFullCopy(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	guest := filepath.Join(t.TempDir(), "r", "my-repo")
	prepareGuest(t, repo, Options{Mode: model.WorkspacePrepareModeFullCopy}, guest)

	compareTrees(t, snapshot(t, guest, skipPrefixes(".git", fixtureSubmodule+"/.git")), fixtureTracked(t, root, false))
	compareTrees(t, snapshot(t, filepath.Join(guest, ".git"), nil), snapshot(t, filepath.Join(root, ".git"), nil))
	if got, want := gitT(t, guest, "status", "--porcelain"), gitT(t, root, "status", "--porcelain", "--untracked-files=no"); got != want {
		t.Errorf("guest status: got %q, want %q", got, want)
	}
	if got, want := gitT(t, guest, "rev-list", "--count", "HEAD"), "3"; got != want {
		t.Errorf("guest history: got %s commits, want %s", got, want)
	}
	// The submodule is a working repository in the guest.
	if got, want := gitT(t, filepath.Join(guest, fixtureSubmodule), "rev-parse", "HEAD"),
		gitT(t, filepath.Join(root, fixtureSubmodule), "rev-parse", "HEAD"); got != want {
		t.Errorf("guest submodule HEAD: got %s, want %s", got, want)
	}
	run(t, guest, nil, "git", "fsck", "--full", "--no-dangling")
}

func TestPlainDirectory(t *testing.T) {
	needTools(t)
	dir := filepath.Join(t.TempDir(), "plain dir")
	writeFile(t, dir, "a.txt", []byte("a\n"), 0o644)
	writeFile(t, dir, "x/run.sh", []byte("#!/bin/sh\n"), 0o755)
	writeFile(t, dir, "x/.hidden", []byte("h\n"), 0o600)
	symlink(t, dir, "x/link", "../a.txt")
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo := inspect(t, dir)

	t.Run("shallow_overlay refused", func(t *testing.T) {
		_, err := NewPlan(t.Context(), repo, Options{})
		want := `"` + dir + `" is not a git repository; use --mode full_copy to copy a plain directory`
		if err == nil || !errdefs.IsInvalid(err) || err.Error() != want {
			t.Errorf("NewPlan: got %v, want invalid %q", err, want)
		}
	})
	t.Run("full_copy copies everything", func(t *testing.T) {
		guest := filepath.Join(t.TempDir(), "r", "plain-dir")
		prepareGuest(t, repo, Options{Mode: model.WorkspacePrepareModeFullCopy}, guest)
		compareTrees(t, snapshot(t, guest, nil), snapshot(t, dir, nil))
		if fi, err := os.Stat(filepath.Join(guest, "empty")); err != nil || !fi.IsDir() {
			t.Errorf("empty directory: got %v, want it copied", err)
		}
	})
}

func TestNoCommits(t *testing.T) {
	needTools(t)
	root := filepath.Join(t.TempDir(), "fresh")
	gitT(t, "/", "init", "-q", "-b", "start", root)
	writeFile(t, root, "staged.txt", []byte("staged\n"), 0o644)
	writeFile(t, root, "tool.sh", []byte("#!/bin/sh\n"), 0o755)
	gitT(t, root, "add", "-A")
	writeFile(t, root, "untracked.txt", []byte("u\n"), 0o644)
	repo := inspect(t, root)

	guest := filepath.Join(t.TempDir(), "r", "fresh")
	prepareGuest(t, repo, Options{}, guest)
	compareTrees(t, snapshot(t, guest, skipPrefixes(".git")), snapshot(t, root, skipPrefixes(".git", "untracked.txt")))
	if got := gitT(t, guest, "symbolic-ref", "HEAD"); got != "refs/heads/start" {
		t.Errorf("guest HEAD: got %q, want refs/heads/start", got)
	}
	if got := gitT(t, guest, "status", "--porcelain"); got != "?? staged.txt\n?? tool.sh" {
		t.Errorf("guest status: got %q, want both files untracked", got)
	}
}

func TestMetadataOnly(t *testing.T) {
	needTools(t)
	repo := inspect(t, fixtureRepo(t))
	plan, err := NewPlan(t.Context(), repo, Options{Mode: model.WorkspacePrepareModeMetadataOnly, IncludeUntracked: true})
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	if len(plan.Entries) != 0 || plan.TotalBytes != 0 {
		t.Errorf("metadata_only plan: got %d entries, %d bytes; want none", len(plan.Entries), plan.TotalBytes)
	}
}

func TestNewPlanUnknownMode(t *testing.T) {
	_, err := NewPlan(t.Context(), Repo{Git: true}, Options{Mode: "deep_copy"})
	if !errdefs.IsInvalid(err) {
		t.Errorf("NewPlan with mode deep_copy: got %v, want an invalid-argument error", err)
	}
}

// TestListMatchesArchive checks that the dry-run list is exactly what
// WriteTar sends, member by member, and that the archive is the same on
// every run.
func TestListMatchesArchive(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	repo := inspect(t, root)
	for _, mode := range []model.WorkspacePrepareMode{model.WorkspacePrepareModeShallowOverlay, model.WorkspacePrepareModeFullCopy} {
		t.Run(string(mode), func(t *testing.T) {
			plan, err := NewPlan(t.Context(), repo, Options{Mode: mode, IncludeUntracked: true})
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			defer plan.Close()
			var buf bytes.Buffer
			st, err := WriteTar(t.Context(), &buf, plan)
			if err != nil {
				t.Fatalf("WriteTar: %v", err)
			}
			if st.ArchiveBytes != int64(buf.Len()) || st.ContentBytes != plan.TotalBytes {
				t.Errorf("stats: got %d archive bytes and %d content bytes, want %d and %d", st.ArchiveBytes, st.ContentBytes, buf.Len(), plan.TotalBytes)
			}

			tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
			i := 0
			for ; ; i++ {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("read archive: %v", err)
				}
				if i == len(plan.Entries) {
					if hdr.Name != doneMarker || hdr.Size != 0 {
						t.Errorf("last member: got %q size %d, want the empty %s", hdr.Name, hdr.Size, doneMarker)
					}
					continue
				}
				if i > len(plan.Entries) {
					t.Fatalf("archive member %d %q: not in the plan", i, hdr.Name)
				}
				e := plan.Entries[i]
				name := e.Path
				if e.Kind == KindDir {
					name += "/"
				}
				if hdr.Name != name || hdr.Size != e.Size || hdr.Linkname != e.Target || hdr.Mode != int64(e.Mode) ||
					hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "root" || hdr.Gname != "root" {
					t.Errorf("member %d: got %q size %d link %q mode %o owner %d:%d %s:%s, want %q size %d link %q mode %o root",
						i, hdr.Name, hdr.Size, hdr.Linkname, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, name, e.Size, e.Target, e.Mode)
				}
			}
			if i != len(plan.Entries)+1 {
				t.Errorf("archive: got %d members, want %d and the marker", i, len(plan.Entries))
			}

			var again bytes.Buffer
			if _, err := WriteTar(t.Context(), &again, plan); err != nil {
				t.Fatalf("WriteTar again: %v", err)
			}
			if !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Errorf("WriteTar twice: archives differ")
			}

			var list bytes.Buffer
			if err := WriteList(&list, plan); err != nil {
				t.Fatalf("WriteList: %v", err)
			}
			lines := strings.Split(strings.TrimSuffix(list.String(), "\n"), "\n")
			want := st.Files + st.Symlinks + 1
			if len(plan.Checkout) > 0 {
				want += len(plan.Checkout) + 2
			}
			if len(lines) != want {
				t.Errorf("list: got %d lines, want %d (one per file and symlink, totals, heading)", len(lines), want)
			}
			for _, want := range []string{`  "new\nline.txt"`, `  link-out -> /etc/hostname`, `  "carriage\r"`, `  "\"leading quote.txt"`, `  dossier/café ünï.txt`} {
				if !strings.Contains(list.String(), want+"\n") {
					t.Errorf("list: no line ending in %q", want)
				}
			}
			total := strconv.FormatInt(plan.TotalBytes, 10) + "  total sent: " + strconv.Itoa(st.Files) + " files, " + strconv.Itoa(st.Symlinks) + " symlinks\n"
			if !strings.Contains(list.String(), total) {
				t.Errorf("list: no total line %q in\n%s", total, list.String())
			}
			if len(plan.Checkout) > 0 {
				want := "checked out of the sent .git in the guest:\n"
				for _, e := range plan.Checkout {
					want += fmt.Sprintf("%*d  %s\n", len(lines[0])-len(strings.TrimLeft(lines[0], " "))+len(strings.Fields(lines[0])[0]), e.Size, listName(e.Path))
				}
				if !strings.Contains(list.String(), want) {
					t.Errorf("list: no checkout section %q in\n%s", want, list.String())
				}
			}
		})
	}
}

// TestWriteTarFileChanged checks that a file whose size changed after
// the plan is sent as it is when opened, and that a canceled context
// stops the stream.
func TestWriteTarFileChanged(t *testing.T) {
	needTools(t)
	root := fixtureRepo(t)
	plan, err := NewPlan(t.Context(), inspect(t, root), Options{})
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	defer plan.Close()
	grown := []byte("alpha, grown after the plan was made\n")
	writeFile(t, root, "src/a.txt", grown, 0o644)
	var buf bytes.Buffer
	if _, err := WriteTar(t.Context(), &buf, plan); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	tr := tar.NewReader(&buf)
	found := false
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Name == "src/a.txt" {
			got, _ := io.ReadAll(tr)
			found = bytes.Equal(got, grown)
		}
	}
	if !found {
		t.Errorf("src/a.txt: not in the archive with its new content")
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := WriteTar(ctx, io.Discard, plan); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteTar with a canceled context: got %v, want context.Canceled", err)
	}
}

func TestListName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain/path.txt", "plain/path.txt"},
		{"with space.txt", "with space.txt"},
		{"café", "café"},
		{"new\nline", `"new\nline"`},
		{"tab\there", `"tab\there"`},
		{" leading", `" leading"`},
		{"trailing ", `"trailing "`},
		{`"quoted`, `"\"quoted"`},
		{"a -> b", `"a -> b"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"", `""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := listName(tt.in); got != tt.want {
				t.Errorf("listName(%q): got %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
