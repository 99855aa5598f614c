package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
)

const vmSelect = `SELECT vms.id, vms.name, vms.image_id, coalesce(images.name, ''), vms.state, vms.guest_ip,
	vms.created_at, vms.updated_at, vms.last_touched_at,
	vms.spec_json, vms.runtime_json, vms.stats_json, vms.workspace_json
	FROM vms LEFT JOIN images ON images.id = vms.image_id`

// CreateVM stores a new VM in one write transaction: it checks that the
// name is free and the image exists, and when rec.Runtime.GuestIP is empty
// calls allocIP with the guest IPs all VMs hold to choose one. A zero
// CreatedAt becomes now; zero UpdatedAt and LastTouchedAt become
// CreatedAt. It returns the record as stored.
func (s *Store) CreateVM(ctx context.Context, rec model.VMRecord, allocIP func(used []string) (string, error)) (model.VMRecord, error) {
	if err := validateVM(rec); err != nil {
		return model.VMRecord{}, err
	}
	rec = normalizeVM(rec)
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = model.Now()
	}
	if rec.UpdatedAt.IsZero() {
		rec.UpdatedAt = rec.CreatedAt
	}
	if rec.LastTouchedAt.IsZero() {
		rec.LastTouchedAt = rec.CreatedAt
	}
	var stored model.VMRecord
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := vmNameFree(ctx, tx, rec.Name, ""); err != nil {
			return err
		}
		if err := imageExists(ctx, tx, rec.ImageID); err != nil {
			return err
		}
		used, err := usedGuestIPs(ctx, tx)
		if err != nil {
			return err
		}
		if rec.Runtime.GuestIP == "" {
			if allocIP == nil {
				return errdefs.Invalid(fmt.Errorf("vm %q: no guest ip and no allocator", rec.Name))
			}
			ip, err := allocIP(used)
			if err != nil {
				return fmt.Errorf("allocate guest ip: %w", err)
			}
			if ip == "" {
				return fmt.Errorf("allocate guest ip: allocator returned no address")
			}
			rec.Runtime.GuestIP = ip
		}
		if slices.Contains(used, rec.Runtime.GuestIP) {
			return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("guest ip %q is already in use", rec.Runtime.GuestIP))
		}
		args, err := vmArgs(rec)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO vms (id, name, image_id, state, guest_ip,
			created_at, updated_at, last_touched_at, spec_json, runtime_json, stats_json, workspace_json)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
		if isUniqueViolation(err) {
			return fmt.Errorf("vm id %q %w", rec.ID, errdefs.ErrAlreadyExists)
		}
		if err != nil {
			return err
		}
		vms, err := queryVMs(ctx, tx, vmSelect+` WHERE vms.id = ?`, rec.ID)
		if err != nil {
			return err
		}
		if len(vms) != 1 {
			return fmt.Errorf("read back vm %q: got %d rows", rec.ID, len(vms))
		}
		stored = vms[0]
		return nil
	})
	if err != nil && !isKind(err) {
		return model.VMRecord{}, fmt.Errorf("create vm %q: %w", rec.Name, err)
	}
	return stored, err
}

// GetVM returns the VM whose id or name is ref, or whose id starts with ref
// when ref has at least six characters. A prefix that several VMs share is
// ErrInvalid.
func (s *Store) GetVM(ctx context.Context, ref string) (model.VMRecord, error) {
	vms, err := queryVMs(ctx, s.db, vmSelect+` WHERE `+refQuery("vms"), ref)
	if err != nil {
		return model.VMRecord{}, fmt.Errorf("get vm %q: %w", ref, err)
	}
	return resolveRef("vm", ref, vms,
		func(v model.VMRecord) string { return v.ID },
		func(v model.VMRecord) string { return v.Name })
}

// ListVMs returns every VM, oldest first, ties ordered by name.
func (s *Store) ListVMs(ctx context.Context) ([]model.VMRecord, error) {
	vms, err := queryVMs(ctx, s.db, vmSelect+` ORDER BY vms.created_at, vms.name`)
	if err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	return vms, nil
}

// UpdateVM replaces the stored VM with rec's id by rec, sets its UpdatedAt
// to now and copies State into Runtime.State. A missing VM is ErrNotFound;
// a name or guest IP another VM has is ErrAlreadyExists or ErrConflict.
func (s *Store) UpdateVM(ctx context.Context, rec model.VMRecord) error {
	if err := validateVM(rec); err != nil {
		return err
	}
	if rec.Runtime.GuestIP == "" {
		return errdefs.Invalid(fmt.Errorf("vm %q: empty guest ip", rec.Name))
	}
	rec = normalizeVM(rec)
	rec.UpdatedAt = model.Now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM vms WHERE id = ?`, rec.ID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("vm %q %w", rec.ID, errdefs.ErrNotFound)
		}
		if err := vmNameFree(ctx, tx, rec.Name, rec.ID); err != nil {
			return err
		}
		if err := imageExists(ctx, tx, rec.ImageID); err != nil {
			return err
		}
		var other string
		err := tx.QueryRowContext(ctx, `SELECT name FROM vms WHERE guest_ip = ? AND id != ?`, rec.Runtime.GuestIP, rec.ID).Scan(&other)
		if err == nil {
			return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("guest ip %q is already in use by vm %q", rec.Runtime.GuestIP, other))
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		args, err := vmArgs(rec)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE vms SET name = ?, image_id = ?, state = ?, guest_ip = ?,
			created_at = ?, updated_at = ?, last_touched_at = ?,
			spec_json = ?, runtime_json = ?, stats_json = ?, workspace_json = ?
			WHERE id = ?`, append(args[1:], rec.ID)...)
		if err != nil {
			return err
		}
		return requireOneRow(res, "vm", rec.ID)
	})
	if err != nil && !isKind(err) {
		return fmt.Errorf("update vm %q: %w", rec.Name, err)
	}
	return err
}

