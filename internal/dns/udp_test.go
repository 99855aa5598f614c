package dns

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestRespondWire(t *testing.T) {
	s := New("127.0.0.1:0", slog.New(slog.DiscardHandler))
	s.SetRecords(map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
	client := netip.MustParseAddrPort("127.0.0.1:5353")
	pack := func(t *testing.T, m *mdns.Msg) []byte {
		t.Helper()
		buf, err := m.Pack()
		if err != nil {
			t.Fatalf("pack %v: %v", m, err)
		}
		return buf
	}
	query := func(name string, qtype uint16) *mdns.Msg {
		m := new(mdns.Msg).SetQuestion(name, qtype)
		m.Id = 4242
		return m
	}

	tests := []struct {
		name      string
		wire      func(t *testing.T) []byte
		wantNil   bool
		wantRcode int
		wantOp    int
		wantQd    int
		wantA     string
	}{
		{
			name:    "shorter than a header",
			wire:    func(t *testing.T) []byte { return []byte{0x12, 0x34, 0x01} },
			wantNil: true,
		},
		{
			name: "a response is ignored",
			wire: func(t *testing.T) []byte {
				m := query("demo.vm.", mdns.TypeA)
				m.Response = true
				return pack(t, m)
			},
			wantNil: true,
		},
		{
			name:      "known name",
			wire:      func(t *testing.T) []byte { return pack(t, query("demo.vm.", mdns.TypeA)) },
			wantRcode: mdns.RcodeSuccess,
			wantQd:    1,
			wantA:     "172.16.0.2",
		},
		{
			name:      "unknown name",
			wire:      func(t *testing.T) []byte { return pack(t, query("nope.vm.", mdns.TypeA)) },
			wantRcode: mdns.RcodeNameError,
			wantQd:    1,
		},
		{
			name: "two questions rejected by header",
			wire: func(t *testing.T) []byte {
				m := query("demo.vm.", mdns.TypeA)
				m.Question = append(m.Question, m.Question[0])
				return pack(t, m)
			},
			wantRcode: mdns.RcodeFormatError,
		},
		{
			name:      "update opcode",
			wire:      func(t *testing.T) []byte { m := new(mdns.Msg).SetUpdate(Zone); m.Id = 4242; return pack(t, m) },
			wantRcode: mdns.RcodeNotImplemented,
			wantOp:    mdns.OpcodeUpdate,
		},
		{
			name: "question that does not unpack",
			wire: func(t *testing.T) []byte {
				buf := pack(t, query("demo.vm.", mdns.TypeA))
				return buf[:len(buf)-3] // cut inside qtype/qclass
			},
			wantRcode: mdns.RcodeFormatError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := s.respondWire(tt.wire(t), make([]byte, 0, 16), client)
			if tt.wantNil {
				if out != nil {
					t.Fatalf("got a %d-byte reply, want none", len(out))
				}
				return
			}
			if out == nil {
				t.Fatalf("got no reply, want rcode %s", mdns.RcodeToString[tt.wantRcode])
			}
			resp := new(mdns.Msg)
			if err := resp.Unpack(out); err != nil {
				t.Fatalf("unpack reply: %v", err)
			}
			if resp.Id != 4242 || !resp.Response {
				t.Errorf("got id %d QR %v, want id 4242 and QR set", resp.Id, resp.Response)
			}
			if resp.Rcode != tt.wantRcode {
				t.Errorf("got rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.wantRcode])
			}
			if resp.Opcode != tt.wantOp {
				t.Errorf("got opcode %d, want %d", resp.Opcode, tt.wantOp)
			}
			if len(resp.Question) != tt.wantQd {
				t.Errorf("got %d questions, want %d", len(resp.Question), tt.wantQd)
			}
			if tt.wantA != "" {
				if len(resp.Answer) != 1 {
					t.Fatalf("got answers %v, want one A", resp.Answer)
				}
				if got := resp.Answer[0].(*mdns.A).A.String(); got != tt.wantA {
					t.Errorf("got A %s, want %s", got, tt.wantA)
				}
			}
		})
	}
}

// TestRespondWireMatchesAnswer checks that an accepted query gets exactly
// the bytes answer's message packs to, as the handler path sends.
func TestRespondWireMatchesAnswer(t *testing.T) {
	s := New("127.0.0.1:0", nil)
	s.SetRecords(map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
	tests := []struct {
		name  string
		qname string
		qtype uint16
		edns  bool
	}{
		{name: "A", qname: "demo.vm.", qtype: mdns.TypeA},
		{name: "AAAA nodata", qname: "demo.vm.", qtype: mdns.TypeAAAA},
		{name: "apex SOA", qname: "vm.", qtype: mdns.TypeSOA},
		{name: "outside the zone", qname: "example.com.", qtype: mdns.TypeA},
		{name: "EDNS", qname: "DeMo.vm.", qtype: mdns.TypeA, edns: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := new(mdns.Msg).SetQuestion(tt.qname, tt.qtype)
			if tt.edns {
				req.SetEdns0(4096, false)
			}
			wire, err := req.Pack()
			if err != nil {
				t.Fatalf("pack query: %v", err)
			}
			want, err := answer(s.zone.Load(), req).Pack()
			if err != nil {
				t.Fatalf("pack answer: %v", err)
			}
			got := s.respondWire(wire, nil, netip.MustParseAddrPort("127.0.0.1:5353"))
			if !bytes.Equal(got, want) {
				t.Errorf("got reply %x, want %x", got, want)
			}
		})
	}
}

// FuzzRespondWire checks that no datagram panics the UDP path and that
// every reply unpacks as a response to the same id.
func FuzzRespondWire(f *testing.F) {
	for _, m := range []*mdns.Msg{
		new(mdns.Msg).SetQuestion("demo.vm.", mdns.TypeA),
		new(mdns.Msg).SetQuestion("vm.", mdns.TypeANY).SetEdns0(1232, true),
		new(mdns.Msg).SetUpdate(Zone),
	} {
		buf, err := m.Pack()
		if err != nil {
			f.Fatalf("pack seed %v: %v", m, err)
		}
		f.Add(buf)
	}
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c})
	s := New("127.0.0.1:0", nil)
	s.SetRecords(map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")})
	f.Fuzz(func(t *testing.T, data []byte) {
		out := s.respondWire(data, nil, netip.MustParseAddrPort("127.0.0.1:5353"))
		if out == nil {
			return
		}
		resp := new(mdns.Msg)
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("unpack reply %x: %v", out, err)
		}
		if !resp.Response || resp.Id != wireHeader(data).Id {
			t.Fatalf("got QR=%v id %d, want QR set and id %d", resp.Response, resp.Id, wireHeader(data).Id)
		}
	})
}

