package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
)

func TestImageCRUD(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	img := newImage("aaaaaa111111", "bookworm")
	if err := s.CreateImage(ctx, img); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	got, err := s.GetImage(ctx, img.ID)
	if err != nil {
		t.Fatalf("GetImage: %v", err)
	}
	if got != img {
		t.Errorf("got %+v, want %+v", got, img)
	}

	img.Name = "bookworm-2"
	img.Managed = false
	img.KernelPath = "/other/vmlinux"
	before := model.Now()
	if err := s.UpdateImage(ctx, img); err != nil {
		t.Fatalf("UpdateImage: %v", err)
	}
	got, err = s.GetImage(ctx, "bookworm-2")
	if err != nil {
		t.Fatalf("GetImage after update: %v", err)
	}
	if got.UpdatedAt.Before(before) {
		t.Errorf("got UpdatedAt %v, want at least %v", got.UpdatedAt, before)
	}
	img.UpdatedAt = got.UpdatedAt
	if got != img {
		t.Errorf("got %+v, want %+v", got, img)
	}

	if err := s.DeleteImage(ctx, img.ID); err != nil {
		t.Fatalf("DeleteImage: %v", err)
	}
	if _, err := s.GetImage(ctx, img.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("got %v after delete, want ErrNotFound", err)
	}
	if err := s.DeleteImage(ctx, img.ID); err != nil {
		t.Errorf("second DeleteImage: got %v, want nil", err)
	}
}

func TestCreateImageFillsTimes(t *testing.T) {
	s, _ := openTestStore(t)
	img := newImage("img1", "one")
	img.CreatedAt, img.UpdatedAt = time.Time{}, time.Time{}
	if err := s.CreateImage(t.Context(), img); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	got, err := s.GetImage(t.Context(), "one")
	if err != nil {
		t.Fatalf("GetImage: %v", err)
	}
	if got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("got CreatedAt %v UpdatedAt %v, want now and equal", got.CreatedAt, got.UpdatedAt)
	}
}

func TestImageErrors(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	for _, img := range []model.Image{newImage("abcdef01", "one"), newImage("abcdef02", "two")} {
		if err := s.CreateImage(ctx, img); err != nil {
			t.Fatalf("CreateImage: %v", err)
		}
	}
	tests := []struct {
		name    string
		run     func() error
		kind    error
		wantMsg string
	}{
		{"duplicate name", func() error { return s.CreateImage(ctx, newImage("other", "one")) },
			errdefs.ErrAlreadyExists, `image "one" already exists`},
		{"duplicate id", func() error { return s.CreateImage(ctx, newImage("abcdef01", "three")) },
			errdefs.ErrAlreadyExists, `image id "abcdef01" already exists`},
		{"empty id", func() error { return s.CreateImage(ctx, newImage("", "x")) },
			errdefs.ErrInvalid, `image "x": empty id`},
		{"rename onto taken name", func() error { return s.UpdateImage(ctx, newImage("abcdef02", "one")) },
			errdefs.ErrAlreadyExists, `image "one" already exists`},
		{"update missing", func() error { return s.UpdateImage(ctx, newImage("gone", "gone")) },
			errdefs.ErrNotFound, `image "gone" not found`},
		{"get missing", func() error { _, err := s.GetImage(ctx, "nope"); return err },
			errdefs.ErrNotFound, `image "nope" not found`},
		{"get ambiguous prefix", func() error { _, err := s.GetImage(ctx, "abcdef"); return err },
			errdefs.ErrInvalid, `image id prefix "abcdef" is ambiguous: it matches one, two; use more characters or the name`},
		{"get short prefix", func() error { _, err := s.GetImage(ctx, "abcde"); return err },
			errdefs.ErrNotFound, `image "abcde" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if !errors.Is(err, tt.kind) {
				t.Fatalf("got error %v, want kind %v", err, tt.kind)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("got message %q, want %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

func TestGetImageRefs(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	// "abcdef0123" is also the name of the second image: an exact id wins
	// over a name, and a name over a prefix.
	a := newImage("abcdef0123", "alpha")
	b := newImage("fedcba9876", "abcdef0123")
	c := newImage("abcdef9999", "abcdef")
	for _, img := range []model.Image{a, b, c} {
		if err := s.CreateImage(ctx, img); err != nil {
			t.Fatalf("CreateImage: %v", err)
		}
	}
	tests := []struct {
		ref    string
		wantID string
	}{
		{"abcdef0123", a.ID},
		{"alpha", a.ID},
		{"fedcba", b.ID},
		{"abcdef", c.ID},
		{"abcdef01", a.ID},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := s.GetImage(ctx, tt.ref)
			if err != nil {
				t.Fatalf("GetImage: %v", err)
			}
			if got.ID != tt.wantID {
				t.Errorf("got id %q, want %q", got.ID, tt.wantID)
			}
		})
	}
}

func TestListImagesByName(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	got, err := s.ListImages(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty store: got %v, %v, want no images", got, err)
	}
	for _, img := range []model.Image{newImage("3", "zulu"), newImage("1", "alpha"), newImage("2", "mike")} {
		if err := s.CreateImage(ctx, img); err != nil {
			t.Fatalf("CreateImage: %v", err)
		}
	}
	want := []model.Image{newImage("1", "alpha"), newImage("2", "mike"), newImage("3", "zulu")}
	got, err = s.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestDeleteImageInUse(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	img := newImage("img1", "bookworm")
	if err := s.CreateImage(ctx, img); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	for i, name := range []string{"web", "db"} {
		vm := newVM(fmt.Sprintf("vm%04d", i), name, img.ID)
		vm.Runtime.GuestIP = fmt.Sprintf("172.16.0.%d", 2+i)
		if _, err := s.CreateVM(ctx, vm, nil); err != nil {
			t.Fatalf("CreateVM: %v", err)
		}
	}
	users, err := s.VMsUsingImage(ctx, img.ID)
	if err != nil {
		t.Fatalf("VMsUsingImage: %v", err)
	}
	if want := []string{"db", "web"}; !reflect.DeepEqual(users, want) {
		t.Errorf("got users %v, want %v", users, want)
	}

	err = s.DeleteImage(ctx, img.ID)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if want := `image "bookworm" is in use by vms db, web; delete them first`; err.Error() != want {
		t.Errorf("got message %q, want %q", err.Error(), want)
	}
	if _, err := s.GetImage(ctx, img.ID); err != nil {
		t.Errorf("image gone after refused delete: %v", err)
	}

	// The foreign key refuses it as well, whatever the store's own check does.
	_, err = s.db.ExecContext(ctx, `DELETE FROM images WHERE id = ?`, img.ID)
	if !isForeignKeyViolation(err) {
		t.Errorf("raw delete: got %v, want a foreign key violation", err)
	}

	for _, id := range []string{"vm0000", "vm0001"} {
		if err := s.DeleteVM(ctx, id); err != nil {
			t.Fatalf("DeleteVM: %v", err)
		}
	}
	if err := s.DeleteImage(ctx, img.ID); err != nil {
		t.Errorf("DeleteImage after its vms are gone: %v", err)
	}
}