// DeleteVM removes the VM with id. Deleting a missing VM is not an error.
func (s *Store) DeleteVM(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM vms WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete vm %q: %w", id, err)
	}
	return nil
}

// VMsUsingImage returns the names of the VMs built on the image with
// imageID, ordered by name.
func (s *Store) VMsUsingImage(ctx context.Context, imageID string) ([]string, error) {
	names, err := vmsUsingImage(ctx, s.db, imageID)
	if err != nil {
		return nil, fmt.Errorf("vms using image %q: %w", imageID, err)
	}
	return names, nil
}

func vmsUsingImage(ctx context.Context, q querier, imageID string) ([]string, error) {
	return queryStrings(ctx, q, `SELECT name FROM vms WHERE image_id = ? ORDER BY name`, imageID)
}

func usedGuestIPs(ctx context.Context, q querier) ([]string, error) {
	return queryStrings(ctx, q, `SELECT guest_ip FROM vms ORDER BY guest_ip`)
}

func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func validateVM(rec model.VMRecord) error {
	switch {
	case rec.ID == "":
		return errdefs.Invalid(fmt.Errorf("vm %q: empty id", rec.Name))
	case rec.Name == "":
		return errdefs.Invalid(fmt.Errorf("vm %q: empty name", rec.ID))
	case rec.ImageID == "":
		return errdefs.Invalid(fmt.Errorf("vm %q: empty image id", rec.Name))
	case !rec.State.Valid():
		return errdefs.Invalid(fmt.Errorf("vm %q: unknown state %q", rec.Name, rec.State))
	}
	return nil
}

// normalizeVM makes rec what a read returns: Runtime.State equal to State,
// no image name (it is joined on read), times in UTC.
func normalizeVM(rec model.VMRecord) model.VMRecord {
	rec.Runtime.State = rec.State
	rec.ImageName = ""
	rec.CreatedAt = rec.CreatedAt.UTC()
	rec.UpdatedAt = rec.UpdatedAt.UTC()
	rec.LastTouchedAt = rec.LastTouchedAt.UTC()
	rec.Stats.CollectedAt = rec.Stats.CollectedAt.UTC()
	rec.Workspace.PreparedAt = rec.Workspace.PreparedAt.UTC()
	return rec
}

func vmNameFree(ctx context.Context, q querier, name, exceptID string) error {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM vms WHERE name = ? AND id != ?`, name, exceptID).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("vm %q %w", name, errdefs.ErrAlreadyExists)
	}
	return nil
}

func imageExists(ctx context.Context, q querier, id string) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM images WHERE id = ?`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("image %q %w", id, errdefs.ErrNotFound)
	}
	return nil
}

// vmArgs returns rec's column values in table order, id first.
func vmArgs(rec model.VMRecord) ([]any, error) {
	docs := make([]any, 0, 4)
	for _, v := range []any{rec.Spec, rec.Runtime, rec.Stats, rec.Workspace} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode vm %q: %w", rec.Name, err)
		}
		docs = append(docs, string(b))
	}
	return append([]any{rec.ID, rec.Name, rec.ImageID, string(rec.State), rec.Runtime.GuestIP,
		formatTime(rec.CreatedAt), formatTime(rec.UpdatedAt), formatTime(rec.LastTouchedAt)}, docs...), nil
}

func queryVMs(ctx context.Context, q querier, query string, args ...any) ([]model.VMRecord, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var vms []model.VMRecord
	for rows.Next() {
		var rec model.VMRecord
		var state, guestIP, created, updated, touched, spec, runtime, stats, workspace string
		if err := rows.Scan(&rec.ID, &rec.Name, &rec.ImageID, &rec.ImageName, &state, &guestIP,
			&created, &updated, &touched, &spec, &runtime, &stats, &workspace); err != nil {
			return nil, err
		}
		for _, d := range []struct {
			text string
			dst  any
		}{{spec, &rec.Spec}, {runtime, &rec.Runtime}, {stats, &rec.Stats}, {workspace, &rec.Workspace}} {
			if err := json.Unmarshal([]byte(d.text), d.dst); err != nil {
				return nil, fmt.Errorf("decode vm %q: %w", rec.ID, err)
			}
		}
		for _, t := range []struct {
			text string
			dst  *time.Time
		}{{created, &rec.CreatedAt}, {updated, &rec.UpdatedAt}, {touched, &rec.LastTouchedAt}} {
			if *t.dst, err = parseTime(t.text); err != nil {
				return nil, fmt.Errorf("decode vm %q: %w", rec.ID, err)
			}
		}
		rec.State = model.VMState(state)
		rec.Runtime.State = rec.State
		rec.Runtime.GuestIP = guestIP
		rec.Stats.CollectedAt = rec.Stats.CollectedAt.UTC()
		rec.Workspace.PreparedAt = rec.Workspace.PreparedAt.UTC()
		vms = append(vms, rec)
	}
	return vms, rows.Err()
}
