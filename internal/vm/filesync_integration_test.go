//go:build integration

package vm

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
)

// These tests build real ext4 work disks with mkfs.ext4 and edit them
// with debugfs; neither needs root. Run with make test-integration or
//
//	go test -tags integration ./internal/vm/ -run FileSync

func requireE2fsprogs(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH: install e2fsprogs to run this test", tool)
		}
	}
}

// guestInode is what debugfs stat says about one path in a work disk.
type guestInode struct {
	Type   string
	Mode   uint32
	UID    int
	GID    int
	Target string // fast symlinks
}

var (
	statTypeRE   = regexp.MustCompile(`Type: (\S+)\s+Mode:\s+(\d+)`)
	statOwnerRE  = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	statTargetRE = regexp.MustCompile(`Fast link dest: "(.*)"`)
)

// statInImage stats p in img with debugfs; ok is false when p is absent.
func statInImage(t *testing.T, img, p string) (guestInode, bool) {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", `stat "`+p+`"`, img).Output()
	if err != nil {
		t.Fatalf("debugfs stat %s: %v", p, err)
	}
	m := statTypeRE.FindSubmatch(out)
	if m == nil {
		return guestInode{}, false
	}
	var in guestInode
	in.Type = string(m[1])
	mode, _ := strconv.ParseUint(string(m[2]), 8, 32)
	in.Mode = uint32(mode)
	if o := statOwnerRE.FindSubmatch(out); o != nil {
		in.UID, _ = strconv.Atoi(string(o[1]))
		in.GID, _ = strconv.Atoi(string(o[2]))
	}
	if l := statTargetRE.FindSubmatch(out); l != nil {
		in.Target = string(l[1])
	}
	return in, true
}

// newWorkDisk makes an empty 64 MiB work disk holding banger's
// authorized_keys, as vm create leaves it, in its own VM directory.
func newWorkDisk(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "work.ext4")
	if err := storage.CreateWorkDisk(ctx, "", img, 64<<20); err != nil {
		t.Fatalf("CreateWorkDisk: %v", err)
	}
	if err := storage.MkdirAll(ctx, img, "/.ssh", 0o700, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteFile(ctx, img, "/.ssh/authorized_keys", []byte("ssh-ed25519 BANGER\n"), 0o600, 0, 0); err != nil {
		t.Fatal(err)
	}
	return img
}

