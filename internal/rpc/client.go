package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	return c.call(ctx, method, params, nil, result)
}

// ErrStreamNotStarted wraps the error of a stream call that failed before
// the daemon asked for the stream: none of it was sent.
var ErrStreamNotStarted = errors.New("stream not started")

// CallStream calls a stream method (RegisterStream): once the daemon
// says it is ready, send is called to write the stream, after which the
// connection's sending side is closed. A failure before that wraps
// ErrStreamNotStarted, and send was not called. An error from send
// closes the connection, so the method sees its stream end early.
func (c *Client) CallStream(ctx context.Context, method string, params any, send func(w io.Writer) error, result any) error {
	return c.call(ctx, method, params, send, result)
}

func (c *Client) call(ctx context.Context, method string, params any, send func(io.Writer) error, result any) error {
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
	started := false
	sendErr := make(chan error, 1)
	notStarted := func(err error) error {
		if send != nil && !started {
			return fmt.Errorf("%w: %w", ErrStreamNotStarted, err)
		}
		return err
	}
	scanner := bufio.NewScanner(conn)
	scanner.Buffer(make([]byte, 64<<10), 64<<20)
	for scanner.Scan() {
		var msg wireMessage
		if err := json.Unmarshal(scanner.Bytes(), &msg); err != nil {
			return fmt.Errorf("decode %s reply: %w", method, err)
		}
		if msg.Method != "" && len(msg.ID) == 0 {
			if msg.Method == StreamReady && send != nil && !started {
				started = true
				go func() {
					err := send(conn)
					if err != nil {
						conn.Close() // the method must see the stream end early
					} else if uc, ok := conn.(*net.UnixConn); ok {
						err = uc.CloseWrite()
					}
					sendErr <- err
				}()
				continue
			}
			if c.OnNotify != nil {
				c.OnNotify(msg.Method, msg.Params)
			}
			continue
		}
		if started {
			// The method's own error says more than a broken pipe.
			if err := <-sendErr; err != nil && msg.Error == nil {
				return fmt.Errorf("send %s stream: %w", method, err)
			}
		}
		if msg.Error != nil {
			return notStarted(msg.Error)
		}
		if result != nil && len(msg.Result) > 0 {
			if err := json.Unmarshal(msg.Result, result); err != nil {
				return fmt.Errorf("decode %s result: %w", method, err)
			}
		}
		return nil
	}
	if started {
		if err := <-sendErr; err != nil {
			return fmt.Errorf("send %s stream: %w", method, err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := scanner.Err(); err != nil {
		return notStarted(fmt.Errorf("read %s reply: %w", method, err))
	}
	return notStarted(fmt.Errorf("read %s reply: daemon closed the connection (see the daemon log)", method))
}
