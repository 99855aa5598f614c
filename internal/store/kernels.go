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

const kernelColumns = `kernels.id, kernels.name, kernels.kernel_path, kernels.initrd_path,
	kernels.modules_dir, kernels.version, kernels.managed, kernels.created_at`

// CreateKernel stores a new catalog kernel. A zero CreatedAt becomes now.
// A taken name or id is ErrAlreadyExists.
func (s *Store) CreateKernel(ctx context.Context, k model.Kernel) error {
	switch {
	case k.ID == "":
		return errdefs.Invalid(fmt.Errorf("kernel %q: empty id", k.Name))
	case k.Name == "":
		return errdefs.Invalid(fmt.Errorf("kernel %q: empty name", k.ID))
	case k.KernelPath == "":
		return errdefs.Invalid(fmt.Errorf("kernel %q: empty kernel path", k.Name))
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = model.Now()
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM kernels WHERE name = ?`, k.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("kernel %q %w", k.Name, errdefs.ErrAlreadyExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO kernels (id, name, kernel_path, initrd_path, modules_dir,
			version, managed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Name, k.KernelPath, k.InitrdPath, k.ModulesDir, k.Version, k.Managed, formatTime(k.CreatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("kernel id %q %w", k.ID, errdefs.ErrAlreadyExists)
		}
		return err
	})
	if err != nil && !isKind(err) {
		return fmt.Errorf("create kernel %q: %w", k.Name, err)
	}
	return err
}

// GetKernel returns the kernel whose id or name is ref, or whose id
// starts with ref when ref has at least six characters and names one
// kernel.
func (s *Store) GetKernel(ctx context.Context, ref string) (model.Kernel, error) {
	ks, err := queryKernels(ctx, s.db, `SELECT `+kernelColumns+` FROM kernels WHERE `+refQuery("kernels"), ref)
	if err != nil {
		return model.Kernel{}, fmt.Errorf("get kernel %q: %w", ref, err)
	}
	return resolveRef("kernel", ref, ks,
		func(k model.Kernel) string { return k.ID },
		func(k model.Kernel) string { return k.Name })
}

// ListKernels returns every kernel, ordered by name.
func (s *Store) ListKernels(ctx context.Context) ([]model.Kernel, error) {
	ks, err := queryKernels(ctx, s.db, `SELECT `+kernelColumns+` FROM kernels ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	return ks, nil
}

// DeleteKernel removes the kernel with id. Deleting a missing kernel is
// not an error; deleting one that images use is ErrConflict naming them.
func (s *Store) DeleteKernel(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var name string
		err := tx.QueryRowContext(ctx, `SELECT name FROM kernels WHERE id = ?`, id).Scan(&name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		users, err := imagesUsingKernel(ctx, tx, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return kernelInUse(name, users)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM kernels WHERE id = ?`, id)
		if isForeignKeyViolation(err) {
			return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("kernel %q is in use by images", name))
		}
		return err
	})
	if err != nil && !isKind(err) {
		return fmt.Errorf("delete kernel %q: %w", id, err)
	}
	return err
}

// ImagesUsingKernel returns the names of the images whose KernelRef is
// name, ordered by name.
func (s *Store) ImagesUsingKernel(ctx context.Context, name string) ([]string, error) {
	users, err := imagesUsingKernel(ctx, s.db, name)
	if err != nil {
		return nil, fmt.Errorf("images using kernel %q: %w", name, err)
	}
	return users, nil
}

func imagesUsingKernel(ctx context.Context, q querier, name string) ([]string, error) {
	return queryStrings(ctx, q, `SELECT name FROM images WHERE kernel_ref = ? ORDER BY name`, name)
}

func kernelInUse(name string, images []string) error {
	return errdefs.WithKind(errdefs.ErrConflict,
		fmt.Errorf("kernel %q is used by images %s; delete them first", name, strings.Join(images, ", ")))
}

// kernelNotFound is the error of an image naming a kernel the catalog
// lacks.
func kernelNotFound(name string) error {
	return fmt.Errorf("kernel %q %w", name, errdefs.ErrNotFound)
}

// nullIfEmpty stores an empty optional reference as NULL, which a
// foreign key lets through.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func queryKernels(ctx context.Context, q querier, query string, args ...any) ([]model.Kernel, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ks []model.Kernel
	for rows.Next() {
		var k model.Kernel
		var created string
		if err := rows.Scan(&k.ID, &k.Name, &k.KernelPath, &k.InitrdPath, &k.ModulesDir,
			&k.Version, &k.Managed, &created); err != nil {
			return nil, err
		}
		if k.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	return ks, rows.Err()
}