// fakeHome writes files into a new home directory; names ending in "/"
// are directories, values starting with "->" symlinks. When the test
// runs as root the tree is given to another user, so root:root in the
// image proves the owner was set.
func fakeHome(t *testing.T, files map[string]string, modes map[string]os.FileMode) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home dir")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(home, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(strings.TrimPrefix(content, "->"), p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range modes {
		if err := os.Chmod(filepath.Join(home, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		err := filepath.Walk(home, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, 4321, 4321)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return home
}

func fileSyncService(home string, entries ...model.FileSyncEntry) *Service {
	return &Service{cfg: model.DaemonConfig{HostHomeDir: home, FileSync: entries}, logger: discardLogger()}
}

func TestSyncFilesIntegration(t *testing.T) {
	requireE2fsprogs(t)
	ctx := context.Background()
	home := fakeHome(t, map[string]string{
		"dotfiles/gitconfig":                  "[user]\n\tname = dev\n",
		".gitconfig":                          "->dotfiles/gitconfig",
		".ssh/config":                         "Host *\n",
		".ssh/id_ed25519":                     "PRIVATE\n",
		".ssh/authorized_keys":                "ssh-ed25519 HOST-KEY\n",
		"tool.sh":                             "#!/bin/sh\necho hi\n",
		"my proj ☃/README":                    "readme\n",
		"my proj ☃/empty":                     "",
		"my proj ☃/-rf":                       "dash\n",
		"my proj ☃/src/deep/file with space":  "deep\n",
		`my proj ☃/src/back\slash`:            "bs\n",
		"my proj ☃/private/":                  "",
		"my proj ☃/latest":                    "->src/deep",
		"my proj ☃/passwd":                    "->/etc/passwd",
		"my proj ☃/up":                        "->../../outside",
		"my proj ☃/src/deep/ünïcödé — ok.txt": "unicode\n",
	}, map[string]os.FileMode{
		".ssh":               0o700,
		".ssh/id_ed25519":    0o600,
		"tool.sh":            0o755,
		"my proj ☃/private":  0o700,
		"my proj ☃/-rf":      0o640,
		"my proj ☃/src/deep": 0o750,
	})
	if err := syscall.Mkfifo(filepath.Join(home, "my proj ☃", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(home, "my proj ☃", "sock")
	if len(sock) < 100 {
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}

	img := newWorkDisk(t)
	s := fileSyncService(home,
		model.FileSyncEntry{Host: "~/.gitconfig", Guest: "/root/.gitconfig"},
		model.FileSyncEntry{Host: "~/.ssh", Guest: ".ssh", Mode: "0700"},
		model.FileSyncEntry{Host: "~/missing", Guest: "missing"},
		model.FileSyncEntry{Host: filepath.Join(home, "tool.sh"), Guest: "/root/bin/tool", Mode: "0750"},
		model.FileSyncEntry{Host: "~/my proj ☃", Guest: "/root/work/my proj ☃"},
	)
	var warnings []string
	report := func(step, msg string) {
		if step != "warning" {
			t.Errorf("report: got step %q, want only warnings", step)
		}
		warnings = append(warnings, msg)
	}
	if err := s.syncFiles(ctx, img, report); err != nil {
		t.Fatalf("syncFiles: %v", err)
	}

	files := map[string]string{
		"/.gitconfig":                              "[user]\n\tname = dev\n",
		"/.ssh/config":                             "Host *\n",
		"/.ssh/id_ed25519":                         "PRIVATE\n",
		"/.ssh/authorized_keys":                    "ssh-ed25519 BANGER\n", // banger's, kept
		"/bin/tool":                                "#!/bin/sh\necho hi\n",
		"/work/my proj ☃/README":                   "readme\n",
		"/work/my proj ☃/empty":                    "",
		"/work/my proj ☃/-rf":                      "dash\n",
		"/work/my proj ☃/src/deep/file with space": "deep\n",
		"/work/my proj ☃/src/deep/ünïcödé — ok.txt": "unicode\n",
	}
	for p, want := range files {
		data, err := storage.ReadFile(ctx, img, p)
		if err != nil || string(data) != want {
			t.Errorf("ReadFile %q: got %q, %v; want %q", p, data, err, want)
		}
	}

	inodes := map[string]guestInode{
		"/.gitconfig":                    {Type: "regular", Mode: 0o600},
		"/.ssh":                          {Type: "directory", Mode: 0o700},
		"/.ssh/config":                   {Type: "regular", Mode: 0o644},
		"/.ssh/id_ed25519":               {Type: "regular", Mode: 0o600},
		"/bin":                           {Type: "directory", Mode: 0o755},
		"/bin/tool":                      {Type: "regular", Mode: 0o750},
		"/work":                          {Type: "directory", Mode: 0o755},
		"/work/my proj ☃":                {Type: "directory", Mode: 0o755},
		"/work/my proj ☃/-rf":            {Type: "regular", Mode: 0o640},
		"/work/my proj ☃/private":        {Type: "directory", Mode: 0o700},
		"/work/my proj ☃/src":            {Type: "directory", Mode: 0o755},
		"/work/my proj ☃/src/deep":       {Type: "directory", Mode: 0o750},
		`/work/my proj ☃/src/back\slash`: {Type: "regular", Mode: 0o644},
		"/work/my proj ☃/latest":         {Type: "symlink", Mode: 0o777, Target: "src/deep"},
		"/work/my proj ☃/passwd":         {Type: "symlink", Mode: 0o777, Target: "/etc/passwd"},
		"/work/my proj ☃/up":             {Type: "symlink", Mode: 0o777, Target: "../../outside"},
	}
	for p, want := range inodes {
		got, ok := statInImage(t, img, p)
		if !ok {
			t.Errorf("stat %q: absent, want %+v", p, want)
			continue
		}
		if got != want {
			t.Errorf("stat %q: got %+v, want %+v (root:root)", p, got, want)
		}
	}
	for _, p := range []string{"/missing", "/work/my proj ☃/fifo", "/work/my proj ☃/sock"} {
		if got, ok := statInImage(t, img, p); ok {
			t.Errorf("stat %q: got %+v, want it absent", p, got)
		}
	}

	all := strings.Join(warnings, "\n")
	for _, want := range []string{
		"file_sync ~/missing: does not exist on the host; skipped",
		"~/my proj ☃/fifo is a fifo; skipped",
		"~/.ssh/authorized_keys: /root/.ssh/authorized_keys holds banger's SSH key",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings: got %q, want one containing %q", all, want)
		}
	}
	if len(sock) < 100 && !strings.Contains(all, "~/my proj ☃/sock is a socket; skipped") {
		t.Errorf("warnings: got %q, want one about the socket", all)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(img), ".file-sync-*")); len(left) != 0 {
		t.Errorf("staging directories left behind: %q", left)
	}
	if out, err := exec.Command("e2fsck", "-f", "-n", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}

	t.Run("second sync replaces and merges", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(home, "dotfiles", "gitconfig"), []byte("[core]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.syncFiles(ctx, img, nil); err != nil {
			t.Fatalf("syncFiles: %v", err)
		}
		if data, err := storage.ReadFile(ctx, img, "/.gitconfig"); err != nil || string(data) != "[core]\n" {
			t.Errorf("ReadFile /.gitconfig: got %q, %v; want %q", data, err, "[core]\n")
		}
	})
}

