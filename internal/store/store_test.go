package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"banger/internal/model"
)

// openTestStore opens a store in a fresh directory and closes it when the
// test ends.
func openTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "banger.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// testTime is a fixed time stamp with a fraction, to show that times keep
// their precision.
var testTime = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func newImage(id, name string) model.Image {
	return model.Image{
		ID:                            id,
		Name:                          name,
		Managed:                       true,
		ArtifactDir:                   "/state/images/" + id,
		RootfsPath:                    "/state/images/" + id + "/rootfs.ext4",
		WorkSeedPath:                  "/state/images/" + id + "/work-seed.ext4",
		KernelPath:                    "/state/images/" + id + "/vmlinux",
		InitrdPath:                    "/state/images/" + id + "/initrd.img",
		ModulesDir:                    "/state/images/" + id + "/modules",
		BuildSize:                     "2G",
		SeededSSHPublicKeyFingerprint: "SHA256:abc",
		CreatedAt:                     testTime,
		UpdatedAt:                     testTime.Add(time.Minute),
	}
}

func newVM(id, name, imageID string) model.VMRecord {
	return model.VMRecord{
		ID:            id,
		Name:          name,
		ImageID:       imageID,
		State:         model.VMStateCreated,
		CreatedAt:     testTime,
		UpdatedAt:     testTime,
		LastTouchedAt: testTime,
		Spec: model.VMSpec{
			VCPUCount:             2,
			MemoryMiB:             2048,
			SystemOverlaySizeByte: 8 << 30,
			WorkDiskSizeBytes:     8 << 30,
			NATEnabled:            true,
		},
		Runtime: model.VMRuntime{
			State:         model.VMStateCreated,
			VMDir:         "/state/vms/" + id,
			DNSName:       name + ".vm",
			VMM:           "qemu",
			Accel:         "tcg",
			PID:           4242,
			PIDStartTime:  987654,
			MACAddress:    "02:fc:00:00:00:02",
			TapDevice:     "tap-fc-" + id[:4],
			SystemOverlay: "/state/vms/" + id + "/system.cow",
			WorkDiskPath:  "/state/vms/" + id + "/work.ext4",
		},
		Stats: model.VMStats{
			CollectedAt: testTime.Add(time.Second),
			CPUPercent:  12.5,
			RSSBytes:    1 << 20,
			// JSON numbers come back as float64.
			MetricsRaw: map[string]any{"uptime": float64(7), "name": "x"},
		},
		Workspace: model.VMWorkspace{
			GuestPath:  "/root/repo",
			SourcePath: "/home/dev/repo",
			HeadCommit: "deadbeef",
			PreparedAt: testTime.Add(2 * time.Second),
		},
	}
}

func TestOpenFileMode(t *testing.T) {
	s, path := openTestStore(t)
	// A write creates the -wal file; SQLite gives it the database's mode.
	if err := s.CreateImage(t.Context(), newImage("img1", "one")); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			info, err := os.Stat(p)
			if err != nil {
				t.Fatalf("stat: %v", err)
			}
			if got := info.Mode().Perm(); got != 0o600 {
				t.Errorf("got mode %o, want 600", got)
			}
		})
	}
}

func TestOpenNarrowsExistingMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banger.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("got mode %o, want 600", got)
	}
}

// TestPragmasOnEveryConnection checks that settings hold on each pooled
// connection, not only the first.
func TestPragmasOnEveryConnection(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	var conns []*sql.Conn
	for range 3 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatalf("Conn: %v", err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
		{"synchronous", "2"}, // FULL, the default: a commit survives power loss
	}
	for i, c := range conns {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("conn%d/%s", i, tt.pragma), func(t *testing.T) {
				var got string
				if err := c.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
					t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
				}
				if got != tt.want {
					t.Errorf("got %s = %q, want %q", tt.pragma, got, tt.want)
				}
			})
		}
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "odd ?dir#%20")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "banger.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := s.CreateImage(t.Context(), newImage("img1", "one")); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("got %v, want the database files in %q", err, dir)
	}
}

