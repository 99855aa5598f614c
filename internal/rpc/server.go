// Package rpc carries JSON-RPC 2.0 over a unix socket between the banger
// CLI and bangerd. Each connection holds one request; while it runs, the
// server may send notifications (progress) before the response. Closing
// the connection cancels the request. Error kinds (errdefs) map to codes
// in errors.go and back, so both sides keep errors.Is.
package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"banger/internal/model"
	"banger/internal/paths"
)

// MaxRequestBytes bounds one request line.
const MaxRequestBytes = 4 << 20

const version = "2.0"

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  any             `json:"params,omitempty"`
	Result  any             `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Call is one request being served.
type Call struct {
	OpID   string
	Method string
	Logger *slog.Logger

	mu  sync.Mutex
	enc *json.Encoder
}

// Notify sends a notification to the caller. Failures (a gone client)
// are ignored: the request's context is canceled in that case.
func (c *Call) Notify(method string, params any) {
	if c == nil || c.enc == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.enc.Encode(response{JSONRPC: version, Method: method, Params: params})
}

type callKey struct{}

// CallFrom returns the Call a context belongs to, or nil.
func CallFrom(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// handler serves one method with raw params; body is the rest of the
// connection for stream methods, nil otherwise.
type handler struct {
	stream bool
	fn     func(ctx context.Context, params json.RawMessage, body io.Reader) (any, error)
}

// StreamReady is the notification a stream method sends when it starts
// reading the request body; the client sends the body only then.
const StreamReady = "stream.ready"

// Server dispatches requests to registered methods.
type Server struct {
	logger   *slog.Logger
	handlers map[string]handler

	mu     sync.Mutex
	active sync.WaitGroup
}

// NewServer returns a server with no methods.
func NewServer(logger *slog.Logger) *Server {
	return &Server{logger: logger, handlers: map[string]handler{}}
}

// Register adds a method whose params decode strictly into P.
func Register[P, R any](s *Server, method string, fn func(ctx context.Context, p P) (R, error)) {
	s.handlers[method] = handler{fn: func(ctx context.Context, raw json.RawMessage, _ io.Reader) (any, error) {
		p, err := decodeParams[P](method, raw)
		if err != nil {
			return nil, err
		}
		return fn(ctx, p)
	}}
}

// RegisterStream adds a method that also reads a byte stream the client
// sends after its request (Client.CallStream). The method calls Ready
// (on the request's Call) when it starts reading body; body ends where
// the client closes its side. A method that fails before Ready leaves
// the stream unsent, and the client free to send it elsewhere.
func RegisterStream[P, R any](s *Server, method string, fn func(ctx context.Context, p P, body io.Reader) (R, error)) {
	s.handlers[method] = handler{stream: true, fn: func(ctx context.Context, raw json.RawMessage, body io.Reader) (any, error) {
		p, err := decodeParams[P](method, raw)
		if err != nil {
			return nil, err
		}
		return fn(ctx, p, body)
	}}
}

// Ready tells the client of a stream method to send its body.
func (c *Call) Ready() { c.Notify(StreamReady, nil) }

// decodeParams decodes raw strictly into a P.
func decodeParams[P any](method string, raw json.RawMessage) (P, error) {
	var p P
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return p, newError(CodeInvalidParams, "invalid params for %s: %s", method, err)
		}
		if dec.More() {
			return p, newError(CodeInvalidParams, "invalid params for %s: trailing data", method)
		}
	}
	return p, nil
}

// Serve accepts connections until ctx ends or the listener closes, then
// waits for running requests.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	defer s.active.Wait()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Running out of file descriptors and the like passes:
			// wait and accept again rather than stop serving.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
				errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed; retrying", "error", err.Error(), "delay", backoff)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		s.active.Add(1)
		go func() {
			defer s.active.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	opID, err := model.NewOpID()
	if err != nil {
		opID = "op-unknown"
	}
	logger := s.logger.With("op", opID)
	enc := json.NewEncoder(conn)
	// The limit holds for the request line; a stream method's body
	// follows it unbounded.
	limited := &io.LimitedReader{R: conn, N: MaxRequestBytes + 1}
	reader := bufio.NewReaderSize(limited, 64<<10)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := reader.ReadBytes('\n')
	if err != nil {
		// The limit reader ends a line that is too long with io.EOF, so
		// the length tells an oversized request from a client that
		// half-closed after its last byte.
		if len(line) > MaxRequestBytes {
			_ = enc.Encode(response{JSONRPC: version, Error: &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("request too large: more than %d bytes", MaxRequestBytes), Data: &Data{OpID: opID}}})
			return
		}
		if !errors.Is(err, io.EOF) || len(bytes.TrimSpace(line)) == 0 {
			return
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(response{JSONRPC: version, Error: &Error{Code: CodeParseError, Message: "parse error: " + err.Error(), Data: &Data{OpID: opID}}})
		return
	}
	if req.JSONRPC != version || req.Method == "" {
		_ = enc.Encode(response{JSONRPC: version, ID: req.ID, Error: &Error{Code: CodeInvalidRequest, Message: "invalid request: want jsonrpc 2.0 and a method", Data: &Data{OpID: opID}}})
		return
	}
	h, ok := s.handlers[req.Method]
	if !ok {
		_ = enc.Encode(response{JSONRPC: version, ID: req.ID, Error: &Error{Code: CodeMethodNotFound, Message: fmt.Sprintf("unknown method %q", req.Method), Data: &Data{OpID: opID}}})
		return
	}

	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var body io.Reader
	if h.stream {
		limited.N = math.MaxInt64
		body = reader
	} else {
		// The request lives as long as the client keeps the connection open.
		go func() {
			_, _ = io.Copy(io.Discard, reader)
			cancel()
		}()
	}
	call := &Call{OpID: opID, Method: req.Method, Logger: logger, enc: enc}
	reqCtx = context.WithValue(reqCtx, callKey{}, call)

	start := time.Now()
	logger.Debug("request", "method", req.Method)
	result, err := h.fn(reqCtx, req.Params, body)
	call.mu.Lock()
	defer call.mu.Unlock()
	if err != nil {
		wire := toError(err, opID)
		logger.Warn("request failed", "method", req.Method, "error", err.Error(), "code", wire.Code, "duration", time.Since(start).Round(time.Millisecond))
		_ = enc.Encode(response{JSONRPC: version, ID: req.ID, Error: wire})
		return
	}
	logger.Info("request", "method", req.Method, "duration", time.Since(start).Round(time.Millisecond))
	if result == nil {
		result = struct{}{}
	}
	_ = enc.Encode(response{JSONRPC: version, ID: req.ID, Result: result})
}

// Listen creates the unix socket at path with mode 0600, replacing a
// stale socket file that nothing answers on.
func Listen(path string) (net.Listener, error) {
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("listen %s: another daemon answers on it", path)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen %s: exists and is not a socket; move it away", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	if err := paths.CheckSocketPath("daemon socket", path); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}