// TestUDPServerStops checks both ways the UDP workers end: a shutdown
// (nil) and a socket that fails under them (its error, once every
// worker has stopped).
func TestUDPServerStops(t *testing.T) {
	tests := []struct {
		name    string
		stop    func(u *udpServer, conn *net.UDPConn)
		wantErr bool
	}{
		{name: "shutdown", stop: func(u *udpServer, _ *net.UDPConn) { _ = u.ShutdownContext(t.Context()) }},
		{name: "socket closed under it", stop: func(_ *udpServer, conn *net.UDPConn) { conn.Close() }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			u := newUDPServer(conn, func(m, buf []byte, _ netip.AddrPort) []byte { return nil },
				func(netip.AddrPort, error) {})
			done := make(chan error, 1)
			go func() { done <- u.ActivateAndServe() }()
			time.Sleep(20 * time.Millisecond) // let the workers block in reads
			tt.stop(u, conn)
			select {
			case err := <-done:
				if (err != nil) != tt.wantErr {
					t.Errorf("got ActivateAndServe error %v, want error: %v", err, tt.wantErr)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("got ActivateAndServe still running 2 s after the stop, want it returned")
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := u.ShutdownContext(ctx); err != nil {
				t.Errorf("ShutdownContext after return: %v", err)
			}
		})
	}
}
