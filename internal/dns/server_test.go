package dns

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

var transports = []string{"udp", "tcp"}

// startServer starts a server on a free loopback port with records and
// stops it when the test ends.
func startServer(t *testing.T, records map[string]netip.Addr) *Server {
	t.Helper()
	s := New("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if records != nil {
		s.SetRecords(records)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func query(t *testing.T, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	// A UDP query can be lost (a loaded host, a full socket buffer):
	// retry like a resolver does; a dead server still fails every try.
	resp, err := exchange(network, addr, name, qtype)
	for try := 1; err != nil && network == "udp" && try < 4; try++ {
		resp, err = exchange(network, addr, name, qtype)
	}
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	return resp
}

func exchange(network, addr, name string, qtype uint16) (*mdns.Msg, error) {
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	req := new(mdns.Msg)
	req.SetQuestion(name, qtype)
	resp, _, err := c.Exchange(req, addr)
	return resp, err
}

func TestServerAnswers(t *testing.T) {
	demo := netip.MustParseAddr("172.16.0.2")
	s := startServer(t, map[string]netip.Addr{
		"demo":  demo,
		"Other": netip.MustParseAddr("172.16.0.3"),
	})

	tests := []struct {
		name       string
		qname      string
		qtype      uint16
		wantRcode  int
		wantAA     bool
		wantA      string // the A answer, "" for none
		wantSOANs  bool   // an SOA in the authority section
		wantAnswer int
	}{
		{name: "known name A", qname: "demo.vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantA: "172.16.0.2", wantAnswer: 1},
		{name: "upper case query", qname: "DEMO.VM.", qtype: mdns.TypeA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantA: "172.16.0.2", wantAnswer: 1},
		{name: "mixed case query", qname: "DeMo.Vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantA: "172.16.0.2", wantAnswer: 1},
		{name: "record set with upper case key", qname: "other.vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantA: "172.16.0.3", wantAnswer: 1},
		{name: "known name ANY", qname: "demo.vm.", qtype: mdns.TypeANY, wantRcode: mdns.RcodeSuccess, wantAA: true, wantA: "172.16.0.2", wantAnswer: 1},
		{name: "known name AAAA is NODATA", qname: "demo.vm.", qtype: mdns.TypeAAAA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantSOANs: true},
		{name: "known name MX is NODATA", qname: "demo.vm.", qtype: mdns.TypeMX, wantRcode: mdns.RcodeSuccess, wantAA: true, wantSOANs: true},
		{name: "unknown name", qname: "nope.vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeNameError, wantAA: true, wantSOANs: true},
		{name: "name below a VM", qname: "www.demo.vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeNameError, wantAA: true, wantSOANs: true},
		{name: "apex SOA", qname: "vm.", qtype: mdns.TypeSOA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantAnswer: 1},
		{name: "apex NS", qname: "vm.", qtype: mdns.TypeNS, wantRcode: mdns.RcodeSuccess, wantAA: true, wantAnswer: 1},
		{name: "apex A is NODATA", qname: "vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeSuccess, wantAA: true, wantSOANs: true},
		{name: "outside the zone", qname: "example.com.", qtype: mdns.TypeA, wantRcode: mdns.RcodeRefused},
		{name: "suffix that is not the zone", qname: "demovm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeRefused},
		{name: "root", qname: ".", qtype: mdns.TypeNS, wantRcode: mdns.RcodeRefused},
		{name: "zone transfer", qname: "vm.", qtype: mdns.TypeAXFR, wantRcode: mdns.RcodeRefused},
	}
	for _, network := range transports {
		for _, tt := range tests {
			if tt.qtype == mdns.TypeAXFR && network == "udp" {
				continue // AXFR is TCP only
			}
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				resp := query(t, network, s.Addr(), tt.qname, tt.qtype)
				if resp.Rcode != tt.wantRcode {
					t.Fatalf("got rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.wantRcode])
				}
				if resp.Authoritative != tt.wantAA {
					t.Errorf("got AA %v, want %v", resp.Authoritative, tt.wantAA)
				}
				if resp.RecursionAvailable {
					t.Errorf("got RA set, want clear")
				}
				if len(resp.Answer) != tt.wantAnswer {
					t.Fatalf("got %d answers (%v), want %d", len(resp.Answer), resp.Answer, tt.wantAnswer)
				}
				if tt.wantA != "" {
					a, ok := resp.Answer[0].(*mdns.A)
					if !ok {
						t.Fatalf("got answer %v, want an A record", resp.Answer[0])
					}
					if got := a.A.String(); got != tt.wantA {
						t.Errorf("got A %s, want %s", got, tt.wantA)
					}
					if a.Hdr.Ttl != TTL {
						t.Errorf("got TTL %d, want %d", a.Hdr.Ttl, TTL)
					}
					if !strings.EqualFold(a.Hdr.Name, tt.qname) {
						t.Errorf("got owner %q, want %q", a.Hdr.Name, tt.qname)
					}
				}
				gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == mdns.TypeSOA
				if gotSOA != tt.wantSOANs {
					t.Errorf("got authority %v, want SOA: %v", resp.Ns, tt.wantSOANs)
				}
			})
		}
	}
}

func TestServerApexRecords(t *testing.T) {
	s := startServer(t, nil)
	resp := query(t, "udp", s.Addr(), "vm.", mdns.TypeSOA)
	soa, ok := resp.Answer[0].(*mdns.SOA)
	if !ok {
		t.Fatalf("got answer %v, want SOA", resp.Answer[0])
	}
	if soa.Hdr.Name != Zone || soa.Ns != "localhost." || soa.Minttl != TTL {
		t.Errorf("got SOA %v, want owner %s, mname localhost., minimum %d", soa, Zone, TTL)
	}
	resp = query(t, "udp", s.Addr(), "vm.", mdns.TypeNS)
	nsRR, ok := resp.Answer[0].(*mdns.NS)
	if !ok {
		t.Fatalf("got answer %v, want NS", resp.Answer[0])
	}
	if nsRR.Ns != "localhost." {
		t.Errorf("got NS %q, want localhost.", nsRR.Ns)
	}
}

func TestSetRecordsReplacesTable(t *testing.T) {
	s := startServer(t, map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
	serialBefore := query(t, "udp", s.Addr(), "vm.", mdns.TypeSOA).Answer[0].(*mdns.SOA).Serial

	s.SetRecords(map[string]netip.Addr{
		"fresh": netip.MustParseAddr("172.16.0.9"),
		"demo2": netip.MustParseAddr("::ffff:172.16.0.10"), // IPv4-mapped: served as IPv4
		"bad_":  netip.MustParseAddr("172.16.0.11"),        // not a VM name: skipped
		"six":   netip.MustParseAddr("fd00::1"),            // not IPv4: skipped
	})

	tests := []struct {
		qname     string
		wantRcode int
		wantA     string
	}{
		{qname: "demo.vm.", wantRcode: mdns.RcodeNameError},
		{qname: "fresh.vm.", wantRcode: mdns.RcodeSuccess, wantA: "172.16.0.9"},
		{qname: "demo2.vm.", wantRcode: mdns.RcodeSuccess, wantA: "172.16.0.10"},
		{qname: "six.vm.", wantRcode: mdns.RcodeNameError},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			resp := query(t, "udp", s.Addr(), tt.qname, mdns.TypeA)
			if resp.Rcode != tt.wantRcode {
				t.Fatalf("got rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.wantRcode])
			}
			if tt.wantA == "" {
				return
			}
			if len(resp.Answer) != 1 {
				t.Fatalf("got answers %v, want one A", resp.Answer)
			}
			if got := resp.Answer[0].(*mdns.A).A.String(); got != tt.wantA {
				t.Errorf("got A %s, want %s", got, tt.wantA)
			}
		})
	}

	serialAfter := query(t, "udp", s.Addr(), "vm.", mdns.TypeSOA).Answer[0].(*mdns.SOA).Serial
	if serialAfter <= serialBefore {
		t.Errorf("got SOA serial %d after SetRecords, want more than %d", serialAfter, serialBefore)
	}

	// The caller's map is copied: changing it later changes nothing.
	records := map[string]netip.Addr{"mine": netip.MustParseAddr("172.16.0.20")}
	s.SetRecords(records)
	delete(records, "mine")
	if got := query(t, "udp", s.Addr(), "mine.vm.", mdns.TypeA).Rcode; got != mdns.RcodeSuccess {
		t.Errorf("got rcode %s after the caller changed its map, want NOERROR", mdns.RcodeToString[got])
	}
}

// TestConcurrentSetRecords swaps tables while clients query; under -race
// it catches unsynchronised access, and every answer must come from one
// whole table (the name and its address always agree).
func TestConcurrentSetRecords(t *testing.T) {
	// Every table, the first included, holds "a": readers that run before
	// the writer's first swap must find it too.
	s := startServer(t, map[string]netip.Addr{"a": netip.MustParseAddr("10.0.0.1")})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			// Table i holds "a" -> 10.0.0.(i%250) and "b" only on even i.
			records := map[string]netip.Addr{"a": netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 250)})}
			if i%2 == 0 {
				records["b"] = netip.MustParseAddr("10.1.0.1")
			}
			s.SetRecords(records)
		}
	}()

	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network := transports[w%2]
			for n := 0; n < 50 && ctx.Err() == nil; n++ {
				resp, err := exchange(network, s.Addr(), "a.vm.", mdns.TypeA)
				if err != nil {
					errs <- fmt.Errorf("query over %s: %w", network, err)
					return
				}
				if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 {
					errs <- fmt.Errorf("got rcode %s with %d answers, want NOERROR with one A", mdns.RcodeToString[resp.Rcode], len(resp.Answer))
					return
				}
				if ip := resp.Answer[0].(*mdns.A).A.To4(); ip == nil || ip[0] != 10 || ip[1] != 0 {
					errs <- fmt.Errorf("got A %v, want 10.0.0.x", resp.Answer[0])
					return
				}
			}
		}()
	}
	// Stop the writer once the readers are done.
	go func() {
		wg.Wait()
		close(errs)
	}()
	readersDone := make(chan struct{})
	go func() {
		for err := range errs {
			t.Error(err)
		}
		close(readersDone)
	}()
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-readersDone
}

func TestGarbageDoesNotStopServer(t *testing.T) {
	s := startServer(t, map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})

	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	payloads := [][]byte{
		{},
		{0x00},
		{0xff, 0xff, 0xff},
		make([]byte, 12),   // header only, no question
		make([]byte, 4096), // zeros
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c}, // compression loop
	}
	for i := 0; i < 200; i++ {
		buf := make([]byte, 1+i*7%600)
		rand.Read(buf)
		payloads = append(payloads, buf)
	}
	for _, p := range payloads {
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("send garbage: %v", err)
		}
	}
	// Garbage over TCP too: a length prefix and junk, then a hang-up.
	tc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("dial tcp: %v", err)
	}
	tc.Write([]byte{0x00, 0x20, 0xde, 0xad, 0xbe, 0xef})
	tc.Close()

	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			resp := query(t, network, s.Addr(), "demo.vm.", mdns.TypeA)
			if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Fatalf("got rcode %s with answers %v after garbage, want NOERROR with one A", mdns.RcodeToString[resp.Rcode], resp.Answer)
			}
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	s := startServer(t, map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
	q := mdns.Question{Name: "demo.vm.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}

	tests := []struct {
		name      string
		req       func() *mdns.Msg
		wantRcode int
	}{
		{
			name:      "two questions",
			req:       func() *mdns.Msg { m := new(mdns.Msg); m.Id = 7; m.Question = []mdns.Question{q, q}; return m },
			wantRcode: mdns.RcodeFormatError,
		},
		{
			name:      "no question",
			req:       func() *mdns.Msg { m := new(mdns.Msg); m.Id = 7; return m },
			wantRcode: mdns.RcodeFormatError,
		},
		{
			name: "update opcode",
			req: func() *mdns.Msg {
				m := new(mdns.Msg)
				m.SetUpdate(Zone)
				return m
			},
			wantRcode: mdns.RcodeNotImplemented,
		},
		{
			name: "unknown EDNS version",
			req: func() *mdns.Msg {
				m := new(mdns.Msg)
				m.SetQuestion("demo.vm.", mdns.TypeA)
				m.SetEdns0(1232, false)
				m.IsEdns0().SetVersion(1)
				return m
			},
			wantRcode: mdns.RcodeBadVers,
		},
		{
			name: "CHAOS class",
			req: func() *mdns.Msg {
				m := new(mdns.Msg)
				m.SetQuestion("version.bind.", mdns.TypeTXT)
				m.Question[0].Qclass = mdns.ClassCHAOS
				return m
			},
			wantRcode: mdns.RcodeRefused,
		},
	}
	for _, network := range transports {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
				resp, _, err := c.Exchange(tt.req(), s.Addr())
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				if resp.Rcode != tt.wantRcode {
					t.Errorf("got rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.wantRcode])
				}
			})
		}
	}
}

