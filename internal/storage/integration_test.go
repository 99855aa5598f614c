//go:build integration

// These tests run the real tools (qemu-img, mkfs.ext4, resize2fs, e2fsck,
// tune2fs, debugfs) on files in a temp dir. None of them needs root: all
// work on plain image files without mounting. Run with
//
//	go test -tags integration ./internal/storage/
package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

func requireTools(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			tb.Skipf("%s not in PATH: install qemu-utils and e2fsprogs to run this test", n)
		}
	}
}

// fsckClean fails the test unless e2fsck -fn finds nothing to fix.
func fsckClean(t *testing.T, img string) {
	t.Helper()
	if out, err := hostexec.Run(context.Background(), "e2fsck", "-f", "-n", img); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// statPath stats one path in img through debugfs.
func statPath(t *testing.T, img, p string) inodeInfo {
	t.Helper()
	infos, err := statGuest(context.Background(), img, []string{p})
	if err != nil {
		t.Fatalf("stat %s in %s: %v", p, img, err)
	}
	return infos[0]
}

// makeSeed builds a small work seed with a .ssh directory in it.
func makeSeed(t testing.TB, dir string, size int64) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tree, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, ".ssh", "authorized_keys"), []byte("ssh-ed25519 AAAA test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, ".bashrc"), []byte("# bashrc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(dir, "work-seed.ext4")
	if err := MakeExt4FromDir(context.Background(), tree, seed, size, WorkLabel); err != nil {
		t.Fatalf("MakeExt4FromDir: %v", err)
	}
	return seed
}

