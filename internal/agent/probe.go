package agent

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"time"
)

// probeTimeout bounds ProbeHTTP when ctx has no deadline.
const probeTimeout = 300 * time.Millisecond

// ProbeHTTP reports whether the TCP service at addr ("host:port") speaks
// plain HTTP: it sends a HEAD request for / with Host: host and checks
// that the reply starts with "HTTP/". Services that speak first (SSH) or
// not at all fail fast or at the deadline (ctx's, or 300 ms). The daemon
// runs it from the host against the guest's address to decide which
// listeners get an http:// link.
func ProbeHTTP(ctx context.Context, addr, host string) bool {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte("HEAD / HTTP/1.0\r\nHost: " + host + "\r\nUser-Agent: banger\r\n\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 5)
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	return bytes.Equal(buf[:n], []byte("HTTP/"))
}

// Loopback reports whether l is bound to a loopback address only, so
// nothing outside the guest can reach it.
func (l Listener) Loopback() bool {
	a, err := netip.ParseAddr(l.Address)
	return err == nil && a.Unmap().IsLoopback()
}