func TestEDNSEchoed(t *testing.T) {
	s := startServer(t, map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
	req := new(mdns.Msg)
	req.SetQuestion("demo.vm.", mdns.TypeA)
	req.SetEdns0(4096, true)
	c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(req, s.Addr())
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	opt := resp.IsEdns0()
	if opt == nil {
		t.Fatalf("got no OPT record, want one echoed to an EDNS query")
	}
	if opt.UDPSize() != ednsUDPSize {
		t.Errorf("got UDP size %d, want %d", opt.UDPSize(), ednsUDPSize)
	}
}

func TestStartBusyPort(t *testing.T) {
	first := startServer(t, nil)

	tests := []struct {
		name    string
		occupy  func(t *testing.T) string // returns the busy address
		network string
	}{
		{
			name:    "udp and tcp taken by another server",
			occupy:  func(t *testing.T) string { return first.Addr() },
			network: "udp",
		},
		{
			name: "only tcp taken",
			occupy: func(t *testing.T) string {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatalf("listen: %v", err)
				}
				t.Cleanup(func() { ln.Close() })
				return ln.Addr().String()
			},
			network: "tcp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.occupy(t)
			s := New(addr, nil)
			err := s.Start(t.Context())
			if err == nil {
				s.Close()
				t.Fatalf("got Start on busy %s succeeding, want an error", addr)
			}
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("got error %q, want it to name %s", err, addr)
			}
			if !strings.Contains(err.Error(), tt.network) {
				t.Errorf("got error %q, want it to name the %s listener", err, tt.network)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("got error %q, want EADDRINUSE", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close after failed Start: %v", err)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	t.Run("context end stops the server", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		s := New("127.0.0.1:0", nil)
		s.SetRecords(map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
		if err := s.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		addr := s.Addr()
		if got := query(t, "tcp", addr, "demo.vm.", mdns.TypeA).Rcode; got != mdns.RcodeSuccess {
			t.Fatalf("got rcode %s, want NOERROR", mdns.RcodeToString[got])
		}
		cancel()
		if err := s.Close(); err != nil { // waits for the shutdown ctx started
			t.Fatalf("Close: %v", err)
		}
		if _, err := exchange("tcp", addr, "demo.vm.", mdns.TypeA); err == nil {
			t.Errorf("got an answer over tcp after the context ended, want none")
		}
		// The port is free again.
		again := New(addr, nil)
		if err := again.Start(t.Context()); err != nil {
			t.Fatalf("restart on %s: %v", addr, err)
		}
		if err := again.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	t.Run("close twice and start after close", func(t *testing.T) {
		s := New("127.0.0.1:0", nil)
		if err := s.Start(t.Context()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := s.Start(t.Context()); err == nil {
			t.Errorf("got second Start succeeding, want an error")
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("close before start", func(t *testing.T) {
		s := New("", nil)
		if got := s.Addr(); got != DefaultAddr {
			t.Errorf("got Addr %q, want %q", got, DefaultAddr)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := s.Start(t.Context()); err == nil {
			t.Errorf("got Start after Close succeeding, want an error")
		}
	})
}
