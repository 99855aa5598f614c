// Package daemon is bangerd: it wires the store, network, image catalog,
// VMM driver and VM service together, reconciles them with the host at
// start, serves JSON-RPC on the unix socket and shuts down in order.
// Running VMs outlive the daemon. Only cmd/bangerd imports it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"banger/internal/config"
	"banger/internal/model"
	"banger/internal/nat"
	"banger/internal/network"
	"banger/internal/paths"
	"banger/internal/rpc"
	"banger/internal/sshkey"
	"banger/internal/store"
	"banger/internal/vm"
	"banger/internal/vmm"
	"banger/internal/vmm/qemu"
)

// Version is the daemon's version, set at build time.
var Version = "dev"

// Daemon is a running bangerd.
type Daemon struct {
	layout    paths.Layout
	cfg       model.DaemonConfig
	logger    *slog.Logger
	store     *store.Store
	images    *images
	vms       *vm.Service
	sampler   *vm.Sampler
	driver    vmm.Driver
	accel     string
	accelNote string
	started   time.Time

	stopOnce sync.Once
	stop     chan struct{}
	changed  chan struct{} // VM records changed: rebuild DNS

	agentLocks agentLocks
	httpProbes httpProbes
	pool       *network.Pool // nil without tap_pool_size
	netm       *network.Manager
}

// New loads the configuration and opens every subsystem.
func New(ctx context.Context, layout paths.Layout, logger *slog.Logger) (*Daemon, error) {
	cfg, err := config.Load(layout)
	if err != nil {
		return nil, err
	}
	if err := layout.Ensure(); err != nil {
		return nil, err
	}
	if err := vm.ValidateFileSyncHome(cfg.FileSync, cfg.HostHomeDir); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bangerd must run as root: it creates bridges, TAP devices and VM processes")
	}
	if err := network.Available(); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, layout.DBFile())
	if err != nil {
		return nil, err
	}
	key, err := sshkey.Ensure(cfg.SSHKeyPath)
	if err != nil {
		st.Close()
		return nil, err
	}
	netcfg := network.Config{BridgeName: cfg.BridgeName, BridgeIP: cfg.BridgeIP, CIDR: cfg.CIDR, GuestToGuest: cfg.GuestToGuest}
	netm, err := network.New(netcfg, logger.With("component", "network"))
	if err != nil {
		st.Close()
		return nil, err
	}
	subnet, err := netcfg.Prefix()
	if err != nil {
		st.Close()
		return nil, err
	}
	var natm vm.NAT
	if m, err := nat.New(nat.Config{Bridge: cfg.BridgeName, Subnet: subnet, GuestToGuest: cfg.GuestToGuest, StateFile: filepath.Join(layout.StateDir, "nat-ip-forward")}, logger.With("component", "nat")); err != nil {
		logger.Warn("per-vm nat is unavailable: vms with --nat will not start", "error", err)
	} else {
		natm = m
	}
	var pool *network.Pool
	if cfg.TapPoolSize > 0 {
		pool = network.NewPool(netm, cfg.TapPoolSize, logger.With("component", "tap-pool"))
	}
	driver, accel, note, err := newDriver(cfg, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	imgs := &images{layout: layout, store: st, key: key, logger: logger.With("component", "images"), packageCache: cfg.PackageCacheDir}
	d := &Daemon{
		layout:    layout,
		cfg:       cfg,
		logger:    logger,
		store:     st,
		images:    imgs,
		driver:    driver,
		accel:     accel,
		accelNote: note,
		started:   time.Now().UTC(),
		stop:      make(chan struct{}),
		changed:   make(chan struct{}, 1),
	}
	d.vms = vm.New(vm.Deps{
		Config:     cfg,
		Layout:     layout,
		Store:      st,
		Network:    netm,
		NAT:        natm,
		Images:     imgs,
		Driver:     driver,
		Key:        key,
		KnownHosts: &sshkey.KnownHosts{Path: layout.KnownHosts()},
		Logger:     logger.With("component", "vm"),
		Changed:    d.notifyChanged,
	})
	if pool != nil {
		// A nil *Pool in the interface would not be nil.
		d.pool, d.netm = pool, netm
		d.vms.SetTapPool(pool)
	}
	d.sampler = d.vms.NewSampler()
	return d, nil
}

func newDriver(cfg model.DaemonConfig, logger *slog.Logger) (vmm.Driver, string, string, error) {
	switch cfg.VMM {
	case config.VMMFirecracker:
		return nil, "", "", errors.New("vmm \"firecracker\": the firecracker driver is not available in this build yet; use vmm = \"qemu\" or \"auto\"")
	case config.VMMAuto, config.VMMQEMU, "":
		d := qemu.New(qemu.Options{Accel: "auto", Logger: logger.With("component", "qemu")})
		accel, note := d.Accel()
		return d, accel, note, nil
	}
	return nil, "", "", fmt.Errorf("vmm %q: unknown", cfg.VMM)
}

// Run reconciles, serves until ctx ends or daemon.stop is called, then
// shuts down. VMs keep running.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.store.Close()
	start := time.Now()
	if err := d.vms.Reconcile(ctx); err != nil {
		d.logger.Warn("reconcile finished with errors", "error", err)
	}
	d.logger.Info("reconciled", "duration_ms", float64(time.Since(start).Microseconds())/1000)
	ln, err := rpc.Listen(d.layout.Socket())
	if err != nil {
		return err
	}
	defer os.Remove(d.layout.Socket())
	if err := os.WriteFile(d.layout.PIDFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		ln.Close()
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(d.layout.PIDFile())

	srv := rpc.NewServer(d.logger)
	d.register(srv)
	d.registerAgent(srv)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	go d.watch(ctx)
	go d.serveDNS(ctx)
	go d.sampler.Run(ctx, d.cfg.StatsPollInterval)
	go d.vms.NewSweeper().Run(ctx)
	if d.pool != nil {
		// After reconcile, which sweeps TAPs no VM owns (an earlier
		// daemon's pool among them).
		go func() {
			err := d.netm.EnsureBridge(ctx) // pooled TAPs are bridge ports
			if err == nil {
				err = d.pool.Fill(ctx)
			}
			if err != nil && ctx.Err() == nil {
				d.logger.Warn("fill the tap pool", "error", err)
			}
		}()
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := d.pool.Close(ctx); err != nil {
				d.logger.Warn("remove the tap pool", "error", err)
			}
		}()
	}
	d.logger.Info("bangerd ready", "socket", d.layout.Socket(), "vmm", d.driver.Name(), "accel", d.accel, "version", Version)
	err = srv.Serve(ctx, ln)
	d.logger.Info("bangerd stopped")
	return err
}

// watch notices VMs whose guest powered off on its own.
func (d *Daemon) watch(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := d.vms.List(ctx); err != nil && ctx.Err() == nil {
				d.logger.Warn("refresh vm states", "error", err)
			}
		}
	}
}

// Stop asks Run to return.
func (d *Daemon) Stop() {
	d.stopOnce.Do(func() { close(d.stop) })
}
