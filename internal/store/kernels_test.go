package store

import (
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"banger/internal/errdefs"
	"banger/internal/model"
)

func newKernel(id, name string) model.Kernel {
	return model.Kernel{
		ID:         id,
		Name:       name,
		KernelPath: "/state/kernels/" + id + "/vmlinuz",
		InitrdPath: "/state/kernels/" + id + "/initrd.img",
		ModulesDir: "/state/kernels/" + id + "/modules",
		Version:    "6.1.0-28-amd64",
		Managed:    true,
		CreatedAt:  testTime,
	}
}

func TestKernelCRUD(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	k := newKernel("abcdef0123", "debian-6-1")
	if err := s.CreateKernel(ctx, k); err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	for _, ref := range []string{k.ID, k.Name, "abcdef"} {
		t.Run("get "+ref, func(t *testing.T) {
			got, err := s.GetKernel(ctx, ref)
			if err != nil {
				t.Fatalf("GetKernel(%q): %v", ref, err)
			}
			if got != k {
				t.Errorf("got %+v, want %+v", got, k)
			}
		})
	}
	other := newKernel("ffff00", "another")
	other.InitrdPath, other.ModulesDir, other.Version, other.Managed = "", "", "", false
	if err := s.CreateKernel(ctx, other); err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	ks, err := s.ListKernels(ctx)
	if err != nil {
		t.Fatalf("ListKernels: %v", err)
	}
	if len(ks) != 2 || ks[0] != other || ks[1] != k {
		t.Errorf("got %+v, want [%+v %+v]", ks, other, k)
	}
	if err := s.DeleteKernel(ctx, k.ID); err != nil {
		t.Fatalf("DeleteKernel: %v", err)
	}
	if _, err := s.GetKernel(ctx, k.Name); !errors.Is(err, errdefs.ErrNotFound) || err.Error() != `kernel "debian-6-1" not found` {
		t.Errorf("got %v after delete, want kernel \"debian-6-1\" not found", err)
	}
	if err := s.DeleteKernel(ctx, k.ID); err != nil {
		t.Errorf("second DeleteKernel: got %v, want nil", err)
	}
}

func TestCreateKernelErrors(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	if err := s.CreateKernel(ctx, newKernel("k1", "one")); err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	noPath := newKernel("k3", "three")
	noPath.KernelPath = ""
	tests := []struct {
		name string
		k    model.Kernel
		kind error
		want string
	}{
		{"taken name", newKernel("k2", "one"), errdefs.ErrAlreadyExists, `kernel "one" already exists`},
		{"taken id", newKernel("k1", "two"), errdefs.ErrAlreadyExists, `kernel id "k1" already exists`},
		{"no id", newKernel("", "two"), errdefs.ErrInvalid, "empty id"},
		{"no name", newKernel("k2", ""), errdefs.ErrInvalid, "empty name"},
		{"no kernel path", noPath, errdefs.ErrInvalid, "empty kernel path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateKernel(ctx, tt.k)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %v containing %q", err, tt.kind, tt.want)
			}
		})
	}
	ks, err := s.ListKernels(ctx)
	if err != nil || len(ks) != 1 {
		t.Errorf("got %d kernels (%v), want 1", len(ks), err)
	}
}

func TestKernelRefs(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	k := newKernel("kkkkkk01", "deb")
	if err := s.CreateKernel(ctx, k); err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	a, b := newImage("img001", "b-image"), newImage("img002", "a-image")
	a.KernelRef, b.KernelRef = "deb", "deb"
	for _, img := range []model.Image{a, b, newImage("img003", "plain")} {
		if err := s.CreateImage(ctx, img); err != nil {
			t.Fatalf("CreateImage %s: %v", img.Name, err)
		}
	}
	got, err := s.GetImage(ctx, a.ID)
	if err != nil {
		t.Fatalf("GetImage: %v", err)
	}
	if got != a {
		t.Errorf("got %+v, want %+v", got, a)
	}

	users, err := s.ImagesUsingKernel(ctx, "deb")
	if err != nil {
		t.Fatalf("ImagesUsingKernel: %v", err)
	}
	if want := []string{"a-image", "b-image"}; !slices.Equal(users, want) {
		t.Errorf("got users %v, want %v", users, want)
	}

	err = s.DeleteKernel(ctx, k.ID)
	if !errors.Is(err, errdefs.ErrConflict) || err.Error() != `kernel "deb" is used by images a-image, b-image; delete them first` {
		t.Errorf("DeleteKernel in use: got %v, want conflict naming a-image, b-image", err)
	}

	t.Run("unknown kernel ref", func(t *testing.T) {
		bad := newImage("img004", "bad")
		bad.KernelRef = "nosuch"
		err := s.CreateImage(ctx, bad)
		if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != `kernel "nosuch" not found` {
			t.Errorf("CreateImage: got %v, want kernel \"nosuch\" not found", err)
		}
		plain, err := s.GetImage(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		plain.KernelRef = "nosuch"
		if err := s.UpdateImage(ctx, plain); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("UpdateImage: got %v, want ErrNotFound", err)
		}
	})

	// Dropping the reference frees the kernel.
	for _, img := range []model.Image{a, b} {
		img.KernelRef = ""
		if err := s.UpdateImage(ctx, img); err != nil {
			t.Fatalf("UpdateImage: %v", err)
		}
	}
	if err := s.DeleteKernel(ctx, k.ID); err != nil {
		t.Errorf("DeleteKernel after the images dropped it: %v", err)
	}
}

// TestKernelsMigrationKeepsImages upgrades a database made by 0001 alone:
// its images survive with no kernel reference.
func TestKernelsMigrationKeepsImages(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "banger.db")
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	body, err := fs.ReadFile(migrationFiles, "migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, fstest.MapFS{"migrations/0001_init.sql": {Data: body}}); err != nil {
		t.Fatalf("migrate to 0001: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO images (id, name, kernel_path, created_at, updated_at)
		VALUES ('old001', 'old', '/k', ?, ?)`, formatTime(testTime), formatTime(testTime)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	img, err := s.GetImage(ctx, "old")
	if err != nil {
		t.Fatalf("GetImage: %v", err)
	}
	if img.KernelRef != "" || img.KernelPath != "/k" {
		t.Errorf("got kernel ref %q, path %q; want none and /k", img.KernelRef, img.KernelPath)
	}
	if err := s.CreateKernel(ctx, newKernel("kkkkkk01", "deb")); err != nil {
		t.Fatalf("CreateKernel after upgrade: %v", err)
	}
	img.KernelRef = "deb"
	if err := s.UpdateImage(ctx, img); err != nil {
		t.Fatalf("UpdateImage: %v", err)
	}
	if users, err := s.ImagesUsingKernel(ctx, "deb"); err != nil || !slices.Equal(users, []string{"old"}) {
		t.Errorf("got users %v (%v), want [old]", users, err)
	}
}
