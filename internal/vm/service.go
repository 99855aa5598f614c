// Package vm owns the lifecycle of banger's VMs: create, start, stop,
// kill, delete, and the reconcile that makes the store agree with the
// host after a daemon restart. Each lifecycle action is a pipeline of
// named steps with undos; operations on one VM serialise on a per-VM
// lock. Only the daemon imports it.
package vm

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/nat"
	"banger/internal/paths"
	"banger/internal/sshkey"
	"banger/internal/store"
	"banger/internal/vmm"
)

// Network is the host networking a VM needs.
type Network interface {
	EnsureBridge(ctx context.Context) error
	CreateTap(ctx context.Context, name string) error
	DeleteTap(ctx context.Context, name string) error
	ListTaps(ctx context.Context) ([]string, error)
}

// NAT applies per-VM NAT rules (package nat). Remove of a VM without
// rules is a no-op.
type NAT interface {
	Add(ctx context.Context, e nat.Entry) error
	Remove(ctx context.Context, vmID string) error
	Sync(ctx context.Context, entries []nat.Entry) error
}

// TapPool hands out TAPs made ahead of time (package network).
type TapPool interface {
	Acquire(ctx context.Context) (string, error)
}

// Images resolves an image name, building the default image on demand.
type Images interface {
	Resolve(ctx context.Context, name string, report func(step, msg string)) (model.Image, error)
}

// Service runs VM lifecycles.
type Service struct {
	cfg        model.DaemonConfig
	layout     paths.Layout
	store      *store.Store
	network    Network
	nat        NAT
	taps       TapPool
	images     Images
	driver     vmm.Driver
	key        sshkey.Key
	knownHosts *sshkey.KnownHosts
	logger     *slog.Logger
	changed    func()

	// SSHTimeout bounds the wait for a booting guest's SSH.
	SSHTimeout time.Duration
	// FirstBootTimeout bounds it at a first boot that installs systemd
	// and sshd (see firstboot.go).
	FirstBootTimeout time.Duration
	// StopTimeout bounds the wait for a guest to power off before it is killed.
	StopTimeout time.Duration

	locks locks
	boots boots

	// disks makes and tears down VM disks (the storage package).
	disks diskOps
	// guestReady waits until a started guest answers; nil waits for SSH.
	// Tests replace it.
	guestReady func(ctx context.Context, rec model.VMRecord, h handles) error
}

// Deps are the services a Service uses.
type Deps struct {
	Config  model.DaemonConfig
	Layout  paths.Layout
	Store   *store.Store
	Network Network
	// NAT applies --nat; nil refuses NAT VMs at start.
	NAT        NAT
	Images     Images
	Driver     vmm.Driver
	Key        sshkey.Key
	KnownHosts *sshkey.KnownHosts
	Logger     *slog.Logger
	// Changed, if set, is called after any VM's state or record changed.
	Changed func()
}

// SetTapPool makes starts take their TAPs from pool. Call it before the
// Service is used.
func (s *Service) SetTapPool(pool TapPool) { s.taps = pool }

// New returns a Service.
func New(d Deps) *Service {
	return &Service{
		cfg:              d.Config,
		layout:           d.Layout,
		store:            d.Store,
		network:          d.Network,
		nat:              d.NAT,
		images:           d.Images,
		driver:           d.Driver,
		key:              d.Key,
		knownHosts:       d.KnownHosts,
		logger:           d.Logger,
		changed:          d.Changed,
		SSHTimeout:       4 * time.Minute,
		FirstBootTimeout: 20 * time.Minute,
		StopTimeout:      30 * time.Second,
		disks:            hostDisks,
	}
}

// Get returns a VM by id, id prefix or name, with its state refreshed
// against the host.
func (s *Service) Get(ctx context.Context, ref string) (model.VMRecord, error) {
	rec, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return model.VMRecord{}, err
	}
	return s.refresh(ctx, rec), nil
}

// List returns every VM with states refreshed against the host.
func (s *Service) List(ctx context.Context) ([]model.VMRecord, error) {
	recs, err := s.store.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i] = s.refresh(ctx, recs[i])
	}
	return recs, nil
}

// refresh notices a running VM whose VMM has exited (the guest powered
// itself off, or the process died) and settles it as stopped.
func (s *Service) refresh(ctx context.Context, rec model.VMRecord) model.VMRecord {
	if rec.State != model.VMStateRunning {
		return rec
	}
	h := readHandles(rec)
	if vmm.Alive(h.VMM) {
		return rec
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	fresh, err := s.store.GetVM(ctx, rec.ID)
	if err != nil || fresh.State != model.VMStateRunning {
		if err != nil {
			return rec
		}
		return fresh
	}
	if err := s.settleStoppedLocked(ctx, &fresh, ""); err != nil {
		s.logger.Warn("settle exited vm", "vm", fresh.Name, "error", err)
	}
	return fresh
}

func (s *Service) vmDir(id string) string { return s.layout.VMDir(id) }

func knownHostNames(rec model.VMRecord) []string {
	names := []string{rec.Runtime.GuestIP}
	if rec.Runtime.DNSName != "" {
		names = append(names, rec.Runtime.DNSName)
	}
	return names
}

// SSHInfo returns how to reach a running VM and marks it touched.
func (s *Service) SSHInfo(ctx context.Context, ref string) (model.VMRecord, error) {
	rec, err := s.Get(ctx, ref)
	if err != nil {
		return rec, err
	}
	if rec.State != model.VMStateRunning {
		return rec, errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("vm %q is %s, not running; start it with banger vm start %s", rec.Name, rec.State, rec.Name))
	}
	if fresh, err := s.touch(ctx, rec.ID); err == nil {
		rec = fresh
	}
	return rec, nil
}

// touch moves the VM's LastTouchedAt to now, under its lock.
func (s *Service) touch(ctx context.Context, id string) (model.VMRecord, error) {
	unlock := s.locks.lock(id)
	defer unlock()
	rec, err := s.store.GetVM(ctx, id)
	if err != nil {
		return rec, err
	}
	rec.LastTouchedAt = model.Now()
	return rec, s.store.UpdateVM(ctx, rec)
}

// ConsoleLog returns the path of a VM's serial console log.
func (s *Service) ConsoleLog(ctx context.Context, ref string) (string, error) {
	rec, err := s.store.GetVM(ctx, ref)
	if err != nil {
		return "", err
	}
	return consolePath(rec), nil
}
