package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

// FuzzServerRequest writes raw bytes to a live server's connection: the
// server must never crash, and must answer with well-formed JSON-RPC
// (notifications, then one response) or close the connection.
func FuzzServerRequest(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":{"msg":"hi"}}` + "\n",
		`{"jsonrpc":"2.0","id":"a","method":"progress","params":{"count":2}}` + "\n",
		`{"jsonrpc":"2.0","id":null,"method":"echo","params":null}`,
		`{"jsonrpc":"2.0","id":{"x":[1]},"method":"echo","params":{"msg":1}}` + "\n",
		`{"jsonrpc":"2.0","method":"echo","params":{"msg":"x","extra":true}}` + "\n",
		`{"jsonrpc":"2.0","id":1,"method":"nope"}` + "\n",
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":[1,2]}` + "\n",
		`{"jsonrpc":"2.0","id":1,"method":"echo"}{"trailing":1}` + "\n",
		"\n",
		" \t ",
		"{",
		"\xff\xfe\x00",
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":{"msg":"\ud800"}}` + "\n" + "second line\n",
	} {
		f.Add([]byte(seed))
	}
	s := NewServer(slog.New(slog.DiscardHandler))
	Register(s, "echo", func(ctx context.Context, p echoParams) (echoResult, error) {
		return echoResult{Msg: p.Msg}, nil
	})
	Register(s, "progress", func(ctx context.Context, p echoParams) (echoResult, error) {
		for i := range min(p.Count, 3) {
			CallFrom(ctx).Notify("step", i)
		}
		return echoResult{Msg: "done"}, nil
	})
	path := startServer(f, s)

	f.Fuzz(func(t *testing.T, data []byte) {
		lines := rawExchange(t, path, data)
		first, _, _ := bytes.Cut(data, []byte("\n"))
		if len(lines) == 0 {
			if len(bytes.TrimSpace(first)) > 0 {
				t.Fatalf("request %q: connection closed without a response", data)
			}
			return
		}
		for i, line := range lines {
			var msg struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Method  string          `json:"method"`
				Result  json.RawMessage `json:"result"`
				Error   *Error          `json:"error"`
			}
			if err := json.Unmarshal([]byte(line), &msg); err != nil {
				t.Fatalf("request %q: line %d %q is not JSON: %v", data, i, line, err)
			}
			if msg.JSONRPC != "2.0" {
				t.Fatalf("request %q: line %d %q: got jsonrpc %q, want 2.0", data, i, line, msg.JSONRPC)
			}
			last := i == len(lines)-1
			if !last {
				if msg.Method == "" || len(msg.ID) != 0 {
					t.Fatalf("request %q: line %d %q: want a notification before the response", data, i, line)
				}
				continue
			}
			if (msg.Error == nil) == (len(msg.Result) == 0) {
				t.Fatalf("request %q: response %q: want exactly one of result and error", data, line)
			}
			if msg.Error != nil && !opIDPattern.MatchString(msg.Error.OpID()) {
				t.Fatalf("request %q: response %q: got op id %q", data, line, msg.Error.OpID())
			}
		}
	})
}