func TestSyncFilesRefusesBadInput(t *testing.T) {
	requireE2fsprogs(t)
	ctx := context.Background()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := fakeHome(t, map[string]string{
		"ok":         "ok\n",
		"escape":     "->" + filepath.Join(outside, "secret"),
		"dir/link":   "->" + outside,
		"bad/a\"b":   "quote\n",
		"plain":      "plain\n",
		"bad/fine":   "fine\n",
		"dir/inside": "x\n",
	}, nil)
	good := model.FileSyncEntry{Host: "~/ok", Guest: "ok"}
	tests := []struct {
		name    string
		entry   model.FileSyncEntry
		wantErr string
	}{
		{"absolute outside home", model.FileSyncEntry{Host: filepath.Join(outside, "secret"), Guest: "s"}, "not under your home"},
		{"symlink out of home", model.FileSyncEntry{Host: "~/escape", Guest: "s"}, "outside your home"},
		{"through a directory symlink", model.FileSyncEntry{Host: "~/dir/link/secret", Guest: "s"}, "outside your home"},
		{"tilde user", model.FileSyncEntry{Host: "~root/.bashrc", Guest: "s"}, "~user paths are not supported"},
		{"guest outside /root", model.FileSyncEntry{Host: "~/plain", Guest: "/etc/plain"}, "must be under /root"},
		{"quote in a name", model.FileSyncEntry{Host: "~/bad", Guest: "bad"}, "double quote"},
		{"file over a directory", model.FileSyncEntry{Host: "~/plain", Guest: "/root/.ssh"}, "/.ssh exists and is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := newWorkDisk(t)
			s := fileSyncService(home, good, tt.entry)
			err := s.syncFiles(ctx, img, nil)
			if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("syncFiles: got %v, want an ErrInvalid error containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "file_sync[1]") {
				t.Errorf("syncFiles: got %q, want it to name file_sync[1]", err)
			}
			if got, ok := statInImage(t, img, "/s"); ok {
				t.Errorf("stat /s: got %+v, want it absent", got)
			}
			if tt.name != "file over a directory" {
				// Planned and refused before anything was written.
				if got, ok := statInImage(t, img, "/ok"); ok {
					t.Errorf("stat /ok: got %+v, want it absent", got)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(img), ".file-sync-*")); len(left) != 0 {
				t.Errorf("staging directories left behind: %q", left)
			}
		})
	}
}