func TestCreateOverlayQemuImg(t *testing.T) {
	requireTools(t, "qemu-img")
	dir := t.TempDir()
	base := filepath.Join(dir, "rootfs.ext4")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(base, 64<<20); err != nil {
		t.Fatal(err)
	}
	// A relative base must be recorded as an absolute path.
	t.Chdir(dir)
	overlay := filepath.Join(dir, "system.qcow2")
	if err := CreateOverlay(t.Context(), "rootfs.ext4", overlay, 8<<30); err != nil {
		t.Fatalf("CreateOverlay: %v", err)
	}
	out, err := hostexec.Run(t.Context(), "qemu-img", "info", "--output=json", overlay)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Format        string `json:"format"`
		VirtualSize   int64  `json:"virtual-size"`
		BackingFile   string `json:"backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	want := struct {
		Format        string `json:"format"`
		VirtualSize   int64  `json:"virtual-size"`
		BackingFile   string `json:"backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}{"qcow2", 8 << 30, base, "raw"}
	if info != want {
		t.Errorf("got %+v, want %+v", info, want)
	}
	if alloc, _ := AllocatedBytes(overlay); alloc > 1<<20 {
		t.Errorf("got overlay allocating %d bytes, want under 1 MiB", alloc)
	}
	t.Run("equal size is fine", func(t *testing.T) {
		if err := CreateOverlay(t.Context(), base, filepath.Join(dir, "same.qcow2"), 64<<20); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
}

func TestMakeExt4FromDirKeepsTree(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"etc/ssh", "root", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(tree, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("demo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr/bin/tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "usr/bin/tool"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/tool", filepath.Join(tree, "etc/link")); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		if err := os.Chown(filepath.Join(tree, "etc/hostname"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "rootfs.ext4")
	if err := MakeExt4FromDir(t.Context(), tree, img, 32<<20, "banger-root"); err != nil {
		t.Fatalf("MakeExt4FromDir: %v", err)
	}
	sb, err := readSuperblock(img)
	if err != nil {
		t.Fatal(err)
	}
	if sb.VolumeLabel != "banger-root" || sb.Bytes() != 32<<20 {
		t.Errorf("got label %q size %d, want banger-root %d", sb.VolumeLabel, sb.Bytes(), 32<<20)
	}
	hostnameOwner := [2]int{uid, gid}
	if uid == 0 {
		hostnameOwner = [2]int{1234, 5678}
	}
	tests := []struct {
		path string
		want inodeInfo
	}{
		{"/root", inodeInfo{Exists: true, Type: "directory", Mode: 0o700, UID: uid, GID: gid, Size: 4096}},
		{"/etc/hostname", inodeInfo{Exists: true, Type: "regular", Mode: 0o644, UID: hostnameOwner[0], GID: hostnameOwner[1], Size: 5}},
		{"/usr/bin/tool", inodeInfo{Exists: true, Type: "regular", Mode: 0o4755, UID: uid, GID: gid, Size: 10}},
		{"/etc/link", inodeInfo{Exists: true, Type: "symlink", Mode: 0o777, UID: uid, GID: gid, Size: 13}},
		{"/", inodeInfo{Exists: true, Type: "directory", Mode: 0o755, UID: uid, GID: gid, Size: 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := statPath(t, img, tt.path); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	fsckClean(t, img)

	t.Run("root directory takes srcDir's mode", func(t *testing.T) {
		seed := makeSeed(t, t.TempDir(), 16<<20)
		if got := statPath(t, seed, "/"); got.Mode != 0o700 || got.UID != uid {
			t.Errorf("got %+v, want mode 0700 owned by %d", got, uid)
		}
		fsckClean(t, seed)
	})
	t.Run("too small removes the image", func(t *testing.T) {
		big := filepath.Join(t.TempDir(), "big")
		if err := os.MkdirAll(big, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(big, "blob"), bytes.Repeat([]byte{7}, 8<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "small.ext4")
		err := MakeExt4FromDir(t.Context(), big, dst, 4<<20, "x")
		if err == nil {
			t.Fatal("got nil error for an 8 MiB tree in a 4 MiB image, want an error")
		}
		if _, serr := os.Stat(dst); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("got %s left behind after %v, want it removed", dst, err)
		}
	})
}

func TestCreateWorkDiskFromSeed(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck", "resize2fs", "tune2fs")
	dir := t.TempDir()
	seed := makeSeed(t, dir, 16<<20)
	dst := filepath.Join(dir, "work.ext4")
	if err := CreateWorkDisk(t.Context(), seed, dst, 1<<30); err != nil {
		t.Fatalf("CreateWorkDisk: %v", err)
	}
	sb, err := readSuperblock(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Bytes() != 1<<30 || sb.VolumeLabel != WorkLabel {
		t.Errorf("got fs size %d label %q, want %d %q", sb.Bytes(), sb.VolumeLabel, 1<<30, WorkLabel)
	}
	got, err := ReadFile(t.Context(), dst, "/.ssh/authorized_keys")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "ssh-ed25519 AAAA test\n" {
		t.Errorf("got authorized_keys %q, want the seed's", got)
	}
	if info := statPath(t, dst, "/.ssh/authorized_keys"); info.Mode != 0o600 {
		t.Errorf("got mode %o, want 600", info.Mode)
	}
	if alloc, _ := AllocatedBytes(dst); alloc > 64<<20 {
		t.Errorf("got %d allocated bytes for a fresh 1 GiB work disk, want a sparse file", alloc)
	}
	fsckClean(t, dst)
	if b, _ := os.ReadFile(seed); len(b) != 16<<20 {
		t.Errorf("got seed of %d bytes, want it untouched (%d)", len(b), 16<<20)
	}
}

func TestCreateWorkDiskRelabels(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck", "resize2fs", "tune2fs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o700); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(dir, "seed.ext4")
	if err := MakeExt4FromDir(t.Context(), tree, seed, 8<<20, "other"); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "work.ext4")
	// Same size as the seed: nothing to grow, only the label to fix.
	if err := CreateWorkDisk(t.Context(), seed, dst, 8<<20); err != nil {
		t.Fatalf("CreateWorkDisk: %v", err)
	}
	if sb, _ := readSuperblock(dst); sb.VolumeLabel != WorkLabel {
		t.Errorf("got label %q, want %q", sb.VolumeLabel, WorkLabel)
	}
	if sb, _ := readSuperblock(seed); sb.VolumeLabel != "other" {
		t.Errorf("got seed label %q, want it untouched", sb.VolumeLabel)
	}
}

func TestCreateWorkDiskEmpty(t *testing.T) {
	requireTools(t, "mkfs.ext4", "e2fsck")
	dst := filepath.Join(t.TempDir(), "work.ext4")
	if err := CreateWorkDisk(t.Context(), "", dst, 2<<30); err != nil {
		t.Fatalf("CreateWorkDisk: %v", err)
	}
	sb, err := readSuperblock(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Bytes() != 2<<30 || sb.VolumeLabel != WorkLabel || sb.BlockSize != 4096 {
		t.Errorf("got %+v, want 2 GiB, 4 KiB blocks, label %q", sb, WorkLabel)
	}
	fsckClean(t, dst)
}

func TestGrowWorkDisk(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck", "resize2fs", "tune2fs")
	dir := t.TempDir()
	seed := makeSeed(t, dir, 16<<20)
	disk := filepath.Join(dir, "work.ext4")
	if err := CreateWorkDisk(t.Context(), seed, disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	// Pretend a guest mounted it after its last check: resize2fs would
	// refuse without an e2fsck first.
	if _, err := hostexec.Run(t.Context(), "debugfs", "-w", "-R", "set_super_value mtime 20300101", disk); err != nil {
		t.Fatal(err)
	}
	if sb, _ := readSuperblock(disk); !sb.NeedsCheck() {
		t.Fatalf("got NeedsCheck false after setting mtime, want true: %+v", sb)
	}
	if err := GrowWorkDisk(t.Context(), disk, 256<<20); err != nil {
		t.Fatalf("GrowWorkDisk: %v", err)
	}
	if sb, _ := readSuperblock(disk); sb.Bytes() != 256<<20 {
		t.Errorf("got fs size %d, want %d", sb.Bytes(), 256<<20)
	}
	fsckClean(t, disk)
	if got, err := ReadFile(t.Context(), disk, "/.bashrc"); err != nil || string(got) != "# bashrc\n" {
		t.Errorf("got %q, %v after grow, want the seed's .bashrc", got, err)
	}
	t.Run("same size is a no-op", func(t *testing.T) {
		if err := GrowWorkDisk(t.Context(), disk, 256<<20); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
	t.Run("shrink refused", func(t *testing.T) {
		err := GrowWorkDisk(t.Context(), disk, 128<<20)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "refusing to shrink") {
			t.Errorf("got %v, want ErrInvalid refusing to shrink", err)
		}
	})
}

func TestGuestFileRoundTrip(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	img := makeSeed(t, dir, 16<<20)
	ctx := t.Context()

	// Content that looks like debugfs's own echo lines must survive.
	tricky := []byte("line\ndebugfs: cat \"/x\"\n\x00\xff binary")
	writes := []struct {
		name string
		path string
		data []byte
		mode os.FileMode
		uid  int
		gid  int
	}{
		{"new file in existing dir", "/.ssh/config", []byte("Host *\n"), 0o600, 0, 0},
		{"replace existing file", "/.ssh/authorized_keys", []byte("ssh-ed25519 BBBB new\n"), 0o640, 1000, 1000},
		{"file in filesystem root", "/motd", tricky, 0o644, 0, 0},
		{"empty file", "/empty", nil, 0o600, 0, 0},
		{"setuid", "/suid", []byte("x"), os.ModeSetuid | 0o755, 0, 0},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if err := WriteFile(ctx, img, w.path, w.data, w.mode, w.uid, w.gid); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := ReadFile(ctx, img, w.path)
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if !bytes.Equal(got, w.data) {
				t.Errorf("got %q, want %q", got, w.data)
			}
			info := statPath(t, img, w.path)
			if info.Mode != unixPerm(w.mode) || info.UID != w.uid || info.GID != w.gid {
				t.Errorf("got mode %o uid %d gid %d, want %o %d %d", info.Mode, info.UID, info.GID, unixPerm(w.mode), w.uid, w.gid)
			}
		})
	}

	t.Run("mkdirall creates parents", func(t *testing.T) {
		if err := MkdirAll(ctx, img, "/work/dir with space/deep", 0o750, 1000, 1000); err != nil {
			t.Fatalf("MkdirAll: %v", err)
		}
		for _, p := range []string{"/work", "/work/dir with space", "/work/dir with space/deep"} {
			want := inodeInfo{Exists: true, Type: "directory", Mode: 0o750, UID: 1000, GID: 1000, Size: 4096}
			if got := statPath(t, img, p); got != want {
				t.Errorf("%s: got %+v, want %+v", p, got, want)
			}
		}
		if err := WriteFile(ctx, img, "/work/dir with space/deep/f", []byte("ok"), 0o644, 0, 0); err != nil {
			t.Fatalf("WriteFile in new dir: %v", err)
		}
	})
	t.Run("mkdirall leaves existing dirs alone", func(t *testing.T) {
		if err := MkdirAll(ctx, img, "/.ssh/sub", 0o755, 0, 0); err != nil {
			t.Fatalf("MkdirAll: %v", err)
		}
		if got := statPath(t, img, "/.ssh"); got.Mode != 0o700 {
			t.Errorf("got /.ssh mode %o, want 700 unchanged", got.Mode)
		}
		if err := MkdirAll(ctx, img, "/.ssh", 0o755, 0, 0); err != nil {
			t.Errorf("MkdirAll on an existing dir: got %v, want nil", err)
		}
	})

	failures := []struct {
		name string
		run  func() error
		kind error
	}{
		{"write with missing parent", func() error { return WriteFile(ctx, img, "/nope/f", nil, 0o644, 0, 0) }, errdefs.ErrNotFound},
		{"write over a directory", func() error { return WriteFile(ctx, img, "/.ssh", nil, 0o644, 0, 0) }, errdefs.ErrInvalid},
		{"write under a file", func() error { return WriteFile(ctx, img, "/motd/f", nil, 0o644, 0, 0) }, errdefs.ErrInvalid},
		{"read missing", func() error { _, err := ReadFile(ctx, img, "/nope"); return err }, errdefs.ErrNotFound},
		{"read a directory", func() error { _, err := ReadFile(ctx, img, "/.ssh"); return err }, errdefs.ErrInvalid},
		{"mkdir through a file", func() error { return MkdirAll(ctx, img, "/motd/sub", 0o755, 0, 0) }, errdefs.ErrInvalid},
		{"missing image", func() error { return WriteFile(ctx, filepath.Join(dir, "nope.ext4"), "/f", nil, 0o644, 0, 0) }, errdefs.ErrNotFound},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			if err := f.run(); !errors.Is(err, f.kind) {
				t.Errorf("got %v, want %v", err, f.kind)
			}
		})
	}
	fsckClean(t, img)
}
