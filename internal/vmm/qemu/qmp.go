package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// QMPError is an error reply from QEMU's machine protocol.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return e.Class + ": " + e.Desc }

// qmpMessage is any message QEMU sends: the greeting, a reply or an
// asynchronous event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	Event  string          `json:"event"`
	ID     json.RawMessage `json:"id"`
}

type qmpCommand struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// qmpClient is one QMP session on QEMU's control socket. QEMU serves one
// session at a time, so sessions are short: dial, a few commands, close.
type qmpClient struct {
	conn   net.Conn
	dec    *json.Decoder
	lastID uint64
}

// dialQMP connects to the QMP socket at path, reads the greeting and
// leaves capability negotiation mode.
func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial qmp %q: %w", path, err)
	}
	c := &qmpClient{conn: conn, dec: json.NewDecoder(conn)}
	err = c.withContext(ctx, func() error {
		var greeting qmpMessage
		if err := c.dec.Decode(&greeting); err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		if greeting.QMP == nil {
			return errors.New("read greeting: not a qmp greeting")
		}
		return c.roundTrip("qmp_capabilities", nil, nil)
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %q: %w", path, err)
	}
	return c, nil
}

// Close ends the session.
func (c *qmpClient) Close() error { return c.conn.Close() }

// execute runs cmd with args (nil for none) and decodes its return value
// into out (nil to ignore it). Events that arrive meanwhile are skipped.
func (c *qmpClient) execute(ctx context.Context, cmd string, args, out any) error {
	err := c.withContext(ctx, func() error { return c.roundTrip(cmd, args, out) })
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	return nil
}

// withContext runs fn with the connection's I/O bounded by ctx, and
// reports ctx's error when that is what stopped fn.
func (c *qmpClient) withContext(ctx context.Context, fn func() error) error {
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := fn()
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (c *qmpClient) roundTrip(cmd string, args, out any) error {
	c.lastID++
	id := c.lastID
	line, err := json.Marshal(qmpCommand{Execute: cmd, Arguments: args, ID: id})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if _, err := c.conn.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	want := []byte(fmt.Sprint(id))
	for {
		var msg qmpMessage
		if err := c.dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read reply: %w", err)
		}
		if msg.Event != "" || !bytes.Equal(bytes.TrimSpace(msg.ID), want) {
			continue
		}
		if msg.Error != nil {
			return msg.Error
		}
		if out != nil && msg.Return != nil {
			if err := json.Unmarshal(msg.Return, out); err != nil {
				return fmt.Errorf("decode reply: %w", err)
			}
		}
		return nil
	}
}
