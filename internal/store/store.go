// Package store is bangerd's embedded SQLite database: the images and VMs
// the daemon owns, behind numbered migrations embedded in the binary.
//
// The store holds records and enforces only what the schema can say (unique
// names and guest IPs, images in use); every decision about what a record
// should contain belongs to its callers. Only the daemon imports it; the
// guest agent must never pull it in.
//
// Several processes may open the same file at once: the journal is WAL,
// every connection waits up to ten seconds for a lock, and write
// transactions take the write lock when they begin, so concurrent writers
// queue instead of failing with SQLITE_BUSY.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"banger/internal/errdefs"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection or process before it gives up with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// timeFormat is RFC 3339 with a fixed nine-digit fraction: time.RFC3339Nano
// parses it, and for UTC times its text order is time order, which ORDER BY
// relies on.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Store is an open banger database. Its methods are safe for concurrent use.
type Store struct {
	db *sql.DB
}

// Open opens the database at path, creating the file with mode 0600 if it
// does not exist, and applies pending migrations. The parent directory must
// exist.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	if err := ensureFile(abs); err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	if err := connect(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %q: connect: %w", path, err)
	}
	if err := migrate(ctx, db, migrationFiles); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %q: migrate: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// SchemaVersion returns the number of the last migration applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	return schemaVersion(ctx, s.db)
}

// ensureFile creates the database file with mode 0600, or narrows the
// mode of an existing one; SQLite gives the -wal and -shm files the mode of
// the database file. It never opens the database file itself: closing a
// descriptor of a file would drop the POSIX locks that SQLite connections
// of this process hold on it. A new file is made under a temporary name and
// linked into place.
func ensureFile(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
		if err != nil {
			return err
		}
		tmp := f.Name()
		defer os.Remove(tmp)
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Chmod(tmp, 0o600); err != nil {
			return err
		}
		if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm() != 0o600 {
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// connect opens the first connection. When several processes open a new
// file at once, switching it to WAL can fail with SQLITE_BUSY without
// waiting (the switch upgrades a read lock, which SQLite never waits for),
// so connect retries until busyTimeout has passed. Once the file is in WAL
// mode, new connections do not hit this.
func connect(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	delay := 5 * time.Millisecond
	for {
		err := db.PingContext(ctx)
		if err == nil || sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay + time.Duration(rand.Int64N(int64(delay)))):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// dsn is the data source name of the database at path. The settings are
// DSN parameters, not statements run after open, so that every connection
// the pool opens carries them.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// inTx runs fn in one write transaction, which holds the database's write
// lock from its start, and commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		if rbErr := rollback(tx); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		return err
	}
	return tx.Commit()
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// formatTime renders t for a time column.
func formatTime(t time.Time) string {
	return t.UTC().Format(timeFormat)
}

// parseTime reads a time column.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// sqliteCode returns the extended result code of a SQLite error, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// minPrefixLen is the shortest id prefix a reference may use.
const minPrefixLen = 6

// resolveRef picks the match of ref among candidates: an exact id wins,
// then an exact name, then the only id starting with ref when ref has at
// least minPrefixLen characters. kind names the records in messages.
func resolveRef[T any](kind, ref string, candidates []T, id, name func(T) string) (T, error) {
	var zero T
	for _, c := range candidates {
		if id(c) == ref {
			return c, nil
		}
	}
	for _, c := range candidates {
		if name(c) == ref {
			return c, nil
		}
	}
	var matches []T
	if len(ref) >= minPrefixLen {
		for _, c := range candidates {
			if strings.HasPrefix(id(c), ref) {
				matches = append(matches, c)
			}
		}
	}
	switch len(matches) {
	case 0:
		return zero, fmt.Errorf("%s %q %w", kind, ref, errdefs.ErrNotFound)
	case 1:
		return matches[0], nil
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = name(m)
	}
	return zero, errdefs.Invalid(fmt.Errorf("%s id prefix %q is ambiguous: it matches %s; use more characters or the name",
		kind, ref, strings.Join(names, ", ")))
}

// refQuery is the WHERE clause that finds the candidates of a reference
// bound as ?1: exact id, exact name, or id prefix of minPrefixLen or more.
func refQuery(table string) string {
	return fmt.Sprintf("%[1]s.id = ?1 OR %[1]s.name = ?1 OR (length(?1) >= %[2]d AND substr(%[1]s.id, 1, length(?1)) = ?1)",
		table, minPrefixLen)
}
