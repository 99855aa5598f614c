package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// udpReadSize is the largest query read over UDP; longer datagrams are
// cut short, and their unpacking fails (miekg/dns's MinMsgSize, the
// size its server reads).
const udpReadSize = mdns.MinMsgSize

// udpServer answers queries on a UDP socket bound to one address with a
// fixed pool of workers, each reading a datagram, answering it and
// writing the reply with buffers it keeps, with no goroutine, read
// deadline or control message per query. A socket bound to the wildcard
// address needs each query's destination address to reply from it, so
// Start leaves that case to miekg/dns's server.
type udpServer struct {
	conn    *net.UDPConn
	respond func(m, buf []byte, client netip.AddrPort) []byte
	onError func(client netip.AddrPort, err error)

	stopping atomic.Bool
	done     chan struct{} // closed when ActivateAndServe returns
}

func newUDPServer(conn *net.UDPConn, respond func(m, buf []byte, client netip.AddrPort) []byte, onError func(netip.AddrPort, error)) *udpServer {
	return &udpServer{conn: conn, respond: respond, onError: onError, done: make(chan struct{})}
}

// udpWorkers is how many queries are read and answered at once: enough
// to keep every processor busy while others wait in the kernel.
func udpWorkers() int {
	return max(4, 2*runtime.GOMAXPROCS(0))
}

// ActivateAndServe answers queries until ShutdownContext, then closes the socket.
// It returns nil after a shutdown, or the first read error that is not
// temporary (the other workers are then stopped too).
func (u *udpServer) ActivateAndServe() error {
	defer close(u.done)
	defer u.conn.Close()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range udpWorkers() {
		wg.Go(func() {
			if err := u.work(); err != nil {
				errOnce.Do(func() {
					firstErr = err
					u.stopping.Store(true) // the others' wake-up timeouts end them
					u.wake()
				})
			}
		})
	}
	wg.Wait()
	return firstErr
}

// work is one worker's loop; it returns nil when the server stops.
func (u *udpServer) work() error {
	in := make([]byte, udpReadSize)
	out := make([]byte, 0, udpReadSize)
	for {
		n, client, err := u.conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if u.stopping.Load() {
				return nil
			}
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Temporary() { //nolint:staticcheck // as miekg/dns does
				continue
			}
			return fmt.Errorf("read udp query: %w", err)
		}
		reply := u.respond(in[:n], out[:0], client)
		if reply == nil {
			continue
		}
		if _, err := u.conn.WriteToUDPAddrPort(reply, client); err != nil {
			u.onError(client, err)
		}
		if cap(reply) > cap(out) {
			out = reply[:0] // keep the larger buffer
		}
	}
}

// wake unblocks every worker waiting in a read.
func (u *udpServer) wake() {
	_ = u.conn.SetReadDeadline(time.Unix(1, 0))
}

// ShutdownContext stops the workers after the query each is answering
// and waits until ActivateAndServe has returned, or ctx ends.
func (u *udpServer) ShutdownContext(ctx context.Context) error {
	u.stopping.Store(true)
	u.wake()
	select {
	case <-u.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// respondWire answers one wire-format query m the way miekg/dns's server
// does for its handler: datagrams shorter than a header get nothing, the
// header goes through acceptMsg, a rejected request or one that does not
// unpack gets its header back with FORMERR (NOTIMP for an unknown
// opcode), and an accepted one gets its answer. The reply is packed into
// buf; nil means no reply.
func (s *Server) respondWire(m, buf []byte, client netip.AddrPort) []byte {
	if len(m) < 12 {
		return nil
	}
	req := new(mdns.Msg)
	action := acceptMsg(wireHeader(m))
	var resp *mdns.Msg
	switch action {
	case mdns.MsgIgnore:
		return nil
	case mdns.MsgAccept:
		if err := req.Unpack(m); err == nil {
			if resp = answer(s.zone.Load(), req); resp != nil && s.debugEnabled() {
				s.logQuery(req, resp, client.String())
			}
			break
		}
		resp = rejectReply(req, action)
	default:
		_ = req.Unpack(m[:12]) // the header alone always unpacks
		resp = rejectReply(req, action)
	}
	if resp == nil {
		return nil
	}
	out, err := resp.PackBuffer(buf)
	if err != nil {
		s.logger.Debug("dns pack response", "client", client.String(), "err", err)
		return nil
	}
	return out
}

// rejectReply turns req, as far as it unpacked, into the reply
// miekg/dns's server sends for a request it rejects or cannot unpack.
func rejectReply(req *mdns.Msg, action mdns.MsgAcceptAction) *mdns.Msg {
	opcode := req.Opcode
	req.SetRcodeFormatError(req)
	req.Zero = false
	if action == mdns.MsgRejectNotImplemented {
		req.Opcode = opcode
		req.Rcode = mdns.RcodeNotImplemented
	}
	req.Ns, req.Answer, req.Extra = nil, nil, nil
	return req
}

// wireHeader reads the header of m, which is at least 12 bytes long.
func wireHeader(m []byte) mdns.Header {
	u16 := func(i int) uint16 { return uint16(m[i])<<8 | uint16(m[i+1]) }
	return mdns.Header{Id: u16(0), Bits: u16(2), Qdcount: u16(4), Ancount: u16(6), Nscount: u16(8), Arcount: u16(10)}
}
