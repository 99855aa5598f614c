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
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"banger/internal/config"
	"banger/internal/errdefs"
	"banger/internal/kernel"
	"banger/internal/model"
	"banger/internal/nat"
	"banger/internal/network"
	"banger/internal/paths"
	"banger/internal/rpc"
	"banger/internal/sshkey"
	"banger/internal/store"
	"banger/internal/vm"
	"banger/internal/vmm"
	"banger/internal/vmm/firecracker"
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
	lock       *os.File // held while the daemon lives: see lockInstance
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
	lock, err := lockInstance(ctx, layout)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
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
	driver, accel, note, err := newDriver(ctx, cfg, layout, logger)
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
	d.lock, ok = lock, true
	return d, nil
}

// newDriver builds the VMM driver cfg.VMM asks for and returns it with
// its accelerator and why it was chosen.
func newDriver(ctx context.Context, cfg model.DaemonConfig, layout paths.Layout, logger *slog.Logger) (vmm.Driver, string, string, error) {
	opts := firecracker.Options{
		Binary:      cfg.FirecrackerBin,
		KernelCache: &kernel.Cache{Dir: filepath.Join(layout.StateDir, "kernels")},
		Logger:      logger.With("component", "firecracker"),
	}
	if cfg.JailerEnabled {
		uid, gid := jailerOwner(cfg.HostHomeDir)
		opts.Jailer = firecracker.JailerOptions{Enabled: true, Binary: cfg.JailerBin, ChrootBase: cfg.JailerChrootBase, UID: uid, GID: gid}
	}
	fc := firecracker.New(opts)
	name, why, err := chooseVMM(cfg.VMM, vmmProbe{
		firecracker: func() error {
			_, err := fc.Version(ctx)
			return err
		},
		kvm: vmm.KVMUsable,
	})
	if err != nil {
		return nil, "", "", err
	}
	logger.Info("vmm chosen", "vmm", name, "why", why)
	if name == config.VMMFirecracker {
		accel, _ := fc.Accel()
		return fc, accel, why, nil
	}
	d := qemu.New(qemu.Options{Accel: "auto", Logger: logger.With("component", "qemu")})
	accel, note := d.Accel()
	return d, accel, note, nil
}

// vmmProbe says what the host offers the drivers; tests fake it.
type vmmProbe struct {
	// firecracker checks that the Firecracker binary (and the jailer,
	// when enabled) is there in a supported version.
	firecracker func() error
	// kvm is vmm.KVMUsable.
	kvm func() (bool, string)
}

// chooseVMM picks the driver for the configured vmm ("auto", "qemu" or
// "firecracker") and says why. Firecracker, asked for by name, must be
// installed and have a usable KVM; auto picks it only then, else QEMU.
func chooseVMM(mode string, p vmmProbe) (name, why string, err error) {
	switch mode {
	case config.VMMQEMU:
		return config.VMMQEMU, "vmm = \"qemu\" in the configuration", nil
	case config.VMMFirecracker:
		if err := p.firecracker(); err != nil {
			return "", "", fmt.Errorf("vmm \"firecracker\": %w", err)
		}
		ok, kvmWhy := p.kvm()
		if !ok {
			return "", "", errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("vmm \"firecracker\": kvm is not usable (%s); firecracker needs it: set vmm = \"qemu\" or \"auto\"", kvmWhy))
		}
		return config.VMMFirecracker, "vmm = \"firecracker\" in the configuration; " + kvmWhy, nil
	case config.VMMAuto, "":
		ok, kvmWhy := p.kvm()
		if !ok {
			return config.VMMQEMU, "auto: kvm is not usable for firecracker (" + kvmWhy + ")", nil
		}
		if err := p.firecracker(); err != nil {
			return config.VMMQEMU, fmt.Sprintf("auto: firecracker is not available (%v)", err), nil
		}
		return config.VMMFirecracker, "auto: firecracker is installed and " + kvmWhy, nil
	}
	return "", "", errdefs.Invalid(fmt.Errorf("vmm %q: unknown; want auto, qemu or firecracker", mode))
}

// jailerOwner returns the user and group Firecracker runs as under the
// jailer: the user banger works for, found as the configuration finds
// the owner's home (the sudo user, else the owner of that home).
func jailerOwner(home string) (uid, gid int) {
	if name := os.Getenv("SUDO_USER"); name != "" && name != "root" {
		if u, err := user.Lookup(name); err == nil {
			uid, uerr := strconv.Atoi(u.Uid)
			gid, gerr := strconv.Atoi(u.Gid)
			if uerr == nil && gerr == nil {
				return uid, gid
			}
		}
	}
	var st syscall.Stat_t
	if home != "" && syscall.Stat(home, &st) == nil {
		return int(st.Uid), int(st.Gid)
	}
	return os.Getuid(), os.Getgid()
}

// Run reconciles, serves until ctx ends or daemon.stop is called, then
// shuts down. VMs keep running.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.lock.Close()
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
	d.registerPromote(srv)
	d.registerKernels(srv)
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
