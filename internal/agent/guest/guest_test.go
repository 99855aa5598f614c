package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/agent"
)

// socketPair returns the guest end as a pollable *os.File, like a
// virtio-serial port, and the host end.
func socketPair(t *testing.T) (guest, host *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	guest, host = os.NewFile(uintptr(fds[0]), "guest"), os.NewFile(uintptr(fds[1]), "host")
	t.Cleanup(func() { guest.Close(); host.Close() })
	return guest, host
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestSerialPortServes(t *testing.T) {
	g, h := socketPair(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	port := newSerialPort(ctx, g)
	if port.raw == nil {
		t.Fatal("got a socket outside the poller, want it polled")
	}
	go (&agent.Server{}).Serve(ctx, port)
	h.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(h)
	for id := 1; id <= 3; id++ {
		fmt.Fprintf(h, "\n{\"v\":1,\"id\":%d,\"method\":\"ping\"}\n", id)
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read response %d: %v", id, err)
		}
		var resp agent.Response
		if err := json.Unmarshal(line, &resp); err != nil || resp.ID != uint64(id) || resp.Error != "" {
			t.Errorf("got %s (%v), want a ping answer with id %d", line, err, id)
		}
	}
}

func TestSerialPortHostGone(t *testing.T) {
	g, h := socketPair(t)
	ctx, cancel := context.WithCancel(t.Context())
	port := newSerialPort(ctx, g)
	defer port.Close()
	h.Close() // every read now reports end of file, like a port with no host client

	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	before := cpuTime(t)
	go func() {
		n, err := port.Read(make([]byte, 64))
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("got Read %d, %v with no host, want it to wait", r.n, r.err)
	case <-time.After(700 * time.Millisecond):
	}
	cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("got %d, %v after cancel, want context.Canceled", r.n, r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Read did not return within 3s of cancel")
	}
	// A spinning reader burns the whole 700 ms; a parked one next to nothing.
	if used := cpuTime(t) - before; used > 200*time.Millisecond {
		t.Errorf("got %s of CPU while waiting for a host, want next to none", used)
	}
}

func TestSerialPortUnpolled(t *testing.T) {
	// A regular file is not pollable: Read falls back to retrying every
	// retryDelay at end of file.
	p := filepath.Join(t.TempDir(), "port")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*retryDelay)
	defer cancel()
	port, err := openSerial(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	if port.raw != nil {
		t.Fatal("got a regular file in the poller, want the fallback")
	}
	got, err := io.ReadAll(port)
	if string(got) != "abc" || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %q, %v, want abc and then the context's end (no EOF)", got, err)
	}
}

func TestRunWithoutDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Run(ctx, Options{SerialPath: filepath.Join(t.TempDir(), "missing"), VsockPort: 0})
	if err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %s to stop, want about 300ms", d)
	}
}

func TestVsockLoopback(t *testing.T) {
	if _, err := os.Stat(vsockDevice); err != nil {
		t.Skip("no /dev/vsock: load vhost_vsock and vsock_loopback to run this test")
	}
	port := uint32(40000 + os.Getpid()%20000)
	l, err := listenVsock(port)
	if err != nil {
		t.Skipf("cannot listen on vsock (%v): load vsock_loopback to run this test", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { serveVsock(ctx, slog.New(slog.DiscardHandler), &agent.Server{}, l); close(done) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Error("serveVsock did not stop within 3s of cancel")
		}
	}()

	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_LOCAL, Port: port}); err != nil {
		unix.Close(fd)
		if errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ETIMEDOUT) {
			t.Skipf("no vsock loopback transport (%v): modprobe vsock_loopback to run this test", err)
		}
		t.Fatalf("connect to vsock port %d: %v", port, err)
	}
	conn := os.NewFile(uintptr(fd), "vsock-client")
	defer conn.Close()
	for i := range 2 {
		fmt.Fprintf(conn, "{\"v\":1,\"id\":%d,\"method\":\"health\"}\n", i+1)
		var resp agent.Response
		line, err := bufio.NewReader(conn).ReadBytes('\n')
		if err != nil || json.Unmarshal(line, &resp) != nil || resp.ID != uint64(i+1) || resp.Error != "" {
			t.Fatalf("got %q, %v, want a health answer", line, err)
		}
	}
}

// TestWatchVsockWaitsForTheDevice checks that the agent starts serving
// vsock when the device shows up after it started, and keeps trying
// while listening fails.
func TestWatchVsockWaitsForTheDevice(t *testing.T) {
	defer func(d time.Duration, l func(uint32) (*os.File, error)) { missingPortRecheck, vsockListen = d, l }(missingPortRecheck, vsockListen)
	missingPortRecheck = 20 * time.Millisecond
	device := filepath.Join(t.TempDir(), "vsock")
	type call struct {
		port      uint32
		devExists bool
	}
	calls := make(chan call, 100)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	failures := 2
	vsockListen = func(port uint32) (*os.File, error) {
		_, err := os.Stat(device)
		calls <- call{port, err == nil}
		if failures > 0 {
			failures--
			return nil, syscall.ENODEV
		}
		return r, nil // a listener stand-in: accept fails, the server returns
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { watchVsock(ctx, slog.New(slog.DiscardHandler), &agent.Server{}, device, 1024); close(done) }()

	time.Sleep(100 * time.Millisecond)
	select {
	case c := <-calls:
		t.Fatalf("listened (%+v) before the device existed", c)
	default:
	}
	if err := os.WriteFile(device, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case c := <-calls:
			if c.port != 1024 || !c.devExists {
				t.Errorf("listen %d: got %+v, want port 1024 with the device present", i, c)
			}
		case <-ctx.Done():
			t.Fatalf("listen %d never came: got %d of 3 (two failures, then success)", i, i)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("watchVsock did not return within 3s of cancel")
	}
}
