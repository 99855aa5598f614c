package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
)

// netlinkTimeout bounds each netlink request so a wedged kernel call
// cannot hang the daemon.
const netlinkTimeout = 10 * time.Second

// dumpRetries is how often a link or address dump interrupted by a
// concurrent change is retried.
const dumpRetries = 5

// Manager creates and removes banger's bridge and TAPs. It acts on the
// network namespace of the thread that called New: its netlink socket is
// opened there, and it keeps a handle on that namespace, so work that
// must run on a thread of the namespace (creating a TAP) moves to one
// when called from elsewhere, such as a pool's background goroutine in
// a test that entered a namespace. A Manager is safe for concurrent use.
type Manager struct {
	cfg    Config
	prefix netip.Prefix
	logger *slog.Logger
	nl     *netlink.Handle
	ns     netnsRef // the namespace of New's thread

	// afterTapAdd, when set by a test, runs right after CreateTap made a
	// new TAP, to inject failures into the steps that follow.
	afterTapAdd func(name string)
}

// New validates cfg and opens a netlink socket in the caller's network
// namespace. A nil logger discards logs. Close releases the socket.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	prefix, err := cfg.Prefix()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The socket and the namespace handle must come from one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := threadNetns()
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		ns.close()
		return nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	return &Manager{
		cfg:    cfg,
		prefix: prefix,
		logger: logger.With("component", "network", "bridge", cfg.BridgeName),
		nl:     h,
		ns:     ns,
	}, nil
}

// Config returns the configuration the Manager was made with.
func (m *Manager) Config() Config { return m.cfg }

// Close releases the netlink socket and the namespace handle. Host
// objects stay as they are.
func (m *Manager) Close() error {
	m.nl.Close()
	m.ns.close()
	return nil
}

// EnsureBridge makes the bridge exist with address BridgeIP/CIDR and be
// up. It is idempotent. A link of that name that is not a bridge is an
// errdefs.ErrConflict error. A bridge this call created is removed again
// if a later step fails.
func (m *Manager) EnsureBridge(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ensure bridge %q: %w", m.cfg.BridgeName, err)
	}
	if err := m.ensureBridge(); err != nil {
		return fmt.Errorf("ensure bridge %q: %w", m.cfg.BridgeName, err)
	}
	return nil
}

func (m *Manager) ensureBridge() (err error) {
	br, created, err := m.bridgeLink(true)
	if err != nil {
		return err
	}
	if created {
		defer func() {
			if err == nil {
				return
			}
			if delErr := m.nl.LinkDel(br); delErr != nil {
				err = errors.Join(err, fmt.Errorf("undo create: %w", delErr))
			}
		}()
	}
	if err := m.ensureBridgeAddr(br); err != nil {
		return err
	}
	if err := m.nl.LinkSetUp(br); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// DeleteBridge removes the bridge; a missing bridge is fine. A link of
// that name that is not a bridge is left alone and reported as an
// errdefs.ErrConflict error.
func (m *Manager) DeleteBridge(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete bridge %q: %w", m.cfg.BridgeName, err)
	}
	br, _, err := m.bridgeLink(false)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err == nil {
		err = m.nl.LinkDel(br)
		if isLinkGone(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("delete bridge %q: %w", m.cfg.BridgeName, err)
	}
	m.logger.Info("bridge deleted")
	return nil
}

// bridgeLink looks the bridge up and, when create is set, creates it if
// missing. created reports whether this call made it.
func (m *Manager) bridgeLink(create bool) (link netlink.Link, created bool, err error) {
	name := m.cfg.BridgeName
	link, err = m.nl.LinkByName(name)
	if isLinkGone(err) && create {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		err = m.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		if err == nil {
			created = true
			m.logger.Info("bridge created")
		} else if !errors.Is(err, unix.EEXIST) {
			return nil, false, fmt.Errorf("create: %w", err)
		}
		// Created here or, on EEXIST, concurrently: read it back.
		link, err = m.nl.LinkByName(name)
	}
	if isLinkGone(err) {
		return nil, false, errdefs.NotFound(errors.New("bridge does not exist"))
	}
	if err != nil {
		return nil, false, fmt.Errorf("look up: %w", err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, false, errdefs.WithKind(errdefs.ErrConflict,
			fmt.Errorf("link exists but is a %s, not a bridge: remove it or choose another bridge_name", link.Type()))
	}
	return link, created, nil
}

// ensureBridgeAddr adds BridgeIP/CIDR to the bridge unless present. Other
// IPv4 addresses are left in place and logged, since banger cannot tell
// whether someone else relies on them.
func (m *Manager) ensureBridgeAddr(br netlink.Link) error {
	addrs, err := m.addrList(br)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	want := m.prefix
	found := false
	for _, a := range addrs {
		got, ok := addrPrefix(a)
		if ok && got == want {
			found = true
			continue
		}
		m.logger.Warn("bridge has an extra address", "address", a.IPNet.String(), "want", want.String())
	}
	if found {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(want.Addr().AsSlice()),
		Mask: net.CIDRMask(want.Bits(), 32),
	}}
	if err := m.nl.AddrAdd(br, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s: %w", want, err)
	}
	m.logger.Info("bridge address added", "address", want.String())
	return nil
}

func (m *Manager) addrList(link netlink.Link) ([]netlink.Addr, error) {
	for i := 0; ; i++ {
		addrs, err := m.nl.AddrList(link, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		return addrs, err
	}
}

func (m *Manager) linkList() ([]netlink.Link, error) {
	for i := 0; ; i++ {
		links, err := m.nl.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		return links, err
	}
}

func addrPrefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IPNet.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := a.IPNet.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// isLinkGone reports whether err says the link does not exist.
func isLinkGone(err error) bool {
	if err == nil {
		return false
	}
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
