package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"banger/internal/errdefs"
)

// serve runs a Server on one end of a pipe over the fixture /proc and
// returns the other end.
func serve(t *testing.T, root string) net.Conn {
	t.Helper()
	host, guest := net.Pipe()
	done := make(chan error, 1)
	// Not t.Context(): it ends before the cleanup that checks Serve's
	// result.
	go func() { done <- (&Server{ProcRoot: root}).Serve(context.Background(), guest) }()
	t.Cleanup(func() {
		host.Close()
		if err := <-done; err != nil && !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("Serve: %v", err)
		}
		guest.Close()
	})
	return host
}

func healthFixture(t *testing.T) string {
	root := writeProcFixture(t)
	os.MkdirAll(filepath.Join(root, "sys/kernel"), 0o755)
	for name, text := range map[string]string{"uptime": "12.5 20.0\n", "sys/kernel/hostname": "demo\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestRoundTrip(t *testing.T) {
	c := NewClient(serve(t, healthFixture(t)))
	defer c.Close()

	h, err := c.Health(t.Context())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if h.Version != Version || h.Protocol != ProtocolVersion || h.Hostname != "demo" || h.UptimeSeconds != 12.5 {
		t.Errorf("got health %+v, want version %s, protocol %d, hostname demo, uptime 12.5", h, Version, ProtocolVersion)
	}
	rtt, err := c.Ping(t.Context())
	if err != nil || rtt <= 0 {
		t.Errorf("Ping: got %s, %v, want a positive round trip", rtt, err)
	}
	ls, err := c.Ports(t.Context())
	if err != nil {
		t.Fatalf("Ports: %v", err)
	}
	if len(ls) != 6 || ls[0] != (Listener{Proto: "tcp", Address: "0.0.0.0", Port: 22, PID: 100, Process: "sshd"}) {
		t.Errorf("got %d listeners starting %+v, want 6 starting with sshd on 0.0.0.0:22", len(ls), ls)
	}
	var raw json.RawMessage
	err = c.Call(t.Context(), "reboot", &raw)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, `unknown method "reboot"`) {
		t.Errorf("Call(reboot): got %v, want a RemoteError naming the method", err)
	}
	// The client still works after an error response.
	if _, err := c.Ping(t.Context()); err != nil {
		t.Errorf("Ping after an error: %v", err)
	}
}

// exchange writes raw request lines to a Server and returns the decoded
// response lines.
func exchange(t *testing.T, lines ...string) []Response {
	t.Helper()
	conn := serve(t, healthFixture(t))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		for _, l := range lines {
			if _, err := io.WriteString(conn, l); err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(conn)
	var out []Response
	for range lines {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		var resp Response
		if err := json.Unmarshal(line, &resp); err != nil {
			t.Fatalf("response %q: %v", line, err)
		}
		out = append(out, resp)
	}
	return out
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		wantID  uint64
		wantErr string
	}{
		{"unknown method", `{"v":1,"id":3,"method":"reboot"}` + "\n", 3, `unknown method "reboot"`},
		{"newer version", `{"v":2,"id":4,"method":"ping"}` + "\n", 4, "unsupported protocol version 2"},
		{"no version", `{"id":5,"method":"ping"}` + "\n", 5, "unsupported protocol version 0"},
		{"not json", "hello\n", 0, "bad request"},
		{"too long", `{"v":1,"id":6,"method":"` + strings.Repeat("x", MaxLine) + "\"}\n", 0, "request line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A good request after the bad one shows the server kept going.
			resps := exchange(t, tt.line, "\n"+`{"v":1,"id":9,"method":"ping"}`+"\n")
			if got := resps[0]; got.ID != tt.wantID || !strings.Contains(got.Error, tt.wantErr) || got.V != ProtocolVersion {
				t.Errorf("got %+v, want v 1, id %d and an error containing %q", got, tt.wantID, tt.wantErr)
			}
			if got := resps[1]; got.ID != 9 || got.Error != "" || string(got.Result) != "{}" {
				t.Errorf("got %+v after the bad request, want id 9 with result {}", got)
			}
		})
	}
}

func TestClientSkipsStaleLines(t *testing.T) {
	host, guest := net.Pipe()
	defer guest.Close()
	c := NewClient(host)
	defer c.Close()
	go func() {
		r := bufio.NewReader(guest)
		for {
			line, err := readLine(r, MaxLine)
			if err != nil {
				return
			}
			if len(line) == 0 {
				continue
			}
			var req Request
			if json.Unmarshal(line, &req) != nil {
				return
			}
			fmt.Fprintf(guest, "ult\":{}}\n")                                                      // tail of a line
			fmt.Fprintf(guest, "{\"v\":1,\"id\":%d,\"result\":{\"version\":\"old\"}}\n", req.ID-1) // an old answer
			fmt.Fprintf(guest, "\n{not json}\n")
			fmt.Fprintf(guest, "{\"v\":1,\"id\":%d,\"result\":{\"version\":\"fresh\"}}\n", req.ID)
		}
	}()
	for i := range 3 {
		h, err := c.Health(t.Context())
		if err != nil || h.Version != "fresh" {
			t.Errorf("call %d: got %+v, %v, want the answer with the request's id", i, h, err)
		}
	}
}

