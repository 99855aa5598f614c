package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"banger/internal/paths"
)

// APIError is an error answer of Firecracker's API.
type APIError struct {
	Method, Path string
	Status       int
	FaultMessage string
}

func (e *APIError) Error() string {
	msg := e.FaultMessage
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s: %d: %s", e.Method, e.Path, e.Status, msg)
}

// DialUnix connects to the unix socket at path. A path too long for a
// socket address (a socket deep in a jail) is reached through a short
// alias, /proc/self/fd/N/<name>, where N is an O_PATH descriptor of the
// socket's directory.
func DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	if len(path) <= paths.MaxSocketPath {
		return d.DialContext(ctx, "unix", path)
	}
	dir, name := filepath.Split(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial %s: open directory: %w", path, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(fd)
	short := "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
	if len(short) > paths.MaxSocketPath {
		return nil, fmt.Errorf("dial %s: socket name too long", path)
	}
	return d.DialContext(ctx, "unix", short)
}

// client speaks HTTP to Firecracker's API socket.
type client struct {
	hc *http.Client
}

func newClient(socket string) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return DialUnix(ctx, socket)
		},
		DisableKeepAlives: true,
	}
	return &client{hc: &http.Client{Transport: tr}}
}

// do sends r and decodes a JSON answer into out (nil to ignore it). An
// answer other than 2xx is an *APIError.
func (c *client) do(ctx context.Context, r Request, out any) error {
	var body io.Reader
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", r.Method, r.Path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://localhost"+r.Path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", r.Method, r.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		var fault struct {
			FaultMessage string `json:"fault_message"`
		}
		_ = json.Unmarshal(data, &fault)
		return &APIError{Method: r.Method, Path: r.Path, Status: resp.StatusCode, FaultMessage: fault.FaultMessage}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", r.Method, r.Path, err)
		}
	}
	return nil
}

// isConnError reports whether err means nothing answers on the socket.
func isConnError(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return false
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, os.ErrNotExist) || errors.Is(err, io.EOF)
}
