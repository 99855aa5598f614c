package vm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/nat"
	"banger/internal/network"
)

// natEntry is the NAT rule set entry of rec on tap.
func natEntry(rec model.VMRecord, tap string) (nat.Entry, error) {
	ip, err := netip.ParseAddr(rec.Runtime.GuestIP)
	if err != nil {
		return nat.Entry{}, fmt.Errorf("vm %q: guest ip %q: %w", rec.Name, rec.Runtime.GuestIP, err)
	}
	return nat.Entry{VMID: rec.ID, IP: ip, Tap: tap, MAC: network.MACFromID(rec.ID)}, nil
}

// addNAT lets rec's guest out through the host's uplinks.
func (s *Service) addNAT(ctx context.Context, rec model.VMRecord, tap string) error {
	if s.nat == nil {
		return errdefs.WithKind(errdefs.ErrUnavailable, errors.New("nat is not available on this host (nft missing?); create the vm without --nat or install nftables"))
	}
	e, err := natEntry(rec, tap)
	if err != nil {
		return err
	}
	return s.nat.Add(ctx, e)
}

// removeNAT drops rec's NAT rules; a VM without any is left alone.
func (s *Service) removeNAT(ctx context.Context, vmID string) error {
	if s.nat == nil {
		return nil
	}
	return s.nat.Remove(ctx, vmID)
}

// syncNAT makes the NAT rules those of the running NAT VMs in recs, each
// on the TAP its handles name.
func (s *Service) syncNAT(ctx context.Context, recs []model.VMRecord) error {
	if s.nat == nil {
		return nil
	}
	var entries []nat.Entry
	for _, rec := range recs {
		if rec.State != model.VMStateRunning || !rec.Spec.NATEnabled {
			continue
		}
		h := readHandles(rec)
		if h.Tap == "" {
			continue
		}
		e, err := natEntry(rec, h.Tap)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	return s.nat.Sync(ctx, entries)
}
