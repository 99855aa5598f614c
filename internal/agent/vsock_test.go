package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

// The vsock connect path is the same non-blocking connect for any
// stream socket, so these tests drive connectFD with TCP on loopback: a
// host without vhost_vsock has no vsock peer to connect to, and a vsock
// connect from a guest host would go out to its hypervisor.

func tcpSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func sockaddr(t *testing.T, addr string) *unix.SockaddrInet4 {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
}

func TestConnectFDConnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	f, err := connectFD(ctx, tcpSocket(t), sockaddr(t, l.Addr().String()), "test")
	if err != nil {
		t.Fatalf("got err %v, want a connection", err)
	}
	conn := &vsockConn{File: f, remote: vsockAddr{CID: 3, Port: 1024}}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatalf("write: %v", err)
	}
	conn.Close()
	if s := <-got; s != "hello" {
		t.Errorf("got %q at the other end, want %q", s, "hello")
	}
	if a := conn.RemoteAddr(); a.Network() != "vsock" || a.String() != "3:1024" {
		t.Errorf("got remote addr %s %s, want vsock 3:1024", a.Network(), a)
	}
}

func TestConnectFDFailures(t *testing.T) {
	// A port that was just listening and is closed now refuses.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	// A listener whose accept queue is full drops new connection
	// requests, so a connect waits: a guest that does not answer.
	full := fullListener(t)

	tests := []struct {
		name      string
		timeout   time.Duration // 0: the context has ended before the dial
		addr      string
		wantIs    error
		wantInMsg string
		maxWait   time.Duration
	}{
		{name: "refused", timeout: 5 * time.Second, addr: closed, wantIs: unix.ECONNREFUSED, wantInMsg: "nothing listens on the guest port", maxWait: 2 * time.Second},
		{name: "no answer", timeout: 300 * time.Millisecond, addr: full, wantIs: ErrNoAnswer, maxWait: 2 * time.Second},
		{name: "cancelled", timeout: 0, addr: full, wantIs: context.Canceled, maxWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			if tt.timeout > 0 {
				ctx, cancel = context.WithTimeout(t.Context(), tt.timeout)
			} else {
				cancel()
			}
			defer cancel()
			start := time.Now()
			f, err := connectFD(ctx, tcpSocket(t), sockaddr(t, tt.addr), "test")
			if err == nil {
				f.Close()
				t.Fatalf("got a connection, want an error matching %v", tt.wantIs)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("got err %v, want one matching %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("got err %q, want it to contain %q", err, tt.wantInMsg)
			}
			if waited := time.Since(start); waited > tt.maxWait {
				t.Errorf("got a wait of %v, want at most %v", waited, tt.maxWait)
			}
		})
	}
}

// fullListener returns the address of a loopback listener that never
// accepts, with its accept queue filled.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port)).String()
	// Fill the queue until a connection no longer completes at once.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("listener %s with backlog 0 took 8 connections, want its queue full", addr)
	return ""
}

func TestConnectError(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantIs    error
		wantInMsg string
	}{
		{name: "reset", err: unix.ECONNRESET, wantIs: unix.ECONNRESET, wantInMsg: "predates vsock"},
		{name: "timed out", err: unix.ETIMEDOUT, wantIs: ErrNoAnswer, wantInMsg: "still booting"},
		{name: "no such guest", err: unix.ENODEV, wantIs: unix.ENODEV, wantInMsg: "no guest with that context id"},
		{name: "other", err: unix.EACCES, wantIs: unix.EACCES, wantInMsg: "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := connectError(tt.err)
			if !errors.Is(got, tt.wantIs) || !strings.Contains(got.Error(), tt.wantInMsg) {
				t.Errorf("got %v, want an error matching %v that contains %q", got, tt.wantIs, tt.wantInMsg)
			}
		})
	}
}

func TestDialVsockErrorsAreUnavailable(t *testing.T) {
	// A context that has ended fails before a socket is made: nothing
	// goes out (from a host that is itself a guest, a vsock connect to
	// the host CID would reach its hypervisor).
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := DialVsock(ctx, unix.VMADDR_CID_HOST, 1024)
	if err == nil {
		t.Fatal("got a connection on an ended context, want an error")
	}
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("got err %v, want errdefs.ErrUnavailable", err)
	}
}
