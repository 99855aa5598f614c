package vm

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
)

func TestExpandHostPath(t *testing.T) {
	tests := []struct {
		host, want, wantErr string
	}{
		{"~", "/home/dev", ""},
		{"~/", "/home/dev", ""},
		{"~/.gitconfig", "/home/dev/.gitconfig", ""},
		{"~/a//b/./c", "/home/dev/a/b/c", ""},
		{"/home/dev/.vimrc", "/home/dev/.vimrc", ""},
		{"/etc/passwd", "/etc/passwd", ""}, // syntax only; home is checked apart
		{"~user/x", "", "~user paths are not supported"},
		{"~root", "", "~user paths are not supported"},
		{"dotfiles/a", "", "must be ~/... or an absolute path"},
		{"./a", "", "must be ~/... or an absolute path"},
		{"", "", "must be ~/... or an absolute path"},
		{"~/../etc/shadow", "", "must not contain '..'"},
		{"/home/dev/../../etc", "", "must not contain '..'"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := expandHostPath(tt.host, "/home/dev")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("expandHostPath(%q): got %q, %v; want error containing %q", tt.host, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("expandHostPath(%q): got %q, %v; want %q", tt.host, got, err, tt.want)
			}
		})
	}
}

func TestGuestImagePath(t *testing.T) {
	tests := []struct {
		guest, want, wantErr string
	}{
		{"/root/.gitconfig", "/.gitconfig", ""},
		{"/root", "/", ""},
		{"/root/", "/", ""},
		{".", "/", ""},
		{".gitconfig", "/.gitconfig", ""},
		{".config/git/config", "/.config/git/config", ""},
		{"/root/a b/ü", "/a b/ü", ""},
		{"/root//x/./y", "/x/y", ""},
		{"", "", "must not be empty"},
		{"/etc/passwd", "", "must be under /root"},
		{"/rootkit", "", "must be under /root"},
		{"/", "", "must be under /root"},
		{"../etc/passwd", "", "must not contain '..'"},
		{"/root/../etc", "", "must not contain '..'"},
		{"a/..", "", "must not contain '..'"},
	}
	for _, tt := range tests {
		t.Run(tt.guest, func(t *testing.T) {
			got, err := guestImagePath(tt.guest)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("guestImagePath(%q): got %q, %v; want error containing %q", tt.guest, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("guestImagePath(%q): got %q, %v; want %q", tt.guest, got, err, tt.want)
			}
		})
	}
}

