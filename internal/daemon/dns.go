package daemon

import (
	"context"
	"net/netip"
	"time"

	"banger/internal/config"
	"banger/internal/dns"
	"banger/internal/model"
)

// serveDNS runs the .vm DNS server and keeps its records equal to the
// running VMs: rebuilt at start, on every change the VM service reports,
// and on the watch loop's ticks as a safety net.
func (d *Daemon) serveDNS(ctx context.Context) {
	if d.cfg.DNSListen == config.DNSOff {
		return
	}
	srv := dns.New(d.cfg.DNSListen, d.logger.With("component", "dns"))
	if err := srv.Start(ctx); err != nil {
		d.logger.Error("the .vm DNS server is not running", "error", err)
		return
	}
	defer srv.Close()
	d.logger.Info(".vm DNS server listening", "addr", srv.Addr())
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		records, err := d.dnsRecords(ctx)
		if err == nil {
			srv.SetRecords(records)
		} else if ctx.Err() == nil {
			d.logger.Warn("rebuild dns records", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.changed:
		case <-tick.C:
		}
	}
}

// dnsRecords maps each running VM's name to its guest IP.
func (d *Daemon) dnsRecords(ctx context.Context) (map[string]netip.Addr, error) {
	vms, err := d.store.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	records := map[string]netip.Addr{}
	for _, v := range vms {
		if v.State != model.VMStateRunning {
			continue
		}
		if ip, err := netip.ParseAddr(v.Runtime.GuestIP); err == nil {
			records[v.Name] = ip
		}
	}
	return records, nil
}

// notifyChanged wakes the DNS updater without blocking.
func (d *Daemon) notifyChanged() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
}
