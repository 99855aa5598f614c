package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"banger/internal/errdefs"
)

// tunDevice is the clone device TAPs are made through.
const tunDevice = "/dev/net/tun"

// tapFlags: one queue, no packet information header, virtio-net header
// on (QEMU and Firecracker both want it and may set it again when they
// attach). TUN_EXCL makes creation fail instead of attaching when a TAP
// of the name appears concurrently; it is not stored on the device.
const tapFlags = netlink.TUNTAP_TUN_EXCL | netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR

// CreateTap makes a persistent TAP owned by root, attaches it to the
// bridge and sets it up. It is idempotent: an existing TAP of that name
// is attached and set up. A link of that name that is not a TAP is an
// errdefs.ErrConflict error; a missing bridge an errdefs.ErrNotFound
// error. A TAP this call created is removed again if a later step fails.
func (m *Manager) CreateTap(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create tap %q: %w", name, err)
	}
	if err := ValidIfName(name); err != nil {
		return errdefs.Invalid(fmt.Errorf("create tap %q: %w", name, err))
	}
	// The TAP is made by an ioctl in the thread's namespace; keep the
	// whole operation, including any undo, on one thread of the
	// Manager's namespace.
	if err := m.inNetns(func() error { return m.createTap(name) }); err != nil {
		return fmt.Errorf("create tap %q: %w", name, err)
	}
	return nil
}

func (m *Manager) createTap(name string) (err error) {
	br, _, err := m.bridgeLink(false)
	if err != nil {
		return fmt.Errorf("bridge %q: %w", m.cfg.BridgeName, err)
	}
	link, err := m.nl.LinkByName(name)
	created := false
	if isLinkGone(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		addErr := m.nl.LinkAdd(&netlink.Tuntap{
			LinkAttrs: attrs,
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     tapFlags,
			Owner:     0,
			Group:     0,
		})
		link, err = m.nl.LinkByName(name)
		switch {
		case addErr != nil && err != nil:
			return fmt.Errorf("add link: %w", addErr)
		case addErr == nil && err != nil:
			// The TAP went into this thread's namespace, which is not
			// the Manager's: remove it there (the package-level netlink
			// functions use this thread's namespace) and refuse.
			err = fmt.Errorf("new tap not visible to the manager (called from another network namespace than New?): %w", err)
			if l, lerr := netlink.LinkByName(name); lerr == nil {
				if derr := netlink.LinkDel(l); derr != nil {
					err = errors.Join(err, fmt.Errorf("undo create: %w", derr))
				}
			}
			return err
		}
		// addErr != nil with the link present: a concurrent caller made
		// it, so it is not ours to undo.
		created = addErr == nil
	}
	if err != nil {
		return fmt.Errorf("look up: %w", err)
	}
	if created {
		m.logger.Info("tap created", "tap", name)
		defer func() {
			if err == nil {
				return
			}
			if delErr := m.nl.LinkDel(link); delErr != nil && !isLinkGone(delErr) {
				err = errors.Join(err, fmt.Errorf("undo create: %w", delErr))
			}
		}()
		if m.afterTapAdd != nil {
			m.afterTapAdd(name)
		}
	}
	if err := checkTap(link); err != nil {
		return err
	}
	return m.attachPort(link, br)
}

// attachPort makes link a port of the bridge br, isolated unless
// GuestToGuest, and up. Isolation is set before the port goes up, so no
// frame crosses between guests in the meantime, and on every call, so a
// changed guest_to_guest applies to existing TAPs that are attached
// again.
func (m *Manager) attachPort(link, br netlink.Link) error {
	if link.Attrs().MasterIndex != br.Attrs().Index {
		if err := m.nl.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attach to bridge %q: %w", m.cfg.BridgeName, err)
		}
	}
	if err := m.nl.LinkSetIsolated(link, !m.cfg.GuestToGuest); err != nil {
		return fmt.Errorf("set port isolation %v: %w", !m.cfg.GuestToGuest, err)
	}
	if err := m.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// tapReady reports, in two netlink lookups, whether name is a TAP that
// is up and a port of the bridge. Isolation is not checked: it was set
// when the TAP was made and the configuration has not changed since.
func (m *Manager) tapReady(name string) bool {
	link, err := m.nl.LinkByName(name)
	if err != nil || checkTap(link) != nil || link.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	br, err := m.nl.LinkByName(m.cfg.BridgeName)
	return err == nil && link.Attrs().MasterIndex == br.Attrs().Index
}

// DeleteTap removes a TAP; a missing one is fine. A link of that name
// that is not a TAP is left alone and reported as errdefs.ErrConflict.
func (m *Manager) DeleteTap(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete tap %q: %w", name, err)
	}
	if err := ValidIfName(name); err != nil {
		return errdefs.Invalid(fmt.Errorf("delete tap %q: %w", name, err))
	}
	link, err := m.nl.LinkByName(name)
	if isLinkGone(err) {
		return nil
	}
	if err == nil {
		err = checkTap(link)
	}
	if err == nil {
		err = m.nl.LinkDel(link)
		if isLinkGone(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("delete tap %q: %w", name, err)
	}
	m.logger.Info("tap deleted", "tap", name)
	return nil
}

// ListTaps returns the sorted names of this manager's TAPs: those whose
// name starts with TapPrefix and that are on its bridge or on none (a
// TAP made but not attached yet). Other kinds of links with that prefix
// (TUN devices included) and TAPs on another bridge (another banger
// daemon's, in the same namespace with its own bridge) are not listed,
// so a sweep of orphans never removes what this daemon did not make.
func (m *Manager) ListTaps(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list taps: %w", err)
	}
	links, err := m.linkList()
	if err != nil {
		return nil, fmt.Errorf("list taps: %w", err)
	}
	bridge := -1 // no bridge yet: only unattached TAPs are ours
	for _, l := range links {
		if l.Attrs().Name == m.cfg.BridgeName {
			bridge = l.Attrs().Index
		}
	}
	var names []string
	for _, l := range links {
		master := l.Attrs().MasterIndex
		if checkTap(l) == nil && strings.HasPrefix(l.Attrs().Name, TapPrefix) && (master == 0 || master == bridge) {
			names = append(names, l.Attrs().Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// checkTap reports an errdefs.ErrConflict error unless link is a TAP.
func checkTap(link netlink.Link) error {
	tt, ok := link.(*netlink.Tuntap)
	if !ok {
		return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("link exists but is a %s, not a tap", link.Type()))
	}
	if tt.Mode != netlink.TUNTAP_MODE_TAP {
		return errdefs.WithKind(errdefs.ErrConflict, fmt.Errorf("link exists but is a tun (layer 3) device, not a tap"))
	}
	return nil
}

// Available checks that TAPs can be made here: /dev/net/tun exists and
// opens read-write. The error, errdefs.ErrUnavailable, says what to fix.
func Available() error {
	f, err := os.OpenFile(tunDevice, os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return nil
	}
	var hint string
	switch {
	case errors.Is(err, os.ErrNotExist):
		hint = "load the tun kernel module (modprobe tun) or create the device node (mknod /dev/net/tun c 10 200)"
	case errors.Is(err, os.ErrPermission):
		hint = "run bangerd as root or with CAP_NET_ADMIN"
	default:
		hint = "check that the tun kernel module is loaded"
	}
	return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("open %s: %w: %s", tunDevice, err, hint))
}
