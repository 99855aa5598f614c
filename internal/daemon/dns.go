package daemon

import (
	"context"
	"net"
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
	// Guests ask the same records on the bridge address, the one host
	// address every guest reaches (isolation and NAT rules leave traffic
	// to the host alone). The bridge appears with the first start.
	guestAddr := guestDNSAddr(d.cfg.DNSListen, d.cfg.BridgeIP)
	var guestSrv *dns.Server
	defer func() {
		if guestSrv != nil {
			guestSrv.Close()
		}
	}()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		if guestSrv == nil && guestAddr != "" && d.bridgeUp() {
			s := dns.New(guestAddr, d.logger.With("component", "dns"))
			if err := s.Start(ctx); err != nil {
				d.logger.Warn("the .vm DNS server for guests is not running yet", "addr", guestAddr, "error", err)
			} else {
				guestSrv = s
				d.logger.Info(".vm DNS server listening for guests", "addr", s.Addr())
			}
		}
		records, err := d.dnsRecords(ctx)
		if err == nil {
			srv.SetRecords(records)
			if guestSrv != nil {
				guestSrv.SetRecords(records)
			}
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

// guestDNSAddr is where guests reach the .vm server: the bridge address
// on listen's port; empty when listen covers it already or is unusable.
func guestDNSAddr(listen, bridgeIP string) string {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return ""
	}
	bridge, err := netip.ParseAddr(bridgeIP)
	if err != nil || ap.Addr() == bridge || ap.Addr().IsUnspecified() {
		return ""
	}
	return netip.AddrPortFrom(bridge, ap.Port()).String()
}

// bridgeUp reports whether the bridge address is assigned on this host.
func (d *Daemon) bridgeUp() bool {
	bridge, err := netip.ParseAddr(d.cfg.BridgeIP)
	if err != nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == bridge {
			return true
		}
	}
	return false
}
