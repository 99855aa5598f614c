package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"banger/internal/paths"
)

// ErrAlreadyRunning means another bangerd owns the state directory.
var ErrAlreadyRunning = errors.New("another bangerd runs for this state directory")

// lockWait bounds how long a starting daemon waits for the lock of one
// that is still shutting down.
var lockWait = 15 * time.Second

// lockInstance takes the exclusive lock that makes bangerd one per state
// directory, before it opens the store or touches the host: a second
// daemon would reconcile against the first one's work in progress
// (undoing its creates, removing the TAPs of VMs it is starting). A
// holder that answers on the socket is running: that fails at once with
// ErrAlreadyRunning. One that does not answer is starting or shutting
// down, and is waited for up to lockWait. The lock lasts as long as the
// returned file is open, and goes with the process however it ends.
func lockInstance(ctx context.Context, layout paths.Layout) (*os.File, error) {
	f, err := os.OpenFile(layout.LockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open daemon lock: %w", err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// Informational: who holds the lock.
			if err := f.Truncate(0); err == nil {
				f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
			}
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", layout.LockFile(), err)
		}
		holder := lockHolder(layout)
		if answers(layout.Socket()) {
			f.Close()
			return nil, fmt.Errorf("%w (pid %s, socket %s)", ErrAlreadyRunning, holder, layout.Socket())
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: pid %s holds %s but does not answer on %s after %s; stop it first", ErrAlreadyRunning, holder, layout.LockFile(), layout.Socket(), lockWait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lockHolder is the pid the lock file names, or "?".
func lockHolder(layout paths.Layout) string {
	b, err := os.ReadFile(layout.LockFile())
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return "?"
}

// answers reports whether something accepts connections on socket.
func answers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