func TestParseSyncMode(t *testing.T) {
	tests := []struct {
		in           string
		want         os.FileMode
		wantExplicit bool
		wantErr      bool
	}{
		{"", 0, false, false},
		{"0600", 0o600, true, false},
		{"644", 0o644, true, false},
		{"0", 0, true, false},
		{"4755", 0o755 | os.ModeSetuid, true, false},
		{"3700", 0o700 | os.ModeSetgid | os.ModeSticky, true, false},
		{"0800", 0, false, true},
		{"17777", 0, false, true},
		{"u+rw", 0, false, true},
		{"0o644", 0, false, true},
		{"-1", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, explicit, err := parseSyncMode(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSyncMode(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want || explicit != tt.wantExplicit {
				t.Errorf("parseSyncMode(%q): got %v, %v; want %v, %v", tt.in, got, explicit, tt.want, tt.wantExplicit)
			}
		})
	}
}

func TestIsUnder(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/home/dev", "/home/dev", true},
		{"/home/dev/x", "/home/dev", true},
		{"/home/developer", "/home/dev", false},
		{"/home", "/home/dev", false},
		{"/etc", "/", true},
	}
	for _, tt := range tests {
		if got := isUnder(tt.p, tt.dir); got != tt.want {
			t.Errorf("isUnder(%q, %q): got %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
}

func TestParentDirs(t *testing.T) {
	dir := func(p string) storage.TreeEntry {
		return storage.TreeEntry{Path: p, Kind: storage.TreeDir, Mode: 0o755, KeepExisting: true}
	}
	tests := []struct {
		p    string
		want []storage.TreeEntry
	}{
		{"/", nil},
		{"/a", nil},
		{"/a/b", []storage.TreeEntry{dir("/a")}},
		{"/a b/c/d", []storage.TreeEntry{dir("/a b"), dir("/a b/c")}},
	}
	for _, tt := range tests {
		if got := parentDirs(tt.p); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parentDirs(%q): got %+v, want %+v", tt.p, got, tt.want)
		}
	}
}

func TestValidateFileSyncHome(t *testing.T) {
	tests := []struct {
		name    string
		entries []model.FileSyncEntry
		home    string
		wantErr []string
	}{
		{"none", nil, "", nil},
		{"tilde", []model.FileSyncEntry{{Host: "~/.gitconfig", Guest: ".gitconfig"}}, "/home/dev", nil},
		{"absolute under home", []model.FileSyncEntry{{Host: "/home/dev/.vimrc", Guest: "/root/.vimrc", Mode: "0644"}}, "/home/dev", nil},
		{"home itself", []model.FileSyncEntry{{Host: "/home/dev", Guest: "/root/home"}}, "/home/dev/", nil},
		{"absolute outside home", []model.FileSyncEntry{{Host: "/etc/shadow", Guest: "x"}}, "/home/dev", []string{"file_sync[0]", "not under your home /home/dev"}},
		{"sibling prefix", []model.FileSyncEntry{{Host: "/home/developer/x", Guest: "x"}}, "/home/dev", []string{"not under your home"}},
		{"guest outside root", []model.FileSyncEntry{{Host: "~/a", Guest: "/etc/a"}}, "/home/dev", []string{"must be under /root"}},
		{"guest dotdot", []model.FileSyncEntry{{Host: "~/a", Guest: "/root/../etc"}}, "/home/dev", []string{"must not contain '..'"}},
		{"tilde user", []model.FileSyncEntry{{Host: "~bob/a", Guest: "a"}}, "/home/dev", []string{"~user"}},
		{"relative home", []model.FileSyncEntry{{Host: "~/a", Guest: "a"}}, "home/dev", []string{"not an absolute path"}},
		{"every bad entry named", []model.FileSyncEntry{
			{Host: "/etc/a", Guest: "a"}, {Host: "~/ok", Guest: "ok"}, {Host: "~/b", Guest: "/tmp/b"},
		}, "/home/dev", []string{"file_sync[0]", "file_sync[2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFileSyncHome(tt.entries, tt.home)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want error containing %q", tt.wantErr)
			}
			if !errdefs.IsInvalid(err) {
				t.Errorf("got %v, want an ErrInvalid error", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// planHome makes a home directory tree for plan tests.
func planHome(t *testing.T) (home, outside string) {
	t.Helper()
	base := t.TempDir()
	home = filepath.Join(base, "home")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{home, outside, filepath.Join(home, "dir", "sub"), filepath.Join(home, "dotfiles")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, "dotfiles", "gitconfig"), "[user]\n", 0o644)
	write(filepath.Join(home, "dir", "a"), "a", 0o640)
	write(filepath.Join(home, "dir", "sub", "b"), "b", 0o755)
	write(filepath.Join(outside, "secret"), "secret", 0o600)
	links := map[string]string{
		filepath.Join(home, ".gitconfig"):   filepath.Join(home, "dotfiles", "gitconfig"),
		filepath.Join(home, "escape"):       filepath.Join(outside, "secret"),
		filepath.Join(home, "dir", "link"):  "../../outside/secret",
		filepath.Join(home, "dangling"):     filepath.Join(home, "nothing"),
		filepath.Join(home, "outside-link"): outside,
	}
	for p, target := range links {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(home, "dir", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, outside
}

func TestFileSyncerPlan(t *testing.T) {
	home, outside := planHome(t)
	stageParent := t.TempDir()
	type want struct {
		path   string
		kind   storage.TreeKind
		mode   os.FileMode
		keep   bool
		target string
		data   string
	}
	tests := []struct {
		name     string
		entry    model.FileSyncEntry
		want     []want
		wantWarn string
		wantErr  string
	}{
		{
			name:  "symlinked dotfile",
			entry: model.FileSyncEntry{Host: "~/.gitconfig", Guest: "/root/.config/git/config"},
			want: []want{
				{path: "/.config", kind: storage.TreeDir, mode: 0o755, keep: true},
				{path: "/.config/git", kind: storage.TreeDir, mode: 0o755, keep: true},
				{path: "/.config/git/config", kind: storage.TreeFile, mode: 0o600, data: "[user]\n"},
			},
		},
		{
			name:  "file with mode",
			entry: model.FileSyncEntry{Host: filepath.Join(home, "dir", "a"), Guest: "a", Mode: "0644"},
			want:  []want{{path: "/a", kind: storage.TreeFile, mode: 0o644, data: "a"}},
		},
		{
			name:     "directory",
			entry:    model.FileSyncEntry{Host: "~/dir", Guest: "/root/d"},
			wantWarn: "~/dir/fifo is a fifo",
			want: []want{
				{path: "/d", kind: storage.TreeDir, mode: 0o755},
				{path: "/d/a", kind: storage.TreeFile, mode: 0o640, data: "a"},
				{path: "/d/link", kind: storage.TreeSymlink, target: "../../outside/secret"},
				{path: "/d/sub", kind: storage.TreeDir, mode: 0o755},
				{path: "/d/sub/b", kind: storage.TreeFile, mode: 0o755, data: "b"},
			},
		},
		{
			name:  "directory onto /root keeps its mode",
			entry: model.FileSyncEntry{Host: "~/dir/sub", Guest: "/root"},
			want: []want{
				{path: "/", kind: storage.TreeDir, mode: 0o755, keep: true},
				{path: "/b", kind: storage.TreeFile, mode: 0o755, data: "b"},
			},
		},
		{
			name:  "directory onto /root with a mode",
			entry: model.FileSyncEntry{Host: "~/dir/sub", Guest: ".", Mode: "0700"},
			want: []want{
				{path: "/", kind: storage.TreeDir, mode: 0o700},
				{path: "/b", kind: storage.TreeFile, mode: 0o755, data: "b"},
			},
		},
		{name: "missing", entry: model.FileSyncEntry{Host: "~/nope", Guest: "x"}, wantWarn: "does not exist on the host"},
		{name: "missing parent is a file", entry: model.FileSyncEntry{Host: "~/dir/a/x", Guest: "x"}, wantWarn: "does not exist on the host"},
		{name: "dangling symlink", entry: model.FileSyncEntry{Host: "~/dangling", Guest: "x"}, wantWarn: "does not exist on the host"},
		{name: "fifo", entry: model.FileSyncEntry{Host: "~/dir/fifo", Guest: "x"}, wantWarn: "~/dir/fifo is a fifo"},
		{
			name:     "authorized_keys",
			entry:    model.FileSyncEntry{Host: "~/dir/a", Guest: "/root/.ssh/authorized_keys"},
			wantWarn: "holds banger's SSH key",
		},
		{name: "symlink out of home", entry: model.FileSyncEntry{Host: "~/escape", Guest: "x"}, wantErr: "outside your home"},
		{name: "directory symlink out of home", entry: model.FileSyncEntry{Host: "~/outside-link/secret", Guest: "x"}, wantErr: "outside your home"},
		{name: "absolute outside home", entry: model.FileSyncEntry{Host: filepath.Join(outside, "secret"), Guest: "x"}, wantErr: "not under your home"},
		{name: "file onto /root", entry: model.FileSyncEntry{Host: "~/dir/a", Guest: "/root"}, wantErr: "cannot replace the directory /root"},
		{name: "guest dotdot", entry: model.FileSyncEntry{Host: "~/dir/a", Guest: "x/../../etc"}, wantErr: "must not contain '..'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := newFileSyncer(home, stageParent, nil)
			if err != nil {
				t.Fatalf("newFileSyncer: %v", err)
			}
			defer f.close()
			var warnings []string
			f.warn = func(msg string) { warnings = append(warnings, msg) }
			tree, err := f.plan(context.Background(), tt.entry)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("plan: got %v, want error containing %q", err, tt.wantErr)
				}
				if !errdefs.IsInvalid(err) {
					t.Errorf("plan: got %v, want an ErrInvalid error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if got := strings.Join(warnings, "\n"); tt.wantWarn == "" && got != "" || !strings.Contains(got, tt.wantWarn) {
				t.Errorf("warnings: got %q, want %q", got, tt.wantWarn)
			}
			if len(tree) != len(tt.want) {
				t.Fatalf("plan: got %d entries %+v, want %d", len(tree), tree, len(tt.want))
			}
			for i, w := range tt.want {
				g := tree[i]
				if g.Path != w.path || g.Kind != w.kind || g.Mode != w.mode || g.KeepExisting != w.keep || g.Target != w.target || g.UID != 0 || g.GID != 0 {
					t.Errorf("entry %d: got %+v, want %+v", i, g, w)
				}
				if w.kind != storage.TreeFile {
					continue
				}
				if !strings.HasPrefix(g.Source, stageParent+"/") {
					t.Errorf("entry %d: source %q is not a staged copy under %s", i, g.Source, stageParent)
				}
				if data, err := os.ReadFile(g.Source); err != nil || string(data) != w.data {
					t.Errorf("entry %d: staged copy holds %q, %v; want %q", i, data, err, w.data)
				}
			}
			if err := storage.CheckTree(tree); err != nil {
				t.Errorf("CheckTree: %v", err)
			}
		})
	}
	if left, _ := filepath.Glob(filepath.Join(stageParent, "*")); len(left) != 0 {
		t.Errorf("staging directories left behind: %q", left)
	}
}

func TestFileSyncerPlanRefusesBadNames(t *testing.T) {
	tests := []struct {
		name    string
		make    func(dir string) error
		wantErr string
	}{
		{"quote", func(dir string) error { return os.WriteFile(filepath.Join(dir, `a"b`), nil, 0o600) }, `~/d/a"b: the name contains a double quote`},
		{"newline", func(dir string) error { return os.WriteFile(filepath.Join(dir, "a\nb"), nil, 0o600) }, "the name contains a double quote or control character"},
		{"symlink target", func(dir string) error { return os.Symlink("x\"y", filepath.Join(dir, "l")) }, "symlink target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			dir := filepath.Join(home, "d")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tt.make(dir); err != nil {
				t.Fatal(err)
			}
			f, err := newFileSyncer(home, t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer f.close()
			_, err = f.plan(context.Background(), model.FileSyncEntry{Host: "~/d", Guest: "d"})
			if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("plan: got %v, want an ErrInvalid error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFileSyncerSkipsOwnDirs(t *testing.T) {
	home := t.TempDir()
	state := filepath.Join(home, ".local", "state", "banger")
	vmDir := filepath.Join(state, "vms", "abc")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "notes"), []byte("n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := newFileSyncer(home, vmDir, []string{state, "", filepath.Join(home, "absent")})
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	var warnings []string
	f.warn = func(msg string) { warnings = append(warnings, msg) }
	tree, err := f.plan(context.Background(), model.FileSyncEntry{Host: "~", Guest: "host-home"})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var paths []string
	for _, e := range tree {
		paths = append(paths, e.Path)
	}
	want := []string{"/host-home", "/host-home/.local", "/host-home/.local/state", "/host-home/notes"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths: got %q, want %q", paths, want)
	}
	if got := strings.Join(warnings, "\n"); !strings.Contains(got, "~/.local/state/banger holds banger's own files") {
		t.Errorf("warnings: got %q, want one about banger's own files", got)
	}
}

func TestFileKind(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string
	}{
		{fs.ModeSocket, "socket"},
		{fs.ModeNamedPipe, "fifo"},
		{fs.ModeDevice | fs.ModeCharDevice, "character device"},
		{fs.ModeDevice, "block device"},
		{fs.ModeIrregular, "special file"},
	}
	for _, tt := range tests {
		if got := fileKind(tt.mode); got != tt.want {
			t.Errorf("fileKind(%v): got %q, want %q", tt.mode, got, tt.want)
		}
	}
}

func TestStageFileRefusesSwappedFile(t *testing.T) {
	tests := []struct {
		name string
		swap func(home, p string) error
	}{
		{"symlink inside home", func(home, p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink(filepath.Join(home, "other"), p)
		}},
		{"another file", func(home, p string) error { return os.Rename(filepath.Join(home, "other"), p) }},
		{"fifo", func(home, p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return syscall.Mkfifo(p, 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			p := filepath.Join(home, "a")
			for _, name := range []string{"a", "other"} {
				if err := os.WriteFile(filepath.Join(home, name), []byte(name), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			info, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.swap(home, p); err != nil {
				t.Fatal(err)
			}
			f, err := newFileSyncer(home, t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer f.close()
			if src, err := f.stageFile("a", info); err == nil {
				t.Errorf("stageFile: got %q, nil; want an error", src)
			}
		})
	}
}

func TestSyncFilesWithoutWork(t *testing.T) {
	tests := []struct {
		name    string
		cfg     model.DaemonConfig
		wantErr string
	}{
		{"no entries, no home", model.DaemonConfig{}, ""},
		{"relative home", model.DaemonConfig{HostHomeDir: "home", FileSync: []model.FileSyncEntry{{Host: "~/a", Guest: "a"}}}, "not an absolute path"},
		{"missing home", model.DaemonConfig{HostHomeDir: "/nonexistent-banger-home", FileSync: []model.FileSyncEntry{{Host: "~/a", Guest: "a"}}}, "home directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Service{cfg: tt.cfg, logger: discardLogger()}
			// The work disk is never opened: these fail or finish first.
			err := s.syncFiles(context.Background(), filepath.Join(t.TempDir(), "work.ext4"), nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("syncFiles: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("syncFiles: got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
