package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
)

func TestParseRootfsBackend(t *testing.T) {
	tests := []struct {
		in   string
		want RootfsBackend
		ok   bool
	}{
		{"dm-snapshot", RootfsDMSnapshot, true},
		{"reflink", RootfsReflink, true},
		{"sparse", RootfsSparse, true},
		{"qcow2", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRootfsBackend(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("got %q, %v; want %q, ok %v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestChooseRootfsBackend(t *testing.T) {
	tests := []struct {
		name       string
		dm         bool
		reflinkErr error
		want       RootfsBackend
		wantReason string
	}{
		{"device-mapper", true, nil, RootfsDMSnapshot, "snapshot target"},
		{"reflink", false, nil, RootfsReflink, "supports reflinks"},
		{"sparse", false, errors.New("ext4 at /x does not support reflinks"), RootfsSparse, "no /dev/mapper/control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dm := func(context.Context) (bool, string) {
				if tt.dm {
					return true, "device-mapper with the snapshot target"
				}
				return false, "no /dev/mapper/control"
			}
			got, reason := chooseRootfsBackend(t.Context(), "/x", dm, func(string) error { return tt.reflinkErr })
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Errorf("got reason %q, want it to contain %q", reason, tt.wantReason)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	tests := []Rootfs{
		{Backend: RootfsDMSnapshot, Base: "/img/rootfs.ext4", Path: "/vm/system.cow", Device: "/dev/mapper/banger-x", DMName: "banger-x", BaseLoop: "/dev/loop1", COWLoop: "/dev/loop2"},
		{Backend: RootfsSparse, Base: "/img/rootfs.ext4", Path: "/vm/system.ext4", Device: "/vm/system.ext4"},
		{Backend: RootfsReflink, Base: "/img/rootfs.ext4", Path: "/vm/system.ext4", Device: "/vm/system.ext4"},
	}
	for _, r := range tests {
		t.Run(string(r.Backend), func(t *testing.T) {
			var rt model.VMRuntime
			r.Record(&rt)
			if got := RootfsFromRuntime(r.Backend, r.Base, rt); got != r {
				t.Errorf("got %+v, want %+v", got, r)
			}
		})
	}
}

// holeyImage writes an image of size bytes with data at a few offsets
// and holes elsewhere.
func holeyImage(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range map[int64]byte{0: 1, size / 2: 2, size - 4096: 3} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{b}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateRootfsCopies(t *testing.T) {
	const size = 32 << 20
	base := filepath.Join(t.TempDir(), "rootfs.ext4")
	holeyImage(t, base, size)
	baseAlloc, err := AllocatedBytes(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []RootfsBackend{RootfsSparse, RootfsReflink} {
		t.Run(string(backend), func(t *testing.T) {
			dir := t.TempDir()
			if backend == RootfsReflink {
				if err := probeReflink(dir); err != nil {
					t.Skipf("reflink copy not testable here: %v; run on btrfs or XFS (TMPDIR on such a filesystem)", err)
				}
			}
			dst := filepath.Join(dir, "system.ext4")
			r, err := CreateRootfs(t.Context(), RootfsRequest{Backend: backend, Base: base, Path: dst, Size: 2 * size})
			if err != nil {
				t.Fatalf("CreateRootfs: %v", err)
			}
			if want := (Rootfs{Backend: backend, Base: base, Path: dst, Device: dst}); r != want {
				t.Errorf("got %+v, want %+v", r, want)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(base)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2*size {
				t.Errorf("copy size: got %d, want %d", len(got), 2*size)
			}
			if !bytes.Equal(got[:size], want) || !bytes.Equal(got[size:], make([]byte, size)) {
				t.Error("copy content differs from the image rootfs")
			}
			alloc, err := AllocatedBytes(dst)
			if err != nil {
				t.Fatal(err)
			}
			if backend == RootfsSparse && alloc > baseAlloc {
				t.Errorf("copy allocates %d bytes, want at most the image's %d: holes must stay holes", alloc, baseAlloc)
			}
			if _, err := ActivateRootfs(t.Context(), r); err != nil {
				t.Errorf("ActivateRootfs of a copy: %v", err)
			}
			if err := RemoveRootfs(t.Context(), r); err != nil {
				t.Fatalf("RemoveRootfs: %v", err)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after RemoveRootfs: got %v, want the file gone", err)
			}
			if err := RemoveRootfs(t.Context(), r); err != nil {
				t.Errorf("second RemoveRootfs: got %v, want nil (idempotent)", err)
			}
		})
	}
}

func TestCreateRootfsRejects(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "rootfs.ext4")
	if err := os.WriteFile(base, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(dir, "odd.ext4")
	if err := os.WriteFile(odd, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	tests := []struct {
		name string
		req  RootfsRequest
		kind error
	}{
		{"unknown backend", RootfsRequest{Backend: "qcow2", Base: base, Path: dst}, errdefs.ErrInvalid},
		{"missing base", RootfsRequest{Backend: RootfsSparse, Base: filepath.Join(dir, "nope"), Path: dst}, errdefs.ErrNotFound},
		{"base is a directory", RootfsRequest{Backend: RootfsSparse, Base: dir, Path: dst}, errdefs.ErrInvalid},
		{"base not whole sectors", RootfsRequest{Backend: RootfsSparse, Base: odd, Path: dst}, errdefs.ErrInvalid},
		{"size below base", RootfsRequest{Backend: RootfsSparse, Base: base, Path: dst, Size: 4096}, errdefs.ErrInvalid},
		{"negative size", RootfsRequest{Backend: RootfsSparse, Base: base, Path: dst, Size: -1}, errdefs.ErrInvalid},
		{"empty path", RootfsRequest{Backend: RootfsSparse, Base: base}, errdefs.ErrInvalid},
		{"path exists", RootfsRequest{Backend: RootfsSparse, Base: base, Path: existing}, errdefs.ErrAlreadyExists},
		{"dm without name", RootfsRequest{Backend: RootfsDMSnapshot, Base: base, Path: dst}, errdefs.ErrInvalid},
		{"dm name with slash", RootfsRequest{Backend: RootfsDMSnapshot, Base: base, Path: dst, DMName: "../x"}, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHost{}
			_, err := createRootfs(t.Context(), f.ops(t.TempDir()), tt.req)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("got %v, want %v", err, tt.kind)
			}
			if len(f.calls) != 0 {
				t.Errorf("got host calls %q, want none", f.calls)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dst after rejected create: got %v, want none", err)
			}
		})
	}
	if data, err := os.ReadFile(existing); err != nil || string(data) != "keep me" {
		t.Errorf("existing file: got %q, %v; want it untouched", data, err)
	}
}

func TestProbeReflinkMissingDir(t *testing.T) {
	// A directory that does not exist yet is probed at its parent.
	dir := filepath.Join(t.TempDir(), "a", "b")
	err := probeReflink(dir)
	if err != nil && !strings.Contains(err.Error(), "does not support reflinks") {
		t.Errorf("got %v, want nil or a no-reflink reason", err)
	}
}
