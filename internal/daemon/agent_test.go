package daemon

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"banger/internal/agent"
	"banger/internal/model"
)

// countingListener counts the connections accepted on it.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestHTTPProbesLinks checks the links vm ports gives: an http link for
// a listener that speaks HTTP, none for one that does not or for a
// loopback-only or UDP one, and no second probe of a listener already
// known.
func TestHTTPProbesLinks(t *testing.T) {
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: web}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(cl)
	defer srv.Close()
	banner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer banner.Close()
	go func() {
		for {
			c, err := banner.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-test\r\n"))
			c.Close()
		}
	}()
	port := func(l net.Listener) int { return int(netip.MustParseAddrPort(l.Addr().String()).Port()) }

	rec := model.VMRecord{ID: "id1", Name: "demo", Runtime: model.VMRuntime{GuestIP: "127.0.0.1"}}
	ls := []agent.Listener{
		{Proto: "tcp", Address: "0.0.0.0", Port: port(web), PID: 10, Process: "python3"},
		{Proto: "tcp", Address: "0.0.0.0", Port: port(banner), PID: 11, Process: "sshd"},
		{Proto: "tcp", Address: "127.0.0.1", Port: 631, PID: 12, Process: "cupsd"},
		{Proto: "udp", Address: "0.0.0.0", Port: 5353, PID: 13, Process: "avahi"},
	}
	want := []struct{ endpoint, url string }{
		{"demo.vm:" + strconv.Itoa(port(web)), "http://demo.vm:" + strconv.Itoa(port(web)) + "/"},
		{"demo.vm:" + strconv.Itoa(port(banner)), ""},
		{"", ""},
		{"demo.vm:5353", ""},
	}
	var p httpProbes
	for round := 1; round <= 2; round++ {
		got := p.links(context.Background(), rec, ls)
		for i, w := range want {
			if got[i].Endpoint != w.endpoint || got[i].URL != w.url {
				t.Errorf("round %d, %s: got endpoint %q url %q, want %q %q", round, ls[i].Process, got[i].Endpoint, got[i].URL, w.endpoint, w.url)
			}
		}
	}
	if n := cl.n.Load(); n != 1 {
		t.Errorf("probes of the web server over two rounds: got %d, want 1 (the second round remembers)", n)
	}
	// A new process on the same port is probed again.
	ls[0].PID = 20
	p.links(context.Background(), rec, ls)
	if n := cl.n.Load(); n != 2 {
		t.Errorf("probes after the listener's process changed: got %d, want 2", n)
	}
}
