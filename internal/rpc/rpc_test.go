package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"banger/internal/errdefs"
)

var opIDPattern = regexp.MustCompile(`^op-[0-9a-f]{12}$`)

type echoParams struct {
	Msg   string `json:"msg"`
	Count int    `json:"count,omitempty"`
}

type echoResult struct {
	Msg string `json:"msg"`
}

// socketPath returns a short socket path: unix socket paths are limited
// to about 100 bytes and t.TempDir carries the test's name.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// startServer serves s on a fresh socket until the test ends.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: got %v, want nil after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return 10s after cancel")
		}
	})
	return path
}

func newTestServer() *Server {
	s := NewServer(slog.New(slog.DiscardHandler))
	Register(s, "echo", func(ctx context.Context, p echoParams) (echoResult, error) {
		return echoResult{Msg: p.Msg}, nil
	})
	Register(s, "progress", func(ctx context.Context, p echoParams) (echoResult, error) {
		call := CallFrom(ctx)
		for i := range p.Count {
			call.Notify("step", map[string]int{"n": i})
		}
		return echoResult{Msg: "done"}, nil
	})
	Register(s, "nothing", func(ctx context.Context, p struct{}) (any, error) { return nil, nil })
	return s
}

func TestRoundTrip(t *testing.T) {
	path := startServer(t, newTestServer())
	c := &Client{Socket: path}
	tests := []struct {
		name string
		msg  string
	}{
		{"plain", "hello"},
		{"empty", ""},
		{"unicode and newlines", "héllo\nwörld\t\"quoted\""},
		{"large", strings.Repeat("x", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got echoResult
			if err := c.Call(t.Context(), "echo", echoParams{Msg: tt.msg}, &got); err != nil {
				t.Fatalf("Call echo: got error %v, want nil", err)
			}
			if got.Msg != tt.msg {
				t.Errorf("Call echo: got %.40q, want %.40q", got.Msg, tt.msg)
			}
		})
	}
	t.Run("nil params and nil result", func(t *testing.T) {
		if err := c.Call(t.Context(), "nothing", nil, nil); err != nil {
			t.Errorf("Call nothing: got %v, want nil", err)
		}
	})
}

