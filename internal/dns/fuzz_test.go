package dns

import (
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzAnswer feeds random wire messages through the same path the
// server takes (header screen, unpack, answer) and checks that nothing
// panics and every response packs and stays a well-formed reply.
func FuzzAnswer(f *testing.F) {
	seeds := []*mdns.Msg{
		new(mdns.Msg).SetQuestion("demo.vm.", mdns.TypeA),
		new(mdns.Msg).SetQuestion("DEMO.vm.", mdns.TypeAAAA),
		new(mdns.Msg).SetQuestion("vm.", mdns.TypeSOA),
		new(mdns.Msg).SetQuestion("vm.", mdns.TypeANY),
		new(mdns.Msg).SetQuestion("x.demo.vm.", mdns.TypeA),
		new(mdns.Msg).SetQuestion("example.com.", mdns.TypeA),
		new(mdns.Msg).SetUpdate(Zone),
		new(mdns.Msg).SetQuestion("demo.vm.", mdns.TypeA).SetEdns0(4096, true),
	}
	for _, m := range seeds {
		buf, err := m.Pack()
		if err != nil {
			f.Fatalf("pack seed %v: %v", m, err)
		}
		f.Add(buf)
	}
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c})

	zone := testZone()
	f.Fuzz(func(t *testing.T, data []byte) {
		var dh mdns.Header
		if len(data) >= 12 {
			dh = mdns.Header{
				Bits:    uint16(data[2])<<8 | uint16(data[3]),
				Qdcount: uint16(data[4])<<8 | uint16(data[5]),
				Ancount: uint16(data[6])<<8 | uint16(data[7]),
				Nscount: uint16(data[8])<<8 | uint16(data[9]),
				Arcount: uint16(data[10])<<8 | uint16(data[11]),
			}
		}
		_ = acceptMsg(dh)

		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		resp := answer(zone, req)
		if resp == nil {
			if !req.Response {
				t.Fatalf("got no response to request %v", req)
			}
			return
		}
		if !resp.Response || resp.Id != req.Id {
			t.Fatalf("got response QR=%v id %d, want QR set and id %d", resp.Response, resp.Id, req.Id)
		}
		if len(resp.Question) > 1 {
			t.Fatalf("got %d questions in the response, want at most 1", len(resp.Question))
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("pack response %v: %v", resp, err)
		}
	})
}
