//go:build integration

package dns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"banger/internal/hostexec"
)

// The load BenchmarkDNSAgainstDnsmasq puts on each server.
const (
	benchVMs     = 50                     // records in the zone
	benchClients = 8                      // concurrent UDP clients
	benchRound   = 2 * time.Second        // load on each server in one round
	benchSlices  = 8                      // alternating slices a round is cut into
	benchWarmup  = 300 * time.Millisecond // unmeasured load before the first round
	benchTimeout = 500 * time.Millisecond // a client's wait for one answer
)

// BenchmarkDNSAgainstDnsmasq measures A answers per second for .vm names
// from banger's server and from dnsmasq serving the same records from a
// hosts file, both on loopback in the same run. Each b.N iteration is a
// round: the same load generator runs for benchRound against each
// server, in alternating slices. It reports the median answers per second of each
// and their ratio (target: banger/dnsmasq >= 0.8).
//
//	go test -tags integration -run '^$' -bench DNSAgainstDnsmasq -benchtime 3x ./internal/dns/
func BenchmarkDNSAgainstDnsmasq(b *testing.B) {
	dnsmasqPath := lookDnsmasq(b)

	records := make(map[string]netip.Addr, benchVMs)
	for i := 1; i <= benchVMs; i++ {
		records[fmt.Sprintf("vm-%02d", i)] = netip.AddrFrom4([4]byte{172, 16, 0, byte(i + 1)})
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range records {
			if !yield(name) {
				return
			}
		}
	})
	queries := make([]benchQuery, len(names))
	for i, name := range names {
		queries[i] = newBenchQuery(b, name+"."+Zone, records[name])
	}

	banger := New("127.0.0.1:0", slog.New(slog.DiscardHandler))
	banger.SetRecords(records)
	if err := banger.Start(b.Context()); err != nil {
		b.Fatalf("start banger dns: %v", err)
	}
	b.Cleanup(func() {
		if err := banger.Close(); err != nil {
			b.Errorf("close banger dns: %v", err)
		}
	})
	dnsmasqAddr := startDnsmasq(b, dnsmasqPath, records)

	targets := []struct {
		name string
		addr string
		rate []float64
	}{
		{name: "banger", addr: banger.Addr()},
		{name: "dnsmasq", addr: dnsmasqAddr},
	}
	for _, tg := range targets {
		waitAnswering(b, tg.name, tg.addr, names[0]+"."+Zone)
		if _, _, err := runLoad(tg.addr, queries, benchWarmup); err != nil {
			b.Fatalf("warm up %s: %v", tg.name, err)
		}
	}

	for b.Loop() {
		// A round interleaves short slices of load on each server, so
		// that a change in the machine's other load hits both alike.
		answers := make([]int, len(targets))
		elapsed := make([]time.Duration, len(targets))
		for range benchSlices {
			for i, tg := range targets {
				n, d, err := runLoad(tg.addr, queries, benchRound/benchSlices)
				if err != nil {
					b.Fatalf("load %s at %s: %v", tg.name, tg.addr, err)
				}
				answers[i] += n
				elapsed[i] += d
			}
		}
		for i := range targets {
			targets[i].rate = append(targets[i].rate, float64(answers[i])/elapsed[i].Seconds())
		}
	}

	bangerRate, dnsmasqRate := median(targets[0].rate), median(targets[1].rate)
	for _, tg := range targets {
		b.Logf("%s answers/s per round: %s (median %.0f)", tg.name, formatRates(tg.rate), median(tg.rate))
	}
	b.Logf("ratio banger/dnsmasq: %.2f (target >= 0.8)", bangerRate/dnsmasqRate)
	b.ReportMetric(0, "ns/op") // a round's length is fixed; the rates are the result
	b.ReportMetric(bangerRate, "banger-answers/s")
	b.ReportMetric(dnsmasqRate, "dnsmasq-answers/s")
	b.ReportMetric(bangerRate/dnsmasqRate, "banger/dnsmasq")
}

// lookDnsmasq finds the dnsmasq binary or skips the benchmark. Debian
// installs it in /usr/sbin, which is often not on a user's PATH.
func lookDnsmasq(b *testing.B) string {
	path, err := hostexec.Look("dnsmasq", "dnsmasq-base")
	if err == nil {
		return path
	}
	if _, serr := os.Stat("/usr/sbin/dnsmasq"); serr == nil {
		return "/usr/sbin/dnsmasq"
	}
	b.Skipf("skipping the comparison with dnsmasq: %v (or run scripts/install-deps.sh dnsmasq-base)", err)
	return ""
}

// dnsmasqArgs returns the arguments that make dnsmasq serve hostsFile's
// names on 127.0.0.1:port only, in the foreground, answering every .vm
// name itself (never forwarding: no resolv.conf, no servers) with
// banger's TTL, and reading no other configuration.
func dnsmasqArgs(hostsFile string, port int) []string {
	return []string{
		"--no-daemon", // foreground, no pid file, no change of user
		"--conf-file=/dev/null",
		"--log-facility=-",
		"--no-resolv",
		"--no-poll",
		"--no-hosts",
		"--addn-hosts=" + hostsFile,
		"--local=/" + strings.TrimSuffix(Zone, ".") + "/",
		"--local-ttl=" + strconv.Itoa(TTL),
		"--cache-size=1000",
		"--listen-address=127.0.0.1",
		"--bind-interfaces",
		"--port=" + strconv.Itoa(port),
	}
}