func TestClientProtocolMismatch(t *testing.T) {
	host, guest := net.Pipe()
	defer guest.Close()
	c := NewClient(host)
	defer c.Close()
	go func() {
		r := bufio.NewReader(guest)
		line, _ := readLine(r, MaxLine) // the empty line
		line, _ = readLine(r, MaxLine)
		var req Request
		json.Unmarshal(line, &req)
		fmt.Fprintf(guest, "{\"v\":2,\"id\":%d,\"result\":{}}\n", req.ID)
	}()
	_, err := c.Ping(t.Context())
	if err == nil || !strings.Contains(err.Error(), "protocol version 2") {
		t.Errorf("got %v, want an error about protocol version 2", err)
	}
}

func TestClientNoAnswer(t *testing.T) {
	host, guest := net.Pipe()
	defer guest.Close()
	go io.Copy(io.Discard, guest) // reads requests, never answers
	c := NewClient(host)
	defer c.Close()

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Ports(ctx)
		if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("got %v, want ErrNoAnswer and ErrUnavailable", err)
		}
		if err != nil && !strings.Contains(err.Error(), "no answer from the banger agent within 200ms") {
			t.Errorf("got message %q, want it to say how long it waited", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s, want about 200ms", d)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := c.Health(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		h2, g2 := net.Pipe()
		c2 := NewClient(h2)
		defer c2.Close()
		go func() { readLine(bufio.NewReader(g2), MaxLine); g2.Close() }()
		if _, err := c2.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("got %v, want an error saying the connection closed", err)
		}
	})
}

func TestClientLineCap(t *testing.T) {
	host, guest := net.Pipe()
	defer guest.Close()
	c := NewClient(host)
	defer c.Close()
	go func() {
		r := bufio.NewReader(guest)
		readLine(r, MaxLine)
		readLine(r, MaxLine)
		io.WriteString(guest, `{"v":1,"id":1,"result":"`+strings.Repeat("x", MaxLine)+"\"}\n")
	}()
	if _, err := c.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("got %v, want a line-too-long error", err)
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want []string // "ERR" marks errLineTooLong
	}{
		{"lines", "a\nbb\n\nccc\n", 8, []string{"a", "bb", "", "ccc"}},
		{"crlf", "a\r\nb\n", 8, []string{"a", "b"}},
		{"last line without newline", "a\nbc", 8, []string{"a", "bc"}},
		{"exactly max", "abcd\nx\n", 4, []string{"abcd", "x"}},
		{"over max resyncs", "abcde\nx\n", 4, []string{"ERR", "x"}},
		{"over the buffer", strings.Repeat("y", 100) + "\nz\n", 40, []string{"ERR", "z"}},
		{"long line at eof", strings.Repeat("y", 100), 40, []string{"ERR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var got []string
			for {
				line, err := readLine(r, tt.max)
				if errors.Is(err, io.EOF) {
					break
				}
				if errors.Is(err, errLineTooLong) {
					got = append(got, "ERR")
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(line))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDialFirecrackerVsock(t *testing.T) {
	tests := []struct {
		name    string
		reply   string // "" closes the connection after CONNECT
		wantErr string
	}{
		{"ok", "OK 1073741824\n", ""},
		{"nothing listens", "", "nothing listens on the guest port"},
		{"garbage", "NO\n", "unexpected handshake reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "v.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			root := healthFixture(t)
			got := make(chan string, 1)
			go func() {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				r := bufio.NewReader(conn)
				line, _ := r.ReadString('\n')
				got <- line
				if tt.reply == "" {
					return
				}
				io.WriteString(conn, tt.reply)
				(&Server{ProcRoot: root}).Serve(t.Context(), struct {
					io.Reader
					io.Writer
				}{r, conn})
			}()
			c, err := DialFirecrackerVsock(t.Context(), sock, 1024)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DialFirecrackerVsock: %v", err)
			}
			defer c.Close()
			if line := <-got; line != "CONNECT 1024\n" {
				t.Errorf("got handshake %q, want %q", line, "CONNECT 1024\n")
			}
			if h, err := c.Health(t.Context()); err != nil || h.Hostname != "demo" {
				t.Errorf("Health through vsock: got %+v, %v", h, err)
			}
		})
	}
}

func TestDialMissingSocket(t *testing.T) {
	_, err := Dial(t.Context(), filepath.Join(t.TempDir(), "agent.sock"))
	if err == nil || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("got %v, want an unavailable error", err)
	}
}

func TestProbeHTTP(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer web.Close()
	ssh, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ssh.Close()
	go func() {
		for {
			c, err := ssh.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n")
			c.Close()
		}
	}()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tests := []struct {
		name, addr string
		want       bool
	}{
		{"http", web.Listener.Addr().String(), true},
		{"ssh", ssh.Addr().String(), false},
		{"silent", silent.Addr().String(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProbeHTTP(t.Context(), tt.addr, "demo.vm"); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestListenerLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1": true, "::1": true, "::ffff:127.0.0.1": true, "0.0.0.0": false, "::": false, "172.16.0.5": false} {
		if got := (Listener{Address: addr}).Loopback(); got != want {
			t.Errorf("%s: got %v, want %v", addr, got, want)
		}
	}
}
