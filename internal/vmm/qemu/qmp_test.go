package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQMP is an in-process QMP server on a unix socket. It greets, wants
// qmp_capabilities first, sends an event before every reply and answers:
//
//	query-status  {"status": "running", ...}
//	echo          its arguments
//	hang          nothing
//	quit          by closing the connection
//	anything else CommandNotFound
type fakeQMP struct {
	path     string
	greeting string

	mu       sync.Mutex
	commands []string // commands received, in order
}

// startFakeQMP serves QMP with greeting, or QEMU 7.2's greeting when
// greeting is empty.
func startFakeQMP(t *testing.T, greeting string) *fakeQMP {
	t.Helper()
	if greeting == "" {
		greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`
	}
	f := &fakeQMP{path: filepath.Join(t.TempDir(), "qmp.sock"), greeting: greeting}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeQMP) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

func (f *fakeQMP) serve(conn net.Conn) {
	defer conn.Close()
	fmt.Fprintln(conn, f.greeting)
	sc := bufio.NewScanner(conn)
	negotiated := false
	for sc.Scan() {
		var cmd struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			fmt.Fprintln(conn, `{"error": {"class": "GenericError", "desc": "JSON parse error"}}`)
			continue
		}
		f.mu.Lock()
		f.commands = append(f.commands, cmd.Execute)
		f.mu.Unlock()
		fmt.Fprintln(conn, `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RTC_CHANGE", "data": {"offset": 0}}`)
		reply := func(body string) { fmt.Fprintf(conn, "{%s, \"id\": %s}\n", body, cmd.ID) }
		switch {
		case cmd.Execute == "qmp_capabilities":
			negotiated = true
			reply(`"return": {}`)
		case !negotiated:
			reply(`"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}`)
		case cmd.Execute == "query-status":
			// A reply to someone else's command first: it must be skipped.
			fmt.Fprintln(conn, `{"return": {"status": "paused"}, "id": "other"}`)
			reply(`"return": {"status": "running", "singlestep": false, "running": true}`)
		case cmd.Execute == "echo":
			reply(`"return": ` + string(cmd.Arguments))
		case cmd.Execute == "hang":
		case cmd.Execute == "quit":
			return
		default:
			reply(`"error": {"class": "CommandNotFound", "desc": "The command ` + cmd.Execute + ` has not been found"}`)
		}
	}
}

func TestQMPClient(t *testing.T) {
	f := startFakeQMP(t, "")
	ctx := t.Context()
	c, err := dialQMP(ctx, f.path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()

	t.Run("status", func(t *testing.T) {
		var st struct {
			Status  string `json:"status"`
			Running bool   `json:"running"`
		}
		if err := c.execute(ctx, "query-status", nil, &st); err != nil {
			t.Fatalf("got err %v, want nil", err)
		}
		if st.Status != "running" || !st.Running {
			t.Errorf("got status %+v, want running", st)
		}
	})
	t.Run("arguments", func(t *testing.T) {
		var got map[string]string
		if err := c.execute(ctx, "echo", map[string]string{"device": "system"}, &got); err != nil {
			t.Fatalf("got err %v, want nil", err)
		}
		if got["device"] != "system" {
			t.Errorf("got %v, want device=system", got)
		}
	})
	t.Run("error reply", func(t *testing.T) {
		err := c.execute(ctx, "nosuch", nil, nil)
		var qerr *QMPError
		if !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
			t.Fatalf("got err %v, want a CommandNotFound QMPError", err)
		}
		if want := "qmp nosuch: CommandNotFound: The command nosuch has not been found"; err.Error() != want {
			t.Errorf("got message %q, want %q", err, want)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		hctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := c.execute(hctx, "hang", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got err %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("got return after %v, want about 100ms", d)
		}
	})

	want := []string{"qmp_capabilities", "query-status", "echo", "nosuch", "hang"}
	if got := f.received(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got commands %q, want %q", got, want)
	}
}

func TestQMPClosedConnection(t *testing.T) {
	f := startFakeQMP(t, "")
	c, err := dialQMP(t.Context(), f.path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.execute(t.Context(), "quit", nil, nil); err == nil {
		t.Errorf("got nil error for a reply that never came, want an error")
	}
}

func TestDialQMPErrors(t *testing.T) {
	tests := []struct {
		name     string
		greeting string
		path     func(*fakeQMP) string
		want     string
	}{
		{name: "no socket", path: func(f *fakeQMP) string { return f.path + ".missing" }, want: "dial qmp"},
		{name: "not qmp", greeting: `{"hello": 1}`, want: "not a qmp greeting"},
		{name: "garbage", greeting: `<html>`, want: "read greeting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeQMP(t, tt.greeting)
			path := f.path
			if tt.path != nil {
				path = tt.path(f)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			c, err := dialQMP(ctx, path)
			if err == nil {
				c.Close()
				t.Fatalf("got nil error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got err %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