// startDnsmasq runs dnsmasq with records in a hosts file on a free
// loopback port, kills it when the benchmark ends, and returns its
// address.
func startDnsmasq(b *testing.B, path string, records map[string]netip.Addr) string {
	var hosts strings.Builder
	for name, ip := range records {
		fmt.Fprintf(&hosts, "%s %s%s\n", ip, name, "."+strings.TrimSuffix(Zone, "."))
	}
	hostsFile := filepath.Join(b.TempDir(), "vm.hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		b.Fatalf("write dnsmasq hosts file: %v", err)
	}
	port, err := freePort()
	if err != nil {
		b.Fatalf("find a free port for dnsmasq: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, dnsmasqArgs(hostsFile, port)...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	select {
	case <-exited:
		b.Fatalf("dnsmasq exited at start: %s", strings.TrimSpace(stderr.String()))
	case <-time.After(100 * time.Millisecond):
	}
	return addr
}

// freePort returns a loopback port free on both UDP and TCP right now.
func freePort() (int, error) {
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port free on both udp and tcp after 10 tries")
}

// waitAnswering polls addr until it answers name, for up to 5 seconds.
func waitAnswering(b *testing.B, server, addr, name string) {
	deadline := time.Now().Add(5 * time.Second)
	c := &mdns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	req := new(mdns.Msg)
	req.SetQuestion(name, mdns.TypeA)
	for {
		resp, _, err := c.Exchange(req, addr)
		if err == nil && resp.Rcode == mdns.RcodeSuccess && len(resp.Answer) == 1 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s at %s does not answer %s: rcode %v, err %v", server, addr, name, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// benchQuery is one packed A query and the address its answer must hold.
type benchQuery struct {
	msg  []byte
	want [4]byte
}

func newBenchQuery(b *testing.B, name string, ip netip.Addr) benchQuery {
	req := new(mdns.Msg)
	req.SetQuestion(name, mdns.TypeA)
	req.RecursionDesired = false
	msg, err := req.Pack()
	if err != nil {
		b.Fatalf("pack query for %s: %v", name, err)
	}
	return benchQuery{msg: msg, want: ip.As4()}
}

// runLoad sends queries from benchClients concurrent UDP clients, each
// with its own connected socket sending one query and waiting for its
// answer, for d, cycling through queries. It checks every answer and
// returns how many came back and how long it took.
func runLoad(addr string, queries []benchQuery, d time.Duration) (int, time.Duration, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		errs  []error
	)
	start := time.Now()
	end := start.Add(d)
	for c := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := loadClient(addr, queries, c, end)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, fmt.Errorf("client %d: %w", c, err))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return total, elapsed, errors.Join(errs...)
}

// loadClient is one client of runLoad; it starts at query offset and
// stops at end, returning how many right answers it got.
func loadClient(addr string, queries []benchQuery, offset int, end time.Time) (int, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, err
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()

	out := make([]byte, 512)
	in := make([]byte, 1500)
	answers := 0
	for i := offset; ; i++ {
		now := time.Now()
		if now.After(end) {
			return answers, nil
		}
		q := &queries[i%len(queries)]
		id := uint16(i)
		n := copy(out, q.msg)
		binary.BigEndian.PutUint16(out, id)
		if _, err := conn.Write(out[:n]); err != nil {
			return answers, fmt.Errorf("send query: %w", err)
		}
		if err := conn.SetReadDeadline(now.Add(benchTimeout)); err != nil {
			return answers, err
		}
		for {
			m, err := conn.Read(in)
			if err != nil {
				return answers, fmt.Errorf("read answer to query %d: %w", i, err)
			}
			if m >= 2 && binary.BigEndian.Uint16(in) != id {
				continue // a late answer to an earlier query
			}
			if err := checkAnswer(in[:m], id, q.want); err != nil {
				return answers, err
			}
			break
		}
		answers++
	}
}

// checkAnswer verifies that resp answers query id with NOERROR and an A
// record of want as its first answer, without allocating.
func checkAnswer(resp []byte, id uint16, want [4]byte) error {
	if len(resp) < 12 {
		return fmt.Errorf("short answer: %d bytes", len(resp))
	}
	if got := binary.BigEndian.Uint16(resp); got != id {
		return fmt.Errorf("got id %d, want %d", got, id)
	}
	flags := binary.BigEndian.Uint16(resp[2:])
	if flags&(1<<15) == 0 || flags&0xF != mdns.RcodeSuccess {
		return fmt.Errorf("got flags %#04x, want a NOERROR response", flags)
	}
	if qd, an := binary.BigEndian.Uint16(resp[4:]), binary.BigEndian.Uint16(resp[6:]); qd != 1 || an < 1 {
		return fmt.Errorf("got %d questions and %d answers, want 1 and at least 1", qd, an)
	}
	off, err := skipName(resp, 12)
	if err != nil {
		return err
	}
	off += 4 // qtype, qclass
	if off, err = skipName(resp, off); err != nil {
		return err
	}
	if len(resp) < off+10+4 {
		return fmt.Errorf("answer record cut short at %d of %d bytes", off, len(resp))
	}
	rrtype, class, rdlen := binary.BigEndian.Uint16(resp[off:]), binary.BigEndian.Uint16(resp[off+2:]), binary.BigEndian.Uint16(resp[off+8:])
	if rrtype != mdns.TypeA || class != mdns.ClassINET || rdlen != 4 {
		return fmt.Errorf("got record type %d class %d length %d, want an A record", rrtype, class, rdlen)
	}
	if got := [4]byte(resp[off+10 : off+14]); got != want {
		return fmt.Errorf("got A %v, want %v", netip.AddrFrom4(got), netip.AddrFrom4(want))
	}
	return nil
}

// skipName returns the offset just past the domain name at off.
func skipName(msg []byte, off int) (int, error) {
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			return off + 2, nil // a compression pointer ends the name
		default:
			off += 1 + l
		}
	}
	return 0, fmt.Errorf("name runs past the end of a %d-byte message", len(msg))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func formatRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, " / ")
}
