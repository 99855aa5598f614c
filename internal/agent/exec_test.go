package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveOn runs a Server on one end of a pipe and returns a Client on the
// other; done receives Serve's result.
func serveOn(t *testing.T) (*Client, net.Conn, chan error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- (&Server{}).Serve(context.Background(), b) }()
	t.Cleanup(func() { a.Close(); b.Close() })
	return NewClient(a), a, done
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "got")
	data := bytes.Repeat([]byte("banger\x00\n"), 300000) // several frames
	tests := []struct {
		name     string
		argv     []string
		wantCode int
		wantOut  string
		wantErr  string
		file     bool
	}{
		{name: "stdin to a file", argv: []string{"sh", "-c", "cat > " + out + "; echo done; echo warn >&2"}, wantOut: "done\n", wantErr: "warn\n", file: true},
		{name: "exit status", argv: []string{"sh", "-c", "cat >/dev/null; exit 3"}, wantCode: 3},
		{name: "program that ignores stdin", argv: []string{"true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _ := serveOn(t)
			readyCalled := false
			res, err := c.Exec(t.Context(), tt.argv, bytes.NewReader(data), func() { readyCalled = true })
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if !readyCalled || res.State != "exited" || res.ExitCode != tt.wantCode || res.Stdout != tt.wantOut || res.Stderr != tt.wantErr {
				t.Errorf("got ready %v %+v, want ready, exited, code %d, stdout %q, stderr %q", readyCalled, res, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			if tt.file {
				got, _ := os.ReadFile(out)
				if !bytes.Equal(got, data) {
					t.Errorf("file from stdin: got %d bytes, want the %d sent", len(got), len(data))
				}
			}
			// The stream stays in step: a plain call works after exec.
			if _, err := c.Ping(t.Context()); err != nil {
				t.Errorf("ping after exec: %v", err)
			}
		})
	}
}

// TestExecRefusedBeforeReady checks that a failure before ready (an
// agent without exec, here a bad argv) consumes nothing of stdin and
// does not call ready.
func TestExecRefusedBeforeReady(t *testing.T) {
	c, _, _ := serveOn(t)
	stdin := strings.NewReader("untouched")
	_, err := c.Exec(t.Context(), []string{"/nonexistent/program"}, stdin, func() { t.Error("ready called") })
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "nonexistent") {
		t.Fatalf("Exec of a missing program: got %v, want the agent's error naming it", err)
	}
	if stdin.Len() != len("untouched") {
		t.Errorf("stdin: %d bytes read, want none", len("untouched")-stdin.Len())
	}
}

// TestExecStreamCut checks that a host that goes away mid-stream leaves
// the program with its stdin closed early, and Serve returning.
func TestExecStreamCut(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	c, conn, done := serveOn(t)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte("x"), 1000))
		time.Sleep(100 * time.Millisecond)
		conn.Close() // the host disappears without the closing frame
		pw.CloseWithError(errors.New("gone"))
	}()
	c.Exec(t.Context(), []string{"sh", "-c", "wc -c > " + marker}, pr, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after the host went away: got %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the host went away")
	}
	got, _ := os.ReadFile(marker)
	if strings.TrimSpace(string(got)) != "1000" {
		t.Errorf("program saw %q bytes, want its stdin to end after the 1000 sent", got)
	}
}