func TestNotificationsArriveBeforeResult(t *testing.T) {
	path := startServer(t, newTestServer())
	var got []string
	c := &Client{Socket: path, OnNotify: func(method string, params json.RawMessage) {
		got = append(got, method+" "+string(params))
	}}
	var res echoResult
	if err := c.Call(t.Context(), "progress", echoParams{Count: 3}, &res); err != nil {
		t.Fatalf("Call progress: %v", err)
	}
	want := []string{`step {"n":0}`, `step {"n":1}`, `step {"n":2}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("notifications: got %q, want %q", got, want)
	}
	if res.Msg != "done" {
		t.Errorf("result: got %q, want %q", res.Msg, "done")
	}
}

func TestCallErrors(t *testing.T) {
	s := newTestServer()
	kindErrors := map[string]error{
		"notfound": fmt.Errorf("vm %q: %w", "web", errdefs.ErrNotFound),
		"exists":   errdefs.WithKind(errdefs.ErrAlreadyExists, errors.New("vm web exists")),
		"invalid":  errdefs.Invalid(errors.New("bad name")),
		"conflict": fmt.Errorf("stop vm: %w", errdefs.ErrConflict),
		"unavail":  fmt.Errorf("kvm: %w", errdefs.ErrUnavailable),
		"notimpl":  fmt.Errorf("snapshots: %w", errdefs.ErrNotImplemented),
		"internal": errors.New("disk on fire"),
		"canceled": fmt.Errorf("boot: %w", context.Canceled),
		"rpcerr":   fmt.Errorf("forward: %w", &Error{Code: CodeConflict, Message: "busy"}),
	}
	for name, err := range kindErrors {
		Register(s, name, func(ctx context.Context, p struct{}) (any, error) { return nil, err })
	}
	path := startServer(t, s)
	c := &Client{Socket: path}

	tests := []struct {
		name     string
		method   string
		params   any
		wantCode int
		wantKind error // nil: no errdefs kind
		wantMsg  string
	}{
		{"unknown method", "vm.frobnicate", nil, CodeMethodNotFound, nil, `unknown method "vm.frobnicate"`},
		{"unknown field", "echo", map[string]any{"msg": "x", "colour": "red"}, CodeInvalidParams, errdefs.ErrInvalid, `unknown field "colour"`},
		{"wrong type", "echo", map[string]any{"msg": 5}, CodeInvalidParams, errdefs.ErrInvalid, "invalid params for echo"},
		{"array params", "echo", []int{1}, CodeInvalidParams, errdefs.ErrInvalid, "invalid params for echo"},
		{"not found", "notfound", nil, CodeNotFound, errdefs.ErrNotFound, `vm "web": not found`},
		{"already exists", "exists", nil, CodeAlreadyExists, errdefs.ErrAlreadyExists, "vm web exists"},
		{"invalid", "invalid", nil, CodeInvalid, errdefs.ErrInvalid, "bad name"},
		{"conflict", "conflict", nil, CodeConflict, errdefs.ErrConflict, "stop vm: conflict"},
		{"unavailable", "unavail", nil, CodeUnavailable, errdefs.ErrUnavailable, "kvm: unavailable"},
		{"not implemented", "notimpl", nil, CodeNotImplemented, errdefs.ErrNotImplemented, "snapshots: not implemented"},
		{"internal", "internal", nil, CodeInternal, nil, "disk on fire"},
		{"canceled", "canceled", nil, CodeCanceled, context.Canceled, "boot: context canceled"},
		{"wrapped rpc error", "rpcerr", nil, CodeConflict, errdefs.ErrConflict, "forward: busy"},
	}
	allKinds := []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalid, errdefs.ErrConflict,
		errdefs.ErrUnavailable, errdefs.ErrNotImplemented, context.Canceled}
	seenOps := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Call(t.Context(), tt.method, tt.params, nil)
			if err == nil {
				t.Fatalf("Call %s: got nil, want error", tt.method)
			}
			var rpcErr *Error
			if !errors.As(err, &rpcErr) {
				t.Fatalf("Call %s: got %T %v, want *rpc.Error", tt.method, err, err)
			}
			if rpcErr.Code != tt.wantCode {
				t.Errorf("Call %s: got code %d, want %d", tt.method, rpcErr.Code, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Call %s: got message %q, want it to contain %q", tt.method, err, tt.wantMsg)
			}
			for _, kind := range allKinds {
				if got, want := errors.Is(err, kind), kind == tt.wantKind; got != want {
					t.Errorf("Call %s: errors.Is(err, %v) got %v, want %v", tt.method, kind, got, want)
				}
			}
			if !opIDPattern.MatchString(rpcErr.OpID()) {
				t.Errorf("Call %s: got op id %q, want it to match %s", tt.method, rpcErr.OpID(), opIDPattern)
			}
			if seenOps[rpcErr.OpID()] {
				t.Errorf("Call %s: op id %q was already used by another request", tt.method, rpcErr.OpID())
			}
			seenOps[rpcErr.OpID()] = true
		})
	}
}

func TestErrorWithoutData(t *testing.T) {
	e := &Error{Code: CodeInternal, Message: "x"}
	if got := e.OpID(); got != "" {
		t.Errorf("OpID without data: got %q, want empty", got)
	}
	if got := e.Unwrap(); got != nil {
		t.Errorf("Unwrap of internal error: got %v, want nil", got)
	}
}

func TestNoDaemon(t *testing.T) {
	c := &Client{Socket: filepath.Join(t.TempDir(), "missing.sock")}
	err := c.Call(t.Context(), "echo", nil, nil)
	if !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Call without a daemon: got %v, want errors.Is ErrNoDaemon", err)
	}
}

func TestClientCancelCancelsHandler(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler))
	started := make(chan struct{})
	handlerErr := make(chan error, 1)
	Register(s, "block", func(ctx context.Context, p struct{}) (any, error) {
		close(started)
		select {
		case <-ctx.Done():
			handlerErr <- ctx.Err()
		case <-time.After(10 * time.Second):
			handlerErr <- errors.New("not canceled within 10s")
		}
		return nil, ctx.Err()
	})
	path := startServer(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	callErr := make(chan error, 1)
	go func() { callErr <- (&Client{Socket: path}).Call(ctx, "block", nil, nil) }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not start within 5s")
	}
	cancel()
	if err := <-callErr; !errors.Is(err, context.Canceled) {
		t.Errorf("Call after cancel: got %v, want context.Canceled", err)
	}
	if err := <-handlerErr; !errors.Is(err, context.Canceled) {
		t.Errorf("handler ctx: got %v, want context.Canceled", err)
	}
}

func TestServeCancelCancelsHandlers(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler))
	started := make(chan struct{})
	Register(s, "block", func(ctx context.Context, p struct{}) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	callErr := make(chan error, 1)
	go func() { callErr <- (&Client{Socket: path}).Call(t.Context(), "block", nil, nil) }()
	<-started
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: got %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of cancel")
	}
	err = <-callErr
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Call during shutdown: got %v, want an error matching context.Canceled", err)
	}
}

// rawExchange writes data to the server, half-closes, and returns every
// line the server sent before closing.
func rawExchange(t testing.TB, path string, data []byte) []string {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		_, _ = conn.Write(data) // the server may close early; that is its answer
		_ = conn.(*net.UnixConn).CloseWrite()
	}()
	out, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("read: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func decodeOne(t testing.TB, lines []string) wireMessage {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("got %d response lines %q, want 1", len(lines), lines)
	}
	var msg wireMessage
	if err := json.Unmarshal([]byte(lines[0]), &msg); err != nil {
		t.Fatalf("response %q: %v", lines[0], err)
	}
	return msg
}

func TestRawRequests(t *testing.T) {
	path := startServer(t, newTestServer())
	pad := func(n int) string { // a valid request padded with spaces to n bytes
		req := `{"jsonrpc":"2.0","id":7,"method":"echo","params":{"msg":"pad"}}`
		return req + strings.Repeat(" ", n-len(req))
	}
	tests := []struct {
		name       string
		data       string
		wantCode   int // 0: success
		wantResult string
	}{
		{"valid", `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"msg":"hi"}}` + "\n", 0, `{"msg":"hi"}`},
		{"no trailing newline", `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"msg":"hi"}}`, 0, `{"msg":"hi"}`},
		{"exactly the limit", pad(MaxRequestBytes) + "\n", 0, `{"msg":"pad"}`},
		{"exactly the limit without newline", pad(MaxRequestBytes), 0, `{"msg":"pad"}`},
		{"one byte over the limit", pad(MaxRequestBytes+1) + "\n", CodeInvalidRequest, ""},
		{"oversized junk", strings.Repeat("x", MaxRequestBytes+100), CodeInvalidRequest, ""},
		{"oversized junk with newline", strings.Repeat("x", MaxRequestBytes+100) + "\n", CodeInvalidRequest, ""},
		{"not json", "hello\n", CodeParseError, ""},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"echo"}` + "\n", CodeInvalidRequest, ""},
		{"no method", `{"jsonrpc":"2.0","id":1}` + "\n", CodeInvalidRequest, ""},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"nope"}` + "\n", CodeMethodNotFound, ""},
		{"params string", `{"jsonrpc":"2.0","id":1,"method":"echo","params":"x"}` + "\n", CodeInvalidParams, ""},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"echo","params":null}` + "\n", 0, `{"msg":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := decodeOne(t, rawExchange(t, path, []byte(tt.data)))
			if tt.wantCode == 0 {
				if msg.Error != nil {
					t.Fatalf("got error %+v, want result %s", msg.Error, tt.wantResult)
				}
				if string(msg.Result) != tt.wantResult {
					t.Errorf("got result %s, want %s", msg.Result, tt.wantResult)
				}
				return
			}
			if msg.Error == nil {
				t.Fatalf("got result %s, want error code %d", msg.Result, tt.wantCode)
			}
			if msg.Error.Code != tt.wantCode {
				t.Errorf("got error code %d (%s), want %d", msg.Error.Code, msg.Error.Message, tt.wantCode)
			}
			if !opIDPattern.MatchString(msg.Error.OpID()) {
				t.Errorf("got op id %q, want it to match %s", msg.Error.OpID(), opIDPattern)
			}
		})
	}
	t.Run("empty connection", func(t *testing.T) {
		if lines := rawExchange(t, path, nil); len(lines) != 0 {
			t.Errorf("got %q, want the connection closed without a reply", lines)
		}
	})
}

func TestClientRefusesOversizedRequest(t *testing.T) {
	path := startServer(t, newTestServer())
	err := (&Client{Socket: path}).Call(t.Context(), "echo", echoParams{Msg: strings.Repeat("x", MaxRequestBytes)}, nil)
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("Call with oversized params: got %v, want an invalid error saying it exceeds the limit", err)
	}
}

func TestListen(t *testing.T) {
	t.Run("socket mode 0600", func(t *testing.T) {
		path := socketPath(t)
		ln, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		defer ln.Close()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
			t.Errorf("socket mode: got %v, want a socket with 0600", st.Mode())
		}
	})
	t.Run("refuses when another server answers", func(t *testing.T) {
		path := startServer(t, newTestServer())
		ln, err := Listen(path)
		if err == nil {
			ln.Close()
			t.Fatal("second Listen: got nil, want error")
		}
		if !strings.Contains(err.Error(), "another daemon answers") {
			t.Errorf("second Listen: got %v, want it to say another daemon answers", err)
		}
		if err := (&Client{Socket: path}).Call(t.Context(), "echo", echoParams{Msg: "still"}, nil); err != nil {
			t.Errorf("first server after refused Listen: got %v, want it still serving", err)
		}
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		path := socketPath(t)
		old, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		old.(*net.UnixListener).SetUnlinkOnClose(false)
		old.Close()
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("stale socket file: %v", err)
		}
		ln, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: got %v, want nil", err)
		}
		ln.Close()
	})
	t.Run("refuses to remove a regular file", func(t *testing.T) {
		path := socketPath(t)
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		ln, err := Listen(path)
		if err == nil {
			ln.Close()
			t.Fatal("Listen over a regular file: got nil, want error")
		}
		if data, _ := os.ReadFile(path); string(data) != "precious" {
			t.Errorf("regular file after Listen: got %q, want it untouched", data)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := Listen(filepath.Join(t.TempDir(), "no", "s.sock")); err == nil {
			t.Error("Listen in a missing directory: got nil, want error")
		}
	})
}

func TestConcurrentCalls(t *testing.T) {
	path := startServer(t, newTestServer())
	c := &Client{Socket: path}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			var res echoResult
			msg := fmt.Sprint("m", i)
			if err := c.Call(t.Context(), "echo", echoParams{Msg: msg}, &res); err != nil {
				errs <- err
				return
			}
			if res.Msg != msg {
				errs <- fmt.Errorf("got %q, want %q", res.Msg, msg)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
