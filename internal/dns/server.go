// Package dns is the authoritative DNS server for the .vm zone that runs
// inside bangerd: each VM named NAME is NAME.vm, an A record of its guest
// IP. The daemon owns one Server, feeds it the current name table with
// SetRecords, and stops it with Close or its context. Only the daemon
// imports this package. docs/dns-routing.md shows how to route .vm
// queries from the host's resolver to it.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"banger/internal/model"
)

// DefaultAddr is where the server listens unless told otherwise.
const DefaultAddr = "127.0.0.1:42069"

// shutdownTimeout bounds how long Close waits for in-flight queries.
const shutdownTimeout = 5 * time.Second

// Server answers queries for the .vm zone over UDP and TCP. The zero
// value is not usable; make one with New.
type Server struct {
	addr   string
	logger *slog.Logger

	// zone is swapped whole by SetRecords and read without locks by
	// every query.
	zone atomic.Pointer[zoneTable]

	mu        sync.Mutex
	started   bool
	boundAddr string
	stop      chan struct{} // closed by Close
	stopOnce  sync.Once
	finished  chan struct{} // closed once both listeners have shut down
	stopErr   error         // set before finished is closed
}

// New returns a server that will listen on addr (DefaultAddr when
// empty) once started, with an empty zone.
func New(addr string, logger *slog.Logger) *Server {
	if addr == "" {
		addr = DefaultAddr
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{addr: addr, logger: logger, stop: make(chan struct{})}
	s.zone.Store(&zoneTable{names: map[string]netip.Addr{}, serial: 1})
	return s
}

// Addr returns the address the server listens on: the bound address
// (with the real port when addr asked for port 0) once started, else the
// configured one.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boundAddr != "" {
		return s.boundAddr
	}
	return s.addr
}

// SetRecords replaces the whole zone with records, VM names (such as
// "demo", answered as "demo.vm.") to IPv4 addresses. Names are matched
// case-insensitively. Entries that are not valid VM names or not IPv4
// addresses are left out with a warning. Safe to call at any time,
// concurrently with queries; each query sees either the old or the new
// table, never a mix.
func (s *Server) SetRecords(records map[string]netip.Addr) {
	names := make(map[string]netip.Addr, len(records))
	for name, ip := range records {
		label := strings.ToLower(name)
		if err := model.ValidateName(label); err != nil {
			s.logger.Warn("dns record skipped", "name", name, "err", err)
			continue
		}
		ip = ip.Unmap()
		if !ip.Is4() {
			s.logger.Warn("dns record skipped: not an IPv4 address", "name", name, "ip", ip.String())
			continue
		}
		names[label] = ip
	}
	for {
		old := s.zone.Load()
		next := &zoneTable{names: names, serial: old.serial + 1}
		if next.serial == 0 {
			next.serial = 1
		}
		if s.zone.CompareAndSwap(old, next) {
			s.logger.Debug("dns records set", "count", len(names), "serial", next.serial)
			return
		}
	}
}

// Start binds addr on UDP and TCP and serves queries in the background.
// It returns once both listeners are up, or an error naming the address
// when either cannot bind. Serving stops when ctx ends or Close is
// called. A server starts at most once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("start dns server on %s: already started", s.addr)
	}
	select {
	case <-s.stop:
		return fmt.Errorf("start dns server on %s: server closed", s.addr)
	default:
	}

	pc, ln, err := listen(ctx, s.addr)
	if err != nil {
		return fmt.Errorf("start dns server on %s: %w", s.addr, err)
	}

	handler := mdns.HandlerFunc(s.serveDNS)
	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	var udp udpListener
	if conn, ok := pc.(*net.UDPConn); ok && !conn.LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		udp = newUDPServer(conn, s.respondWire, func(client netip.AddrPort, err error) {
			s.logWriteError(client.String(), err)
		})
		close(udpUp) // its workers read from the bound socket as soon as ActivateAndServe runs
	} else {
		udp = &mdns.Server{
			PacketConn:        pc,
			Handler:           handler,
			MsgAcceptFunc:     acceptMsg,
			NotifyStartedFunc: func() { close(udpUp) },
		}
	}
	tcp := &mdns.Server{
		Listener:          ln,
		Handler:           handler,
		MsgAcceptFunc:     acceptMsg,
		NotifyStartedFunc: func() { close(tcpUp) },
		ReadTimeout:       2 * time.Second,
		IdleTimeout:       func() time.Duration { return 8 * time.Second },
	}

	// Each listener reports on its own channel when its serve loop ends.
	udpDone, tcpDone := make(chan error, 1), make(chan error, 1)
	go func() { udpDone <- udp.ActivateAndServe() }()
	go func() { tcpDone <- tcp.ActivateAndServe() }()

	// Wait until both serve loops run: shutting one down earlier fails.
	for _, up := range []struct {
		ch   chan struct{}
		done chan error
	}{{udpUp, udpDone}, {tcpUp, tcpDone}} {
		select {
		case <-up.ch:
		case err := <-up.done:
			// A serve loop that ends before it started leaves the
			// other one running; stop it and release both sockets.
			_ = udp.ShutdownContext(context.Background())
			_ = tcp.Shutdown()
			pc.Close()
			ln.Close()
			return fmt.Errorf("start dns server on %s: %w", s.addr, err)
		}
	}

	s.started = true
	s.boundAddr = pc.LocalAddr().String()
	s.finished = make(chan struct{})
	s.logger.Info("dns server listening", "addr", s.boundAddr, "zone", Zone)

	go s.run(ctx, udp, tcp, udpDone, tcpDone)
	return nil
}

