package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// querier is what reads need from *sql.DB and *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const imageColumns = `images.id, images.name, images.managed, images.artifact_dir, images.rootfs_path,
	images.work_seed_path, images.kernel_path, images.initrd_path, images.modules_dir, images.build_size,
	images.seeded_ssh_public_key_fingerprint, images.created_at, images.updated_at,
	coalesce(images.kernel_ref, '')`

// CreateImage stores a new image. A zero CreatedAt becomes now and a zero
// UpdatedAt becomes CreatedAt. A taken name or id is ErrAlreadyExists.
func (s *Store) CreateImage(ctx context.Context, img model.Image) error {
	if err := validateImage(img); err != nil {
		return err
	}
	if img.CreatedAt.IsZero() {
		img.CreatedAt = model.Now()
	}
	if img.UpdatedAt.IsZero() {
		img.UpdatedAt = img.CreatedAt
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := imageNameFree(ctx, tx, img.Name, ""); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO images (id, name, managed, artifact_dir, rootfs_path,
			work_seed_path, kernel_path, initrd_path, modules_dir, build_size,
			seeded_ssh_public_key_fingerprint, created_at, updated_at, kernel_ref)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, imageArgs(img)...)
		if isUniqueViolation(err) {
			return fmt.Errorf("image id %q %w", img.ID, errdefs.ErrAlreadyExists)
		}
		if isForeignKeyViolation(err) {
			return kernelNotFound(img.KernelRef)
		}
		return err
	})
	if err != nil && !isKind(err) {
		return fmt.Errorf("create image %q: %w", img.Name, err)
	}
	return err
}

// GetImage returns the image whose id or name is ref, or whose id starts
// with ref when ref has at least six characters and names one image.
func (s *Store) GetImage(ctx context.Context, ref string) (model.Image, error) {
	imgs, err := queryImages(ctx, s.db, `SELECT `+imageColumns+` FROM images WHERE `+refQuery("images"), ref)
	if err != nil {
		return model.Image{}, fmt.Errorf("get image %q: %w", ref, err)
	}
	return resolveRef("image", ref, imgs,
		func(i model.Image) string { return i.ID },
		func(i model.Image) string { return i.Name })
}

// ListImages returns every image, ordered by name.
func (s *Store) ListImages(ctx context.Context) ([]model.Image, error) {
	imgs, err := queryImages(ctx, s.db, `SELECT `+imageColumns+` FROM images ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return imgs, nil
}

// UpdateImage replaces the stored image with img's id by img and sets its
// UpdatedAt to now. A missing image is ErrNotFound; a name another image
// has is ErrAlreadyExists.
func (s *Store) UpdateImage(ctx context.Context, img model.Image) error {
	if err := validateImage(img); err != nil {
		return err
	}
	img.UpdatedAt = model.Now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := imageNameFree(ctx, tx, img.Name, img.ID); err != nil {
			return err
		}
		args := append(imageArgs(img)[1:], img.ID)
		res, err := tx.ExecContext(ctx, `UPDATE images SET name = ?, managed = ?, artifact_dir = ?,
			rootfs_path = ?, work_seed_path = ?, kernel_path = ?, initrd_path = ?, modules_dir = ?,
			build_size = ?, seeded_ssh_public_key_fingerprint = ?, created_at = ?, updated_at = ?,
			kernel_ref = ? WHERE id = ?`, args...)
		if isForeignKeyViolation(err) {
			return kernelNotFound(img.KernelRef)
		}
		if err != nil {
			return err
		}
		return requireOneRow(res, "image", img.ID)
	})
	if err != nil && !isKind(err) {
		return fmt.Errorf("update image %q: %w", img.Name, err)
	}
	return err
}

// DeleteImage removes the image with id. Deleting a missing image is not an
// error; deleting one that VMs use is ErrConflict naming them.
func (s *Store) DeleteImage(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var name string
		err := tx.QueryRowContext(ctx, `SELECT name FROM images WHERE id = ?`, id).Scan(&name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		users, err := vmsUsingImage(ctx, tx, id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return imageInUse(name, users)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM images WHERE id = ?`, id)
		if isForeignKeyViolation(err) {
			return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("image %q is in use by vms", name))
		}
		return err
	})
	if err != nil && !isKind(err) {
		return fmt.Errorf("delete image %q: %w", id, err)
	}
	return err
}

func imageInUse(name string, vms []string) error {
	return errdefs.WithKind(errdefs.ErrConflict,
		fmt.Errorf("image %q is in use by vms %s; delete them first", name, strings.Join(vms, ", ")))
}

func validateImage(img model.Image) error {
	switch {
	case img.ID == "":
		return errdefs.Invalid(fmt.Errorf("image %q: empty id", img.Name))
	case img.Name == "":
		return errdefs.Invalid(fmt.Errorf("image %q: empty name", img.ID))
	}
	return nil
}

// imageNameFree fails with ErrAlreadyExists when an image other than
// exceptID is called name.
func imageNameFree(ctx context.Context, q querier, name, exceptID string) error {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM images WHERE name = ? AND id != ?`, name, exceptID).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("image %q %w", name, errdefs.ErrAlreadyExists)
	}
	return nil
}

func imageArgs(img model.Image) []any {
	return []any{img.ID, img.Name, img.Managed, img.ArtifactDir, img.RootfsPath,
		img.WorkSeedPath, img.KernelPath, img.InitrdPath, img.ModulesDir, img.BuildSize,
		img.SeededSSHPublicKeyFingerprint, formatTime(img.CreatedAt), formatTime(img.UpdatedAt),
		nullIfEmpty(img.KernelRef)}
}

func queryImages(ctx context.Context, q querier, query string, args ...any) ([]model.Image, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var imgs []model.Image
	for rows.Next() {
		var img model.Image
		var created, updated string
		if err := rows.Scan(&img.ID, &img.Name, &img.Managed, &img.ArtifactDir, &img.RootfsPath,
			&img.WorkSeedPath, &img.KernelPath, &img.InitrdPath, &img.ModulesDir, &img.BuildSize,
			&img.SeededSSHPublicKeyFingerprint, &created, &updated, &img.KernelRef); err != nil {
			return nil, err
		}
		if img.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		if img.UpdatedAt, err = parseTime(updated); err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return imgs, rows.Err()
}

// requireOneRow reports ErrNotFound when res changed no row.
func requireOneRow(res sql.Result, kind, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s %q %w", kind, id, errdefs.ErrNotFound)
	}
	return nil
}

// isKind reports whether err already carries an errdefs kind and a message
// naming its subject, so callers return it without another wrap.
func isKind(err error) bool {
	for _, kind := range []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalid, errdefs.ErrConflict} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}
