package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

// DialVsock connects to the agent on AF_VSOCK port of the guest with
// context id cid: the host side of QEMU's vhost-vsock-device. Unlike a
// virtio-serial socket, a connection means the agent itself accepted
// it. It fails at once when the guest refuses the port (no agent listens
// on vsock, as in images whose agent predates it) and with ErrNoAnswer
// when the guest does not answer by ctx's deadline (DefaultTimeout
// without one): a guest still booting, or one without a vsock driver.
// Its errors are errdefs.ErrUnavailable.
func DialVsock(ctx context.Context, cid, port uint32) (*Client, error) {
	conn, err := dialVsock(ctx, cid, port)
	if err != nil {
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("connect to vsock %d port %d: %w", cid, port, err))
	}
	return NewClient(conn), nil
}

func dialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	remote := vsockAddr{CID: cid, Port: port}
	f, err := connectFD(ctx, fd, &unix.SockaddrVM{CID: cid, Port: port}, "vsock:"+remote.String())
	if err != nil {
		return nil, err
	}
	local := vsockAddr{CID: unix.VMADDR_CID_HOST}
	if sa, err := unix.Getsockname(fd); err == nil {
		if vm, ok := sa.(*unix.SockaddrVM); ok {
			local = vsockAddr{CID: vm.CID, Port: vm.Port}
		}
	}
	return &vsockConn{File: f, local: local, remote: remote}, nil
}

// connectFD connects the non-blocking stream socket fd to sa within
// ctx's deadline (DefaultTimeout without one) and returns it as a
// pollable file named name. It owns fd: on error fd is closed.
func connectFD(ctx context.Context, fd int, sa unix.Sockaddr, name string) (*os.File, error) {
	err := unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, connectError(err)
	}
	inProgress := err != nil
	// The descriptor goes to the poller only now, as net does it: a vsock
	// socket that is not connecting yet polls as writable.
	f := os.NewFile(uintptr(fd), name)
	if inProgress {
		start := time.Now()
		deadline := callDeadline(ctx, start)
		if err := waitConnected(ctx, f, deadline); err != nil {
			f.Close()
			return nil, deadlineError(ctx, connectError(err), deadline.Sub(start))
		}
		f.SetWriteDeadline(time.Time{})
	}
	return f, nil
}

// waitConnected waits until the non-blocking connect on f completes,
// fails, or deadline or ctx ends.
func waitConnected(ctx context.Context, f *os.File, deadline time.Time) error {
	if err := f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var connErr error
	err = raw.Write(func(fd uintptr) bool {
		errno, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = err
			return true
		case errno != 0:
			connErr = unix.Errno(errno)
			return true
		}
		// No error yet: connected only once the socket has a peer.
		_, err = unix.Getpeername(int(fd))
		return err == nil
	})
	if err != nil {
		return err
	}
	return connErr
}

// connectError names the connect failures a caller can act on.
func connectError(err error) error {
	switch {
	case errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.ECONNREFUSED):
		return fmt.Errorf("nothing listens on the guest port (banger-agent predates vsock, or is not running): %w", err)
	case errors.Is(err, unix.ETIMEDOUT):
		return fmt.Errorf("%w: the guest did not answer the connection (still booting, or no vsock driver): %w", ErrNoAnswer, err)
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH):
		return fmt.Errorf("no guest with that context id: %w", err)
	}
	return err
}

// vsockAddr is an AF_VSOCK address.
type vsockAddr struct{ CID, Port uint32 }

func (a vsockAddr) Network() string { return "vsock" }
func (a vsockAddr) String() string  { return fmt.Sprintf("%d:%d", a.CID, a.Port) }

// vsockConn is a connected AF_VSOCK socket as a net.Conn: net.FileConn
// does not take vsock sockets, but a pollable os.File reads, writes and
// keeps deadlines the same way.
type vsockConn struct {
	*os.File
	local, remote vsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

var _ net.Conn = (*vsockConn)(nil)
