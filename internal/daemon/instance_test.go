package daemon

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"banger/internal/paths"
)

func testLayout(t *testing.T) paths.Layout {
	t.Helper()
	dir := t.TempDir()
	l := paths.Layout{StateDir: filepath.Join(dir, "state"), RuntimeDir: filepath.Join(dir, "run"), ConfigDir: filepath.Join(dir, "config"), LogDir: filepath.Join(dir, "log"), CacheDir: filepath.Join(dir, "cache")}
	if err := l.Ensure(); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLockInstance(t *testing.T) {
	defer func(d time.Duration) { lockWait = d }(lockWait)
	lockWait = 500 * time.Millisecond

	t.Run("a serving holder fails the second at once", func(t *testing.T) {
		l := testLayout(t)
		first, err := lockInstance(t.Context(), l)
		if err != nil {
			t.Fatalf("first lock: %v", err)
		}
		defer first.Close()
		ln, err := net.Listen("unix", l.Socket())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		start := time.Now()
		_, err = lockInstance(t.Context(), l)
		if !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("second lock: got %v, want ErrAlreadyRunning", err)
		}
		if d := time.Since(start); d > 300*time.Millisecond {
			t.Errorf("second lock took %s, want an immediate refusal", d)
		}
	})

	t.Run("a silent holder is waited for", func(t *testing.T) {
		l := testLayout(t)
		first, err := lockInstance(t.Context(), l)
		if err != nil {
			t.Fatalf("first lock: %v", err)
		}
		time.AfterFunc(200*time.Millisecond, func() { first.Close() })
		second, err := lockInstance(t.Context(), l)
		if err != nil {
			t.Fatalf("second lock after the first closed: %v", err)
		}
		second.Close()
	})

	t.Run("a silent holder that stays fails after the wait", func(t *testing.T) {
		l := testLayout(t)
		first, err := lockInstance(t.Context(), l)
		if err != nil {
			t.Fatalf("first lock: %v", err)
		}
		defer first.Close()
		_, err = lockInstance(t.Context(), l)
		if !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("second lock: got %v, want ErrAlreadyRunning", err)
		}
	})

	t.Run("released with the file", func(t *testing.T) {
		l := testLayout(t)
		for i := range 3 {
			f, err := lockInstance(t.Context(), l)
			if err != nil {
				t.Fatalf("lock %d: %v", i, err)
			}
			f.Close()
		}
	})
}
