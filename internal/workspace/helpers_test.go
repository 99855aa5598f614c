package workspace

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// testGitConfig is the only git config the tests and the code under test
// read on the host: no user or system settings leak in.
const testGitConfig = `[user]
	name = Workspace Test
	email = workspace@example.invalid
[init]
	defaultBranch = main
[protocol "file"]
	allow = always
[advice]
	detachedHead = false
`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "workspace-test-")
	if err != nil {
		panic(err)
	}
	cfg := filepath.Join(dir, "gitconfig")
	if err := os.WriteFile(cfg, []byte(testGitConfig), 0o644); err != nil {
		panic(err)
	}
	os.Setenv("GIT_CONFIG_GLOBAL", cfg)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for _, v := range []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES"} {
		os.Unsetenv(v)
	}
	code := m.Run()
	cleanupBenchRepos()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTools skips when a host tool the test runs is missing.
func needTools(t testing.TB) {
	t.Helper()
	for _, n := range []string{"git", "tar", "sh"} {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not in PATH: install git, tar and a POSIX sh to run this test", n)
		}
	}
}

// run runs name in dir with stdin and returns stdout; it fails the test
// on error.
func run(t testing.TB, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q in %s: %v\n%s", name, args, dir, err, stderr.Bytes())
	}
	return out
}

// gitT runs git in dir and returns its trimmed stdout.
func gitT(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(string(run(t, dir, nil, "git", args...)))
}

// writeFile writes data to root/rel, creating parent directories.
func writeFile(t testing.TB, root, rel string, data []byte, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// symlink makes root/rel a symlink to target.
func symlink(t testing.TB, root, rel, target string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// node is a file or symlink as a tree comparison sees it.
type node struct {
	kind   string // "file" or "symlink"
	exec   bool
	data   string
	target string
}

// snapshot reads every file and symlink under root (directories only
// by what they hold), skipping paths for which skip is true (a skipped
// directory is not entered).
func snapshot(t testing.TB, root string, skip func(rel string) bool) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = node{kind: "symlink", target: target}
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out[rel] = node{kind: "file", exec: fi.Mode()&0o100 != 0, data: string(data)}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

// skipPrefixes returns a skip function for snapshot that skips the given
// paths and everything below them.
func skipPrefixes(paths ...string) func(string) bool {
	return func(rel string) bool {
		for _, p := range paths {
			if rel == p || strings.HasPrefix(rel, p+"/") {
				return true
			}
		}
		return false
	}
}

// compareTrees reports every difference between two snapshots.
func compareTrees(t testing.TB, got, want map[string]node) {
	t.Helper()
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("path %q: missing, want %s", k, w.kind)
		case !wok:
			t.Errorf("path %q: got unexpected %s", k, g.kind)
		case g != w:
			t.Errorf("path %q: got %s exec=%v target=%q %d bytes, want %s exec=%v target=%q %d bytes",
				k, g.kind, g.exec, g.target, len(g.data), w.kind, w.exec, w.target, len(w.data))
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatal("too many differences")
		}
	}
}

// runScript runs a guest script locally the way ssh runs it: the remote
// command line is ShellCommand(script), parsed by a shell.
func runScript(t testing.TB, script string, stdin io.Reader) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", ShellCommand(script))
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &scriptError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

type scriptError struct {
	err    error
	stderr string
}

func (e *scriptError) Error() string { return e.err.Error() + ": " + e.stderr }

// prepareGuest plans repo in opts and extracts it into guest with
// ExtractCommand, the stream going through a pipe as over ssh.
func prepareGuest(t testing.TB, repo Repo, opts Options, guest string) (*Plan, Stats) {
	t.Helper()
	plan, err := NewPlan(context.Background(), repo, opts)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	t.Cleanup(func() { plan.Close() })
	st := extract(t, plan, guest)
	return plan, st
}

// extract streams plan into guest with ExtractCommand.
func extract(t testing.TB, plan *Plan, guest string) Stats {
	t.Helper()
	script, err := ExtractCommand(guest)
	if err != nil {
		t.Fatalf("ExtractCommand: %v", err)
	}
	pr, pw := io.Pipe()
	var st Stats
	done := make(chan error, 1)
	go func() {
		var err error
		st, err = WriteTar(context.Background(), pw, plan)
		pw.CloseWithError(err)
		done <- err
	}()
	_, runErr := runScript(t, script, pr)
	pr.Close()
	tarErr := <-done
	if runErr != nil {
		t.Fatalf("extract script: %v (WriteTar: %v)", runErr, tarErr)
	}
	if tarErr != nil {
		t.Fatalf("WriteTar: %v", tarErr)
	}
	return st
}

// exportPatch runs ExportCommand in guest and returns the patch.
func exportPatch(t testing.TB, guest, base string) []byte {
	t.Helper()
	script, err := ExportCommand(guest, base)
	if err != nil {
		t.Fatalf("ExportCommand: %v", err)
	}
	out, err := runScript(t, script, nil)
	if err != nil {
		t.Fatalf("export script: %v", err)
	}
	return out
}

// inspect is Inspect that fails the test on error.
func inspect(t testing.TB, path string) Repo {
	t.Helper()
	repo, err := Inspect(context.Background(), path)
	if err != nil {
		t.Fatalf("Inspect(%q): %v", path, err)
	}
	return repo
}
