//go:build e2e

package e2e

import (
	"time"

	mdns "github.com/miekg/dns"
)

// queryVM asks the env's .vm DNS server (127.0.0.1:42069 in its
// namespace) for name's A record and returns the rcode and addresses.
func (e *env) queryVM(name string) (int, []string) {
	e.t.Helper()
	var rcode int
	var addrs []string
	err := inNetns(e.netns, func() error {
		msg := new(mdns.Msg)
		msg.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		c := &mdns.Client{Timeout: 3 * time.Second}
		var in *mdns.Msg
		var err error
		for i := 0; i < 20; i++ { // the daemon may still be starting its listener
			if in, _, err = c.Exchange(msg, "127.0.0.1:42069"); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		rcode = in.Rcode
		for _, rr := range in.Answer {
			if a, ok := rr.(*mdns.A); ok {
				addrs = append(addrs, a.A.String())
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("query %s: %v", name, err)
	}
	return rcode, addrs
}
