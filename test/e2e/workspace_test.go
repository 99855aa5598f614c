//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// git runs git in dir for a test, failing it on error.
func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestWorkspaceRoundTrip copies a repository into a VM with vm run PATH,
// changes it in the guest, exports the change as a patch and applies it
// to a clean checkout on the host: the trees must be equal.
func TestWorkspaceRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()

	repo := filepath.Join(t.TempDir(), "demo-repo")
	os.MkdirAll(filepath.Join(repo, "src"), 0o755)
	os.WriteFile(filepath.Join(repo, "README.md"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "src", "run.sh"), []byte("#!/bin/sh\necho run\n"), 0o755)
	os.WriteFile(filepath.Join(repo, "blob.bin"), []byte{0, 1, 2, 255, 254, 0, 10}, 0o644)
	os.WriteFile(filepath.Join(repo, "naïve file.txt"), []byte("unicode and spaces\n"), 0o644)
	os.Symlink("src/run.sh", filepath.Join(repo, "link"))
	os.WriteFile(filepath.Join(repo, ".gitignore"), []byte("ignored.log\n"), 0o644)
	gitT(t, repo, "init", "-q", "-b", "main")
	gitT(t, repo, "add", "-A")
	gitT(t, repo, "commit", "-q", "-m", "base")
	base := strings.TrimSpace(gitT(t, repo, "rev-parse", "HEAD"))
	// Uncommitted host changes travel too; ignored and untracked files do not.
	os.WriteFile(filepath.Join(repo, "README.md"), []byte("hello, edited on the host\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "ignored.log"), []byte("secret\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "untracked.txt"), []byte("draft\n"), 0o644)

	t.Run("dry run", func(t *testing.T) {
		r := e.ok("vm", "workspace", "prepare", "nope", repo, "--dry-run")
		for _, want := range []string{"README.md", "blob.bin", "naïve file.txt"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("dry run lacks %q:\n%s", want, r.stdout)
			}
		}
		for _, unwanted := range []string{"ignored.log", "untracked.txt"} {
			if strings.Contains(r.stdout, unwanted) {
				t.Errorf("dry run lists %q:\n%s", unwanted, r.stdout)
			}
		}
	})

	t.Run("bad input creates no vm", func(t *testing.T) {
		e.fails("does not exist", "vm", "run", "--rm", filepath.Join(repo, "missing"), "--", "true")
		e.fails("need a PATH", "vm", "run", "--rm", "--branch", "x", "--", "true")
		e.fails(`invalid branch name "a b"`, "vm", "run", "--rm", "--branch", "a b", repo, "--", "true")
		e.fails(`--from: "no-such-ref" is not a commit`, "vm", "run", "--rm", "--branch", "x", "--from", "no-such-ref", repo, "--", "true")
		e.fails("--mode metadata_only copies nothing", "vm", "run", "--rm", "--mode", "metadata_only", "--branch", "x", repo, "--", "true")
		e.assertClean("after bad workspace input")
	})

	r := e.ok("vm", "run", "--name", "ws", repo, "--", "sh", "-c", "pwd; cat README.md; test ! -e ignored.log && test ! -e untracked.txt && echo clean; readlink link; test -x src/run.sh && echo exec")
	for _, want := range []string{"/root/demo-repo", "hello, edited on the host", "clean", "src/run.sh", "exec"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("guest view lacks %q:\n%s", want, r.stdout)
		}
	}

	// Change the guest copy: edit, add (text and binary), delete, rename.
	e.ok("vm", "exec", "ws", "--", "sh", "-c", `set -e
echo 'guest line' >> README.md
printf '\000\001binary\377' > new.bin
echo new > 'new dir file.txt'
rm blob.bin
git mv 'naïve file.txt' renamed.txt`)
	patch := filepath.Join(t.TempDir(), "ws.patch")
	e.ok("vm", "workspace", "export", "ws", "--output", patch)

	clean := filepath.Join(t.TempDir(), "clean")
	gitT(t, filepath.Dir(clean), "clone", "-q", repo, clean)
	gitT(t, clean, "checkout", "-q", base)
	gitT(t, clean, "apply", patch)

	// The guest's tree, listed with content hashes, must equal the host's.
	listing := `find . -path ./.git -prune -o -print0 | sort -z | xargs -0 sh -c 'for f; do if [ -L "$f" ]; then echo "L $f $(readlink "$f")"; elif [ -f "$f" ]; then echo "F $f $(stat -c %a "$f") $(sha256sum < "$f" | cut -c1-16)"; else echo "D $f"; fi; done' sh`
	guest := e.ok("vm", "exec", "ws", "--", "sh", "-c", listing).stdout
	cmd := exec.Command("sh", "-c", listing)
	cmd.Dir = clean
	host, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(guest), host) {
		t.Errorf("trees differ after git apply:\nguest:\n%s\nhost:\n%s", guest, host)
	}

	t.Run("exec warns about drift", func(t *testing.T) {
		os.WriteFile(filepath.Join(repo, "README.md"), []byte("moved on\n"), 0o644)
		r := e.ok("vm", "exec", "ws", "--", "true")
		if !strings.Contains(r.stderr, "changed since it was prepared") {
			t.Errorf("no drift warning in %q", r.stderr)
		}
		r = e.ok("vm", "exec", "ws", "--auto-prepare", "--", "cat", "README.md")
		if strings.TrimSpace(r.stdout) != "moved on" {
			t.Errorf("after --auto-prepare: README.md = %q, want the host's", r.stdout)
		}
	})

	e.ok("vm", "delete", "ws")
	e.assertClean("end")
}