func TestReopenKeepsDataAndVersion(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "banger.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	img := newImage("img1", "one")
	if err := s.CreateImage(ctx, img); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	want, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatalf("SchemaVersion: %v", err)
	}
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	if want != len(ms) {
		t.Errorf("got schema version %d, want %d (the embedded migrations)", want, len(ms))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for i := range 2 {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		got, err := s.SchemaVersion(ctx)
		if err != nil {
			t.Fatalf("SchemaVersion: %v", err)
		}
		if got != want {
			t.Errorf("reopen %d: got schema version %d, want %d", i, got, want)
		}
		var rows int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != want {
			t.Errorf("reopen %d: got %d schema_migrations rows, want %d", i, rows, want)
		}
		gotImg, err := s.GetImage(ctx, "one")
		if err != nil {
			t.Fatalf("reopen %d: GetImage: %v", i, err)
		}
		if gotImg != img {
			t.Errorf("reopen %d: got %+v, want %+v", i, gotImg, img)
		}
		s.Close()
	}
}

func TestMigrate(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name        string
		first       fstest.MapFS // applied before, must succeed
		fsys        fstest.MapFS
		wantErr     string
		wantVersion int
		wantTables  []string
	}{
		{
			name: "applies in order",
			fsys: fstest.MapFS{
				"migrations/0002_b.sql": file(`ALTER TABLE a ADD COLUMN y TEXT;`),
				"migrations/0001_a.sql": file(`CREATE TABLE a (x TEXT); CREATE TABLE c (z TEXT);`),
			},
			wantVersion: 2,
			wantTables:  []string{"a", "c"},
		},
		{
			name:        "applies only the new ones",
			first:       fstest.MapFS{"migrations/0001_a.sql": file(`CREATE TABLE a (x TEXT);`)},
			fsys:        fstest.MapFS{"migrations/0001_a.sql": file(`CREATE TABLE a (x TEXT);`), "migrations/0002_b.sql": file(`CREATE TABLE b (x TEXT);`)},
			wantVersion: 2,
			wantTables:  []string{"a", "b"},
		},
		{
			name: "failed migration rolls back",
			fsys: fstest.MapFS{
				"migrations/0001_a.sql": file(`CREATE TABLE a (x TEXT);`),
				"migrations/0002_b.sql": file(`CREATE TABLE b (x TEXT); INSERT INTO missing VALUES (1);`),
			},
			wantErr:     `apply migration "0002_b.sql"`,
			wantVersion: 1,
			wantTables:  []string{"a"},
		},
		{
			name:    "gap in numbers",
			fsys:    fstest.MapFS{"migrations/0001_a.sql": file(`SELECT 1;`), "migrations/0003_c.sql": file(`SELECT 1;`)},
			wantErr: "want version 2",
		},
		{
			name:    "bad name",
			fsys:    fstest.MapFS{"migrations/init.sql": file(`SELECT 1;`)},
			wantErr: "NNNN_description.sql",
		},
		{
			name:        "database newer than binary",
			first:       fstest.MapFS{"migrations/0001_a.sql": file(`SELECT 1;`), "migrations/0002_b.sql": file(`SELECT 1;`)},
			fsys:        fstest.MapFS{"migrations/0001_a.sql": file(`SELECT 1;`)},
			wantErr:     "newer than this binary",
			wantVersion: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "m.db")))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if tt.first != nil {
				if err := migrate(ctx, db, tt.first); err != nil {
					t.Fatalf("first migrate: %v", err)
				}
			}
			err = migrate(ctx, db, tt.fsys)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantVersion == 0 {
				return
			}
			if got, err := schemaVersion(ctx, db); err != nil || got != tt.wantVersion {
				t.Errorf("got version %d (%v), want %d", got, err, tt.wantVersion)
			}
			if got := userTables(t, ctx, db); strings.Join(got, ",") != strings.Join(tt.wantTables, ",") {
				t.Errorf("got tables %v, want %v", got, tt.wantTables)
			}
		})
	}
}

func userTables(t *testing.T, ctx context.Context, db *sql.DB) []string {
	t.Helper()
	names, err := queryStrings(ctx, db, `SELECT name FROM sqlite_schema
		WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations' ORDER BY name`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	return names
}