// run waits for ctx or Close, then shuts both listeners down.
func (s *Server) run(ctx context.Context, udp udpListener, tcp *mdns.Server, udpDone, tcpDone chan error) {
	select {
	case <-ctx.Done():
	case <-s.stop:
	case err := <-udpDone:
		s.logger.Error("dns server stopped serving udp", "addr", s.boundAddr, "err", err)
		udpDone <- err
	case err := <-tcpDone:
		s.logger.Error("dns server stopped serving tcp", "addr", s.boundAddr, "err", err)
		tcpDone <- err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var errs []error
	if err := udp.ShutdownContext(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down dns udp listener: %w", err))
	}
	if err := tcp.ShutdownContext(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down dns tcp listener: %w", err))
	}
	for _, done := range []chan error{udpDone, tcpDone} {
		if err := <-done; err != nil {
			errs = append(errs, fmt.Errorf("serve dns: %w", err))
		}
	}
	s.stopErr = errors.Join(errs...)
	s.logger.Info("dns server stopped", "addr", s.boundAddr)
	close(s.finished)
}

// Close stops the server and waits until both listeners are closed. It
// may be called more than once and before Start; only the first call
// after Start reports shutdown errors.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	finished := s.finished
	s.mu.Unlock()
	if finished == nil {
		return nil
	}
	<-finished
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.stopErr
	s.stopErr = nil
	return err
}

// serveDNS answers one request that passed acceptMsg; miekg/dns's
// servers call it for TCP, and for UDP on a wildcard address.
func (s *Server) serveDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp := answer(s.zone.Load(), req)
	if resp == nil {
		return
	}
	if s.debugEnabled() {
		s.logQuery(req, resp, w.RemoteAddr().String())
	}
	if err := w.WriteMsg(resp); err != nil {
		s.logWriteError(w.RemoteAddr().String(), err)
	}
}

func (s *Server) debugEnabled() bool {
	return s.logger.Enabled(context.Background(), slog.LevelDebug)
}

// logQuery logs one answered query at debug level.
func (s *Server) logQuery(req, resp *mdns.Msg, client string) {
	q := req.Question[0]
	s.logger.Debug("dns query", "name", q.Name, "type", mdns.TypeToString[q.Qtype],
		"rcode", mdns.RcodeToString[resp.Rcode], "client", client)
}

func (s *Server) logWriteError(client string, err error) {
	s.logger.Debug("dns write response", "client", client, "err", err)
}

// udpListener is the UDP side of the server: udpServer, or miekg/dns's
// server for a wildcard address.
type udpListener interface {
	ActivateAndServe() error
	ShutdownContext(ctx context.Context) error
}

// acceptMsg screens requests by their header before they are parsed:
// responses are dropped, opcodes other than QUERY get NOTIMP, and
// anything but exactly one question (or sections a query never carries)
// gets FORMERR.
func acceptMsg(dh mdns.Header) mdns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return mdns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != mdns.OpcodeQuery {
		return mdns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return mdns.MsgReject
	}
	return mdns.MsgAccept
}

// listen binds addr on UDP, then the same port on TCP. With port 0 the
// kernel picks a UDP port that may be taken on TCP, so that case retries
// a few times.
func listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("parse address: %w", err)
	}
	attempts := 1
	if port == "0" {
		attempts = 10
	}
	for i := 0; ; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := lc.Listen(ctx, "tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= attempts {
			return nil, nil, err
		}
	}
}
