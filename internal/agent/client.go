package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"banger/internal/errdefs"
)

// DefaultTimeout bounds a call or a dial whose context has no deadline.
const DefaultTimeout = 3 * time.Second

// ErrNoAnswer means the agent did not answer in time: the guest is still
// booting, is wedged, or its image predates banger-agent. Errors that
// wrap it are also errdefs.ErrUnavailable.
var ErrNoAnswer = errors.New("no answer from the banger agent")

// RemoteError is an error response from the agent.
type RemoteError struct {
	Method  string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("banger agent %s: %s", e.Method, e.Message)
}

// Client talks to one agent over one connection. Its methods are safe for
// concurrent use; requests go one at a time.
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	nextID uint64
}

// NewClient speaks the protocol over conn, which the Client then owns.
func NewClient(conn net.Conn) *Client {
	return newClient(conn, bufio.NewReaderSize(conn, 64<<10))
}

func newClient(conn net.Conn, r *bufio.Reader) *Client {
	// A random first id keeps a new client from taking an answer meant
	// for an earlier, abandoned one on the same serial stream.
	return &Client{conn: conn, r: r, nextID: rand.Uint64N(1 << 40)}
}

// Dial connects to the agent through a unix socket that leads straight to
// it: QEMU's chardev socket for the virtio-serial port. It succeeds when
// the VMM listens, whether or not an agent runs in the guest; the first
// call tells.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("connect to agent socket %s: %w", socketPath, err))
	}
	return NewClient(conn), nil
}

// DialFirecrackerVsock connects to the agent's vsock port through
// Firecracker's vsock unix socket: it sends "CONNECT <port>\n" and expects
// "OK <host port>\n" before the stream is the guest's. Firecracker closes
// the connection when nothing listens on the guest port.
func DialFirecrackerVsock(ctx context.Context, udsPath string, port uint32) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", udsPath)
	if err != nil {
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("connect to vsock socket %s: %w", udsPath, err))
	}
	fail := func(err error) (*Client, error) {
		conn.Close()
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("connect to vsock port %d through %s: %w", port, udsPath, err))
	}
	start := time.Now()
	deadline := callDeadline(ctx, start)
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		return fail(err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	line, err := readLine(r, 256)
	switch {
	case errors.Is(err, io.EOF):
		return fail(fmt.Errorf("%w: nothing listens on the guest port (is banger-agent running?)", ErrNoAnswer))
	case err != nil:
		return fail(deadlineError(ctx, err, deadline.Sub(start)))
	case !strings.HasPrefix(string(line), "OK "):
		return fail(fmt.Errorf("unexpected handshake reply %q, want \"OK <port>\"", line))
	}
	conn.SetDeadline(time.Time{})
	return newClient(conn, r), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call sends method and decodes its result into out (nil to discard).
// It waits until ctx's deadline, or DefaultTimeout when ctx has none.
func (c *Client) Call(ctx context.Context, method string, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	deadline := callDeadline(ctx, start)
	if err := c.conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("agent %s: %w", method, err)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c.nextID++
	id := c.nextID
	req, err := json.Marshal(Request{V: ProtocolVersion, ID: id, Method: method})
	if err != nil {
		return fmt.Errorf("agent %s: %w", method, err)
	}
	// The leading newline ends any partial line an abandoned client left
	// in the stream.
	msg := make([]byte, 0, len(req)+2)
	msg = append(append(append(msg, '\n'), req...), '\n')
	if _, err := c.conn.Write(msg); err != nil {
		return fmt.Errorf("agent %s: send: %w", method, deadlineError(ctx, err, deadline.Sub(start)))
	}
	for {
		line, err := readLine(c.r, MaxLine)
		switch {
		case errors.Is(err, errLineTooLong):
			return fmt.Errorf("agent %s: response %w", method, err)
		case errors.Is(err, io.EOF):
			return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("agent %s: the connection closed before an answer", method))
		case err != nil:
			return fmt.Errorf("agent %s: %w", method, deadlineError(ctx, err, deadline.Sub(start)))
		}
		var resp Response
		if json.Unmarshal(line, &resp) != nil || resp.ID != id {
			continue // stale bytes from an earlier exchange
		}
		if resp.V != ProtocolVersion {
			return fmt.Errorf("agent %s: the agent answered in protocol version %d, want %d (rebuild the image to update banger-agent)", method, resp.V, ProtocolVersion)
		}
		if resp.Error != "" {
			return &RemoteError{Method: method, Message: resp.Error}
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("agent %s: decode result: %w", method, err)
		}
		return nil
	}
}

// Health returns the guest's health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.Call(ctx, MethodHealth, &h)
	return h, err
}

// Ping returns the round-trip time of a trivial request.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := c.Call(ctx, MethodPing, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Ports returns the guest's listening sockets.
func (c *Client) Ports(ctx context.Context) ([]Listener, error) {
	var p Ports
	if err := c.Call(ctx, MethodPorts, &p); err != nil {
		return nil, err
	}
	return p.Listeners, nil
}

// callDeadline is ctx's deadline, or DefaultTimeout from start.
func callDeadline(ctx context.Context, start time.Time) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return start.Add(DefaultTimeout)
}

// deadlineError turns a connection deadline into ErrNoAnswer, or into
// ctx's error when ctx was cancelled.
func deadlineError(ctx context.Context, err error, waited time.Duration) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return cerr
	}
	return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("%w within %s", ErrNoAnswer, waited.Round(100*time.Millisecond)))
}
