package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

// These cases fail before any tool runs, so they need no qemu-img or
// e2fsprogs.

func TestCreateOverlayRejects(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "rootfs.ext4")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(base, 2<<20); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.qcow2")
	if err := os.WriteFile(existing, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		base     string
		overlay  string
		size     int64
		kind     error
		contains string
	}{
		{"smaller than base", base, filepath.Join(dir, "a.qcow2"), 1 << 20, errdefs.ErrInvalid, "smaller than the image rootfs"},
		{"zero size", base, filepath.Join(dir, "b.qcow2"), 0, errdefs.ErrInvalid, "must be positive"},
		{"missing base", filepath.Join(dir, "nope"), filepath.Join(dir, "c.qcow2"), 4 << 20, errdefs.ErrNotFound, "base image"},
		{"base is a directory", dir, filepath.Join(dir, "d.qcow2"), 4 << 20, errdefs.ErrInvalid, "not a regular file"},
		{"overlay exists", base, existing, 4 << 20, errdefs.ErrAlreadyExists, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CreateOverlay(context.Background(), tt.base, tt.overlay, tt.size)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got %v, want a %v error containing %q", err, tt.kind, tt.contains)
			}
			if tt.overlay != existing {
				if _, err := os.Stat(tt.overlay); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("got overlay left behind (stat: %v), want it absent", err)
				}
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep" {
		t.Errorf("got existing overlay %q (%v), want it untouched", b, err)
	}
}

func TestCreateWorkDiskRejects(t *testing.T) {
	dir := t.TempDir()
	notExt4 := filepath.Join(dir, "not-ext4")
	if err := os.WriteFile(notExt4, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big-seed")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 16<<20); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.ext4")
	if err := os.WriteFile(existing, []byte("user data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		seed     string
		dst      string
		size     int64
		kind     error
		contains string
	}{
		{"seed larger than disk", big, filepath.Join(dir, "a.ext4"), 8 << 20, errdefs.ErrInvalid, "smaller than the work seed"},
		{"seed is not ext4", notExt4, filepath.Join(dir, "b.ext4"), 8 << 20, errdefs.ErrInvalid, "not an ext4 filesystem"},
		{"missing seed", filepath.Join(dir, "nope"), filepath.Join(dir, "c.ext4"), 8 << 20, errdefs.ErrNotFound, "work seed"},
		{"negative size", "", filepath.Join(dir, "d.ext4"), -1, errdefs.ErrInvalid, "must be positive"},
		{"destination exists", "", existing, 8 << 20, errdefs.ErrAlreadyExists, "exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CreateWorkDisk(context.Background(), tt.seed, tt.dst, tt.size)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got %v, want a %v error containing %q", err, tt.kind, tt.contains)
			}
			if tt.dst != existing {
				if _, err := os.Stat(tt.dst); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("got %s left behind (stat: %v), want it removed", tt.dst, err)
				}
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "user data" {
		t.Errorf("got existing disk %q (%v), want it untouched", b, err)
	}
}

func TestGrowWorkDiskRejects(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "work.ext4")
	if err := os.WriteFile(disk, testSuperblockFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		size     int64
		kind     error
		contains string
	}{
		{"shrink", disk, 32 << 20, errdefs.ErrInvalid, "refusing to shrink it from 64M to 32M"},
		{"missing", filepath.Join(dir, "nope"), 64 << 20, errdefs.ErrNotFound, "no such file"},
		{"zero", disk, 0, errdefs.ErrInvalid, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := GrowWorkDisk(context.Background(), tt.path, tt.size)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got %v, want a %v error containing %q", err, tt.kind, tt.contains)
			}
		})
	}
	if st, err := os.Stat(disk); err != nil || st.Size() != 64<<20 {
		t.Errorf("got disk size %v (%v), want it untouched at 64M", st.Size(), err)
	}
}

func TestMakeExt4FromDirRejects(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		src      string
		size     int64
		label    string
		kind     error
		contains string
	}{
		{"long label", dir, 1 << 20, "seventeen-bytes-x", errdefs.ErrInvalid, "longer than 16 bytes"},
		{"source is a file", file, 1 << 20, "l", errdefs.ErrInvalid, "not a directory"},
		{"missing source", filepath.Join(dir, "nope"), 1 << 20, "l", errdefs.ErrNotFound, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out.ext4")
			err := MakeExt4FromDir(context.Background(), tt.src, dst, tt.size, tt.label)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("got %v, want a %v error containing %q", err, tt.kind, tt.contains)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("got %s left behind (stat: %v), want it absent", dst, err)
			}
		})
	}
}

func TestGuestFileOpsRejectBadPaths(t *testing.T) {
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "img.ext4") // never opened: validation comes first
	for _, p := range []string{"relative", "/a/../b", `/a"b`, "/a/"} {
		t.Run(p, func(t *testing.T) {
			if err := WriteFile(ctx, img, p, nil, 0o644, 0, 0); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("WriteFile: got %v, want ErrInvalid", err)
			}
			if _, err := ReadFile(ctx, img, p); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("ReadFile: got %v, want ErrInvalid", err)
			}
			if err := MkdirAll(ctx, img, p, 0o755, 0, 0); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("MkdirAll: got %v, want ErrInvalid", err)
			}
		})
	}
}

// testSuperblockFile is the start of a clean 4 KiB-block ext4 image.
func testSuperblockFile() []byte {
	b := make([]byte, superblockOffset)
	return append(b, testSuperblock(16384, 2, stateValid, 0, 1, incompat64Bit, WorkLabel)...)
}
