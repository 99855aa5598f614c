package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

func testZone() *zoneTable {
	return &zoneTable{
		names:  map[string]netip.Addr{"demo": netip.MustParseAddr("172.16.0.2")},
		serial: 42,
	}
}

func TestAnswerDropsResponses(t *testing.T) {
	req := new(mdns.Msg)
	req.SetQuestion("demo.vm.", mdns.TypeA)
	req.Response = true
	if resp := answer(testZone(), req); resp != nil {
		t.Errorf("got response %v to a response, want none", resp)
	}
}

func TestAnswerHeader(t *testing.T) {
	req := new(mdns.Msg)
	req.SetQuestion("demo.vm.", mdns.TypeA)
	req.CheckingDisabled = true
	resp := answer(testZone(), req)
	if resp.Id != req.Id {
		t.Errorf("got id %d, want %d", resp.Id, req.Id)
	}
	if !resp.Response || !resp.Authoritative || !resp.RecursionDesired || resp.RecursionAvailable {
		t.Errorf("got QR=%v AA=%v RD=%v RA=%v, want QR, AA and RD (copied) set and RA clear",
			resp.Response, resp.Authoritative, resp.RecursionDesired, resp.RecursionAvailable)
	}
	if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
		t.Errorf("got question %v, want %v echoed", resp.Question, req.Question)
	}
	if resp.IsEdns0() != nil {
		t.Errorf("got an OPT record for a query without EDNS, want none")
	}
}

func TestAnswerNegativeSOA(t *testing.T) {
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRcode int
	}{
		{name: "NXDOMAIN", qname: "gone.vm.", qtype: mdns.TypeA, wantRcode: mdns.RcodeNameError},
		{name: "NODATA", qname: "demo.vm.", qtype: mdns.TypeAAAA, wantRcode: mdns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := new(mdns.Msg)
			req.SetQuestion(tt.qname, tt.qtype)
			resp := answer(testZone(), req)
			if resp.Rcode != tt.wantRcode {
				t.Fatalf("got rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.wantRcode])
			}
			if len(resp.Answer) != 0 {
				t.Errorf("got answers %v, want none", resp.Answer)
			}
			if len(resp.Ns) != 1 {
				t.Fatalf("got authority %v, want one SOA", resp.Ns)
			}
			soa, ok := resp.Ns[0].(*mdns.SOA)
			if !ok {
				t.Fatalf("got authority %v, want SOA", resp.Ns[0])
			}
			// RFC 2308: the negative TTL is min(SOA TTL, SOA minimum).
			if soa.Hdr.Ttl != TTL || soa.Minttl != TTL || soa.Serial != 42 {
				t.Errorf("got SOA ttl %d minimum %d serial %d, want %d, %d, 42", soa.Hdr.Ttl, soa.Minttl, soa.Serial, TTL, TTL)
			}
		})
	}
}
