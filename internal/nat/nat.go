// Package nat gives chosen banger guests a way out through the host and
// keeps every other guest in: per-VM masquerading and forwarding rules in
// banger's own nftables tables (one inet and one bridge table per bridge,
// see TableName), plus the host's IPv4 forwarding switch, turned on while
// a NAT guest runs and restored after. It drives the nft tool through
// hostexec and acts on the network namespace the caller runs in. Only the
// daemon imports it.
package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// Config names the bridge whose guests the Manager serves.
type Config struct {
	// Bridge is the bridge the guests' TAPs are ports of, e.g. "br-fc".
	Bridge string
	// Subnet is the bridge's IPv4 subnet, e.g. 172.16.0.0/24; every
	// entry's address must lie in it.
	Subnet netip.Prefix
	// GuestToGuest, when false, also drops traffic the host would route
	// from one guest back to another, so bridge port isolation cannot be
	// bypassed through the host while forwarding is on.
	GuestToGuest bool
	// StateFile remembers the host's ip_forward value from before the
	// first NAT guest, e.g. <state>/nat-ip-forward. It exists exactly
	// while banger holds forwarding on, across daemon restarts.
	StateFile string
}

// Entry is one NAT guest.
type Entry struct {
	VMID string     // the VM's id (letters, digits, - and _; at most 64)
	IP   netip.Addr // the guest's IPv4 address on the bridge
	Tap  string     // the TAP the guest is attached through
	MAC  string     // the guest's MAC; optional, pinned to the TAP when set
}

// runner runs nft with args and stdin (nil for none); tests replace it.
type runner func(ctx context.Context, stdin []byte, args ...string) ([]byte, error)

func runNft(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	return hostexec.RunStdin(ctx, stdin, "nft", args...)
}

// Manager owns banger's nftables tables for one bridge. Every change
// rebuilds the tables from the complete list of entries in one nft
// transaction, so the installed rules always match a list, and the list
// is read back from the rules themselves (their comments carry the
// entries). A Manager is safe for concurrent use; two Managers for the
// same bridge in one namespace are not coordinated.
type Manager struct {
	cfg    Config
	logger *slog.Logger
	run    runner
	fwd    forwarding

	// mu serializes read-modify-write of the tables and the forwarding
	// state.
	mu sync.Mutex
}

// New checks cfg and that the nft tool is installed. It changes nothing
// on the host; call Sync to install the tables. A nil logger discards
// logs.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	if _, err := hostexec.Look("nft", "nftables"); err != nil {
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("nat: %w", err))
	}
	return newManager(cfg, logger, runNft, procIPForward)
}

func newManager(cfg Config, logger *slog.Logger, run runner, procPath string) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "nat", "bridge", cfg.Bridge)
	return &Manager{
		cfg:    cfg,
		logger: logger,
		run:    run,
		fwd:    forwarding{proc: procPath, state: cfg.StateFile, logger: logger},
	}, nil
}

// Add installs NAT for one guest; adding an entry that is installed
// already replaces it (a changed address, TAP or MAC takes effect). An
// address or TAP that another VM's entry holds is an errdefs.ErrConflict
// error; bad fields are errdefs.ErrInvalid.
func (m *Manager) Add(ctx context.Context, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.addLocked(ctx, e); err != nil {
		return fmt.Errorf("add nat for vm %q: %w", e.VMID, err)
	}
	return nil
}

func (m *Manager) addLocked(ctx context.Context, e Entry) error {
	if err := e.validate(m.cfg); err != nil {
		return err
	}
	cur, err := m.readLocked(ctx)
	if err != nil {
		return err
	}
	next := slices.DeleteFunc(cur, func(x Entry) bool { return x.VMID == e.VMID })
	next = append(next, e)
	return m.applyLocked(ctx, next)
}

// Remove takes a guest's NAT away. A VM without NAT is fine (nothing is
// written), so callers can call it on every stop and delete. When the
// last NAT guest goes, forwarding gets its remembered value back.
func (m *Manager) Remove(ctx context.Context, vmID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.removeLocked(ctx, vmID); err != nil {
		return fmt.Errorf("remove nat for vm %q: %w", vmID, err)
	}
	return nil
}

func (m *Manager) removeLocked(ctx context.Context, vmID string) error {
	cur, err := m.readLocked(ctx)
	if err != nil {
		return err
	}
	next := slices.DeleteFunc(slices.Clone(cur), func(x Entry) bool { return x.VMID == vmID })
	if len(next) == len(cur) {
		// Nothing to change in the tables; still settle forwarding, in
		// case an earlier restore failed.
		return m.fwd.settle(len(cur) > 0)
	}
	return m.applyLocked(ctx, next)
}

// Sync makes banger's tables hold exactly entries, the NAT guests that
// run now, and nothing else: it creates the tables and base chains, drops
// the rules of every other VM and settles forwarding. Reconcile calls it
// at daemon start with what the store says.
func (m *Manager) Sync(ctx context.Context, entries []Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.applyLocked(ctx, entries); err != nil {
		return fmt.Errorf("sync nat of bridge %q: %w", m.cfg.Bridge, err)
	}
	return nil
}

// Teardown deletes banger's tables for the bridge and restores
// forwarding. Running guests lose NAT and the guard that keeps the others
// in, so it is for uninstalling and tests, not for daemon shutdown (VMs
// outlive the daemon).
func (m *Manager) Teardown(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if _, err := m.run(ctx, []byte(teardownScript(m.cfg.Bridge)), "-f", "-"); err != nil {
		errs = append(errs, fmt.Errorf("delete tables: %w", err))
	} else {
		m.logger.Info("nat tables deleted")
	}
	if err := m.fwd.settle(false); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down nat of bridge %q: %w", m.cfg.Bridge, err)
	}
	return nil
}

// Entries returns the installed entries, sorted by VM id; none when the
// tables do not exist.
func (m *Manager) Entries(ctx context.Context) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := m.readLocked(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nat of bridge %q: %w", m.cfg.Bridge, err)
	}
	return entries, nil
}

// applyLocked installs exactly entries, then turns forwarding on when
// there are any (after the rules that keep the other guests in exist),
// else restores it.
func (m *Manager) applyLocked(ctx context.Context, entries []Entry) error {
	entries, err := normalize(m.cfg, entries)
	if err != nil {
		return err
	}
	if _, err := m.run(ctx, []byte(buildScript(m.cfg, entries)), "-f", "-"); err != nil {
		return fmt.Errorf("install rules: %w", err)
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.VMID
	}
	m.logger.Debug("nat rules installed", "vms", ids)
	return m.fwd.settle(len(entries) > 0)
}

// readLocked lists the installed entries. A missing table means none.
func (m *Manager) readLocked(ctx context.Context) ([]Entry, error) {
	table := TableName(m.cfg.Bridge)
	out, err := m.run(ctx, nil, "-j", "list", "table", "inet", table)
	if err == nil {
		return parseEntries(out, m.cfg.Bridge)
	}
	// Tell a missing table from a failing nft without reading its
	// message: list the tables.
	list, lerr := m.run(ctx, nil, "-j", "list", "tables", "inet")
	if lerr != nil {
		return nil, fmt.Errorf("list table inet %s: %w", table, err)
	}
	names, perr := tableNames(list)
	if perr != nil {
		return nil, perr
	}
	if slices.Contains(names, [2]string{"inet", table}) {
		return nil, fmt.Errorf("list table inet %s: %w", table, err)
	}
	return nil, nil
}
