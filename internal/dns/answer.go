package dns

import (
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// The zone and the values of the records the server hands out.
const (
	// Zone is the zone the server is authoritative for.
	Zone = "vm."
	// TTL is the time to live, in seconds, of every answer, and the
	// negative caching time of NXDOMAIN and NODATA answers: VMs come and
	// go, so resolvers must not remember them for long.
	TTL = 5

	// The apex follows RFC 6303 (locally served zones): the name server
	// is localhost. and the mailbox nobody.invalid., names that no VM can
	// shadow.
	soaMname = "localhost."
	soaRname = "nobody.invalid."

	// ednsUDPSize is the UDP payload size advertised back to EDNS
	// clients (the DNS flag day 2020 value).
	ednsUDPSize = 1232
)

// zoneTable is one immutable snapshot of the zone: VM names (lowercase
// labels) to IPv4 addresses, and the SOA serial of this version.
type zoneTable struct {
	names  map[string]netip.Addr
	serial uint32
}

// answer builds the response to req from the zone snapshot z. It returns
// nil when req must not be answered (it is itself a response). It never
// panics on any message that unpacks.
func answer(z *zoneTable, req *mdns.Msg) *mdns.Msg {
	if req.Response {
		return nil
	}
	resp := new(mdns.Msg)
	resp.SetReply(req)
	if req.Opcode != mdns.OpcodeQuery {
		resp.Rcode = mdns.RcodeNotImplemented
		return withEDNS(req, resp)
	}
	if len(req.Question) != 1 {
		resp.Question = nil
		resp.Rcode = mdns.RcodeFormatError
		return withEDNS(req, resp)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		// RFC 6891 section 6.1.3: unknown EDNS version.
		resp.Rcode = mdns.RcodeBadVers
		return withEDNS(req, resp)
	}

	q := req.Question[0]
	if (q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY) || !mdns.IsSubDomain(Zone, q.Name) {
		resp.Rcode = mdns.RcodeRefused
		return withEDNS(req, resp)
	}
	switch q.Qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR:
		// No zone transfers.
		resp.Rcode = mdns.RcodeRefused
		return withEDNS(req, resp)
	}

	resp.Authoritative = true
	name := strings.ToLower(q.Name)
	if name == Zone {
		switch q.Qtype {
		case mdns.TypeSOA:
			resp.Answer = []mdns.RR{soa(z)}
		case mdns.TypeNS:
			resp.Answer = []mdns.RR{ns()}
		case mdns.TypeANY:
			resp.Answer = []mdns.RR{soa(z), ns()}
		default:
			resp.Ns = []mdns.RR{soa(z)}
		}
		return withEDNS(req, resp)
	}

	// A VM is exactly one label under the zone; deeper names and labels
	// that are not VM names do not exist. Names are matched in the
	// lowercase form the table holds (RFC 4343: case-insensitive).
	label := strings.TrimSuffix(name, "."+Zone)
	ip, ok := z.names[label]
	if !ok {
		resp.Rcode = mdns.RcodeNameError
		resp.Ns = []mdns.RR{soa(z)}
		return withEDNS(req, resp)
	}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeANY:
		resp.Answer = []mdns.RR{&mdns.A{
			// The owner name echoes the question's spelling.
			Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: TTL},
			A:   ip.AsSlice(),
		}}
	default:
		// NODATA: the name exists, but has no record of this type.
		resp.Ns = []mdns.RR{soa(z)}
	}
	return withEDNS(req, resp)
}

// withEDNS adds an OPT record to resp when req carried one (RFC 6891
// section 6.1.1), so an extended rcode such as BADVERS can travel.
func withEDNS(req, resp *mdns.Msg) *mdns.Msg {
	if req.IsEdns0() != nil {
		resp.SetEdns0(ednsUDPSize, false)
	}
	return resp
}

func soa(z *zoneTable) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: Zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: TTL},
		Ns:      soaMname,
		Mbox:    soaRname,
		Serial:  z.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  TTL,
	}
}

func ns() *mdns.NS {
	return &mdns.NS{
		Hdr: mdns.RR_Header{Name: Zone, Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: TTL},
		Ns:  soaMname,
	}
}
