//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"banger/internal/api"
)

// TestAgent checks the guest agent end to end: health and ping answer,
// a web server started in the guest shows up in vm ports with its
// process name and an http link that answers from the host, and a VM
// whose agent is gone gets a plain error.
func TestAgent(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	e.ok("vm", "run", "-d", "--name", "agt")
	ip := e.vm("agt").Runtime.GuestIP

	var h api.VMHealth
	decode(t, e.ok("vm", "health", "--json", "agt").stdout, &h)
	if h.Health.Hostname != "agt" || h.Health.Protocol != 1 || h.Health.UptimeSeconds <= 0 {
		t.Errorf("vm health: got hostname %q protocol %d uptime %v, want agt, 1, > 0", h.Health.Hostname, h.Health.Protocol, h.Health.UptimeSeconds)
	}
	var pings []api.VMPing
	decode(t, e.ok("vm", "ping", "-c", "3", "--json", "agt").stdout, &pings)
	if len(pings) != 3 || pings[0].RTTMicros <= 0 {
		t.Errorf("vm ping -c 3: got %+v, want 3 round trips with a time", pings)
	}

	e.ok("vm", "exec", "agt", "--", "sh", "-c",
		"cd /tmp && echo banger-page > index.html && setsid nohup python3 -m http.server 8080 --bind 0.0.0.0 >/dev/null 2>&1 </dev/null &")
	var web api.Port
	deadline := time.Now().Add(30 * time.Second)
	for web.Port == 0 && time.Now().Before(deadline) {
		var p api.VMPorts
		decode(t, e.ok("vm", "ports", "--json", "agt").stdout, &p)
		for _, l := range p.Ports {
			if l.Proto == "tcp" && l.Port == 8080 {
				web = l
			}
		}
		if web.Port == 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if web.Port == 0 {
		t.Fatalf("vm ports: no tcp listener on 8080 within 30s")
	}
	if web.Process != "python3" || web.PID <= 0 || web.Endpoint != "agt.vm:8080" || web.URL != "http://agt.vm:8080/" {
		t.Errorf("web server listener: got %+v, want process python3 with a pid, endpoint agt.vm:8080, url http://agt.vm:8080/", web)
	}
	table := e.ok("vm", "ports", "agt").stdout
	for _, want := range []string{"PROCESS", "python3", "http://agt.vm:8080/", "sshd", "agt.vm:22"} {
		if !strings.Contains(table, want) {
			t.Errorf("vm ports table: no %q in\n%s", want, table)
		}
	}
	var ssh []string
	var p api.VMPorts
	decode(t, e.ok("vm", "ports", "--json", "agt").stdout, &p)
	for _, l := range p.Ports {
		if l.Port == 22 {
			ssh = append(ssh, fmt.Sprintf("%s %s %s url=%q", l.Proto, l.Address, l.Process, l.URL))
		}
	}
	sort.Strings(ssh)
	if len(ssh) == 0 || !strings.Contains(ssh[0], "sshd") || strings.Contains(strings.Join(ssh, " "), "http://") {
		t.Errorf("sshd listeners: got %q, want sshd on port 22 without an http link", ssh)
	}

	// The link answers from the host (the env's namespace), by the
	// guest's address. The dial happens on the namespace's thread (an
	// http.Transport would dial from another goroutine).
	var reply string
	err := inNetns(e.netns, func() error {
		c, err := net.DialTimeout("tcp", ip+":8080", 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /index.html HTTP/1.0\r\nHost: agt.vm\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		reply = string(b)
		return err
	})
	if err != nil || !strings.HasPrefix(reply, "HTTP/1.0 200") || !strings.HasSuffix(reply, "\r\n\r\nbanger-page\n") {
		t.Errorf("GET the guest's web server from the host: got %q, %v, want a 200 with banger-page", reply, err)
	}

	// Without its agent, the VM says so plainly.
	e.ok("vm", "exec", "agt", "--", "systemctl", "stop", "banger-agent")
	e.fails("the banger agent did not answer", "vm", "ports", "agt")
	e.ok("vm", "exec", "agt", "--", "systemctl", "start", "banger-agent")
	e.ok("vm", "ping", "agt")

	e.ok("vm", "stop", "agt")
	e.fails("not running", "vm", "ports", "agt")
	e.ok("vm", "delete", "agt")
	e.assertClean("after delete")
}

// BenchmarkPorts times banger vm ports (CLI, RPC, agent round trip over
// the virtio-serial port, HTTP probes of the listeners from the host)
// on a booted guest running sshd and a web server. Target: median under
// 50 ms.
//
//	go test -tags e2e -run '^$' -bench Ports -benchtime 30x ./test/e2e/
func BenchmarkPorts(b *testing.B) {
	e := newEnv(b)
	e.ensureImage()
	e.ok("vm", "run", "-d", "--name", "pb")
	e.ok("vm", "exec", "pb", "--", "sh", "-c",
		"cd /tmp && setsid nohup python3 -m http.server 8080 --bind 0.0.0.0 >/dev/null 2>&1 </dev/null &")
	e.ok("vm", "ports", "pb") // warm: the agent answered once
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		e.ok("vm", "ports", "--json", "pb")
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	m := median(times)
	b.ReportMetric(float64(m.Microseconds())/1000, "median-ms")
	b.Logf("vm ports: median %v over %d calls (%v)", m, len(times), times)
	e.ok("vm", "delete", "pb")
}

func decode(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}
