package network

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// threadNetnsPath is the network namespace of the calling thread.
const threadNetnsPath = "/proc/thread-self/ns/net"

// netnsRef is an open handle on a network namespace and its identity.
type netnsRef struct {
	fd       int
	dev, ino uint64
}

// threadNetns opens the calling thread's network namespace. The caller
// must hold its thread locked for the answer to mean anything.
func threadNetns() (netnsRef, error) {
	fd, err := unix.Open(threadNetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netnsRef{fd: -1}, fmt.Errorf("open network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return netnsRef{fd: -1}, fmt.Errorf("stat network namespace: %w", err)
	}
	return netnsRef{fd: fd, dev: st.Dev, ino: st.Ino}, nil
}

// close releases the handle; closing again does nothing.
func (n *netnsRef) close() {
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
}

// inNetns runs fn on one OS thread that is in the Manager's network
// namespace. The common case, a caller already there, runs fn on the
// caller's own (locked) thread. Otherwise fn runs on a fresh goroutine
// whose thread joins the namespace and is never unlocked, so the runtime
// ends that thread with the goroutine instead of reusing it elsewhere;
// the caller's thread never changes namespace. Joining needs
// CAP_SYS_ADMIN, which only such cross-namespace callers need.
func (m *Manager) inNetns(fn func() error) error {
	runtime.LockOSThread()
	var st unix.Stat_t
	if err := unix.Stat(threadNetnsPath, &st); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("stat thread network namespace: %w", err)
	}
	if st.Dev == m.ns.dev && st.Ino == m.ns.ino {
		defer runtime.UnlockOSThread()
		return fn()
	}
	runtime.UnlockOSThread()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		if err := unix.Setns(m.ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter the manager's network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
