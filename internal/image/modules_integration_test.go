//go:build integration

package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/storage"
)

// TestMakeModulesDisk makes modules disks from a modules tree and from
// the modules in an ext4 rootfs (merged /usr and not), and refuses
// sources without modules, leaving nothing.
func TestMakeModulesDisk(t *testing.T) {
	const release = "6.1.0-test-amd64"
	modulesTree := func(t *testing.T, dir string) {
		t.Helper()
		for name, body := range map[string]string{
			release + "/modules.dep":                    "kernel/fs/overlayfs/overlay.ko:\n",
			release + "/kernel/fs/overlayfs/overlay.ko": "\x7fELF overlay",
		} {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	rootfsWith := func(t *testing.T, modulesAt string, mergedUsr bool) string {
		t.Helper()
		tree := t.TempDir()
		if err := os.Chmod(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(tree, "usr/lib"), 0o755); err != nil {
			t.Fatal(err)
		}
		if mergedUsr {
			if err := os.Symlink("usr/lib", filepath.Join(tree, "lib")); err != nil {
				t.Fatal(err)
			}
		}
		if modulesAt != "" {
			modulesTree(t, filepath.Join(tree, modulesAt))
		}
		img := filepath.Join(t.TempDir(), "rootfs.ext4")
		if err := storage.MakeExt4FromDir(context.Background(), tree, img, 64<<20, "test-root"); err != nil {
			t.Fatal(err)
		}
		return img
	}
	fromDir := t.TempDir()
	modulesTree(t, fromDir)

	tests := []struct {
		name         string
		dir, rootfs  string
		wantNotFound bool
	}{
		{"modules tree", fromDir, "", false},
		{"merged-usr rootfs", "", rootfsWith(t, "usr/lib/modules", true), false},
		{"split-usr rootfs", "", rootfsWith(t, "lib/modules", false), false},
		{"rootfs without modules", "", rootfsWith(t, "", true), true},
		{"empty tree", t.TempDir(), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scratch := t.TempDir()
			dst := filepath.Join(t.TempDir(), ModulesDiskName)
			err := MakeModulesDisk(t.Context(), dst, tt.dir, tt.rootfs, scratch)
			if tt.wantNotFound {
				if !errdefs.IsNotFound(err) {
					t.Fatalf("got %v, want a not-found error", err)
				}
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", dst, err)
				}
			} else if err != nil {
				t.Fatalf("MakeModulesDisk: %v", err)
			}
			if left, _ := os.ReadDir(scratch); len(left) != 0 {
				t.Errorf("scratch holds %v, want nothing", left)
			}
			if tt.wantNotFound {
				return
			}
			label, err := exec.Command("e2label", dst).Output()
			if err != nil || strings.TrimSpace(string(label)) != ModulesLabel {
				t.Errorf("label: got %q (%v), want %s", label, err, ModulesLabel)
			}
			out, err := exec.Command("debugfs", "-R", "cat /"+release+"/modules.dep", dst).Output()
			if err != nil || string(out) != "kernel/fs/overlayfs/overlay.ko:\n" {
				t.Errorf("modules.dep on the disk: got %q (%v)", out, err)
			}
			out, err = exec.Command("debugfs", "-R", "cat /"+release+"/kernel/fs/overlayfs/overlay.ko", dst).Output()
			if err != nil || string(out) != "\x7fELF overlay" {
				t.Errorf("overlay.ko on the disk: got %q (%v)", out, err)
			}
		})
	}
}
