package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"banger/internal/errdefs"
)

// ErrNoDaemon says nothing answers on the socket.
var ErrNoDaemon = errors.New("daemon not running")

// Client calls methods on the daemon's socket.
type Client struct {
	Socket string
	// OnNotify receives notifications sent while a call runs.
	OnNotify func(method string, params json.RawMessage)
}

type wireMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *Error          `json:"error"`
}

// Call sends one request and decodes the result into result (may be nil).
// Canceling ctx closes the connection, which cancels the request.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	req := request{JSONRPC: version, ID: json.RawMessage("1"), Method: method}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("encode %s params: %w", method, err)
		}
		req.Params = raw
	}
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", method, err)
	}
	if len(line) > MaxRequestBytes {
		return errdefs.Invalid(fmt.Errorf("send %s: request of %d bytes exceeds the limit of %d", method, len(line), MaxRequestBytes))
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The request never reached a daemon (one dying as we dialed, or
		// a listener that is going away): nothing was done.
		return fmt.Errorf("%w: send %s: %v", ErrNoDaemon, method, err)
	}
	scanner := bufio.NewScanner(conn)
	scanner.Buffer(make([]byte, 64<<10), 64<<20)
	for scanner.Scan() {
		var msg wireMessage
		if err := json.Unmarshal(scanner.Bytes(), &msg); err != nil {
			return fmt.Errorf("decode %s reply: %w", method, err)
		}
		if msg.Method != "" && len(msg.ID) == 0 {
			if c.OnNotify != nil {
				c.OnNotify(msg.Method, msg.Params)
			}
			continue
		}
		if msg.Error != nil {
			return msg.Error
		}
		if result != nil && len(msg.Result) > 0 {
			if err := json.Unmarshal(msg.Result, result); err != nil {
				return fmt.Errorf("decode %s result: %w", method, err)
			}
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("read %s reply: %w", method, err)
	}
	return fmt.Errorf("read %s reply: daemon closed the connection (see the daemon log)", method)
}
