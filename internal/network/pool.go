package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"banger/internal/errdefs"
)

// PoolTapPrefix starts the name of every pooled TAP. VM ids are hex, so
// no per-VM TAP name (TapPrefix and 12 hex digits) has a 'p' after
// TapPrefix: the two kinds never collide and IsPoolTap tells them apart.
const PoolTapPrefix = TapPrefix + "p"

// poolIDLen is how many random hex digits follow PoolTapPrefix, filling
// the name to 15 bytes, the longest Linux takes.
const poolIDLen = maxIfNameLen - len(PoolTapPrefix)

// fillParallel bounds how many TAPs a pool creates at once.
const fillParallel = 4

// refillTimeout bounds one background refill.
const refillTimeout = 2 * time.Minute

// ErrPoolClosed is returned by a closed Pool; it is also
// errdefs.ErrUnavailable.
var ErrPoolClosed = errdefs.WithKind(errdefs.ErrUnavailable, errors.New("tap pool is closed"))

// IsPoolTap reports whether name is a pooled TAP's name: PoolTapPrefix
// and 11 lowercase hex digits.
func IsPoolTap(name string) bool {
	id, ok := strings.CutPrefix(name, PoolTapPrefix)
	return ok && len(id) == poolIDLen && strings.Trim(id, "0123456789abcdef") == ""
}

// newPoolTapName returns a fresh random pooled TAP name.
func newPoolTapName() (string, error) {
	b := make([]byte, (poolIDLen+1)/2)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random tap name: %w", err)
	}
	return PoolTapPrefix + hex.EncodeToString(b)[:poolIDLen], nil
}

// Pool keeps TAPs ready so a VM start does not wait for one: Fill makes
// them ahead, Acquire hands one out and refills in the background. A
// handed-out TAP belongs to the caller, who records its name with the VM
// and deletes it (Manager.DeleteTap) when the VM stops; it never comes
// back to the pool. Pooled TAPs are attached to the bridge and isolated
// as the Manager is configured. A Pool is safe for concurrent use.
//
// Idle pooled TAPs carry names IsPoolTap recognizes; a sweep of leaked
// TAPs (reconcile) must either run before Fill or spare the names Idle
// lists. After a crash, the old pool's TAPs are leaked TAPs like any
// other.
type Pool struct {
	m      *Manager
	size   int
	logger *slog.Logger

	// bgCtx bounds background refills; Close cancels it.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	mu        sync.Mutex
	idle      []string // ready TAPs, oldest first
	pending   int      // TAPs being created for the pool
	refilling bool     // a background refill runs
	closed    bool
}

// NewPool returns a pool that keeps size TAPs of m ready (none when size
// is 0 or less: Acquire then creates each TAP on demand). It creates
// nothing until Fill or the first Acquire. A nil logger discards logs.
func NewPool(m *Manager, size int, logger *slog.Logger) *Pool {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		m:        m,
		size:     max(size, 0),
		logger:   logger.With("component", "tap-pool"),
		bgCtx:    ctx,
		bgCancel: cancel,
	}
}

// Fill creates the missing TAPs, up to fillParallel at a time, and
// returns when they exist. It returns the joined errors of the TAPs that
// could not be made; the ones that could are in the pool.
func (p *Pool) Fill(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("fill tap pool: %w", ErrPoolClosed)
	}
	need := p.size - len(p.idle) - p.pending
	if need <= 0 {
		p.mu.Unlock()
		return nil
	}
	p.pending += need
	p.mu.Unlock()

	sem := make(chan struct{}, fillParallel)
	errc := make(chan error, need)
	var wg sync.WaitGroup
	for range need {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errc <- p.addOne(ctx)
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fill tap pool: %w", err)
	}
	return nil
}

// addOne creates one TAP for the pool; pending already counts it.
func (p *Pool) addOne(ctx context.Context) error {
	name, err := p.create(ctx)
	p.mu.Lock()
	p.pending--
	closed := p.closed
	if err == nil && !closed {
		p.idle = append(p.idle, name)
	}
	p.mu.Unlock()
	if err == nil && closed {
		// Close ran meanwhile: this TAP is nobody's.
		return p.m.DeleteTap(context.WithoutCancel(ctx), name)
	}
	return err
}

// create makes a TAP under a fresh pooled name. A name that is taken
// already (a chance of one in 2^44) is skipped rather than adopted,
// since the TAP may be a running VM's.
func (p *Pool) create(ctx context.Context) (string, error) {
	for range 3 {
		name, err := newPoolTapName()
		if err != nil {
			return "", err
		}
		if _, err := p.m.nl.LinkByName(name); err == nil {
			continue
		} else if !isLinkGone(err) {
			return "", fmt.Errorf("look up tap %q: %w", name, err)
		}
		if err := p.m.CreateTap(ctx, name); err != nil {
			return "", err
		}
		return name, nil
	}
	return "", errdefs.WithKind(errdefs.ErrConflict, errors.New("create pooled tap: every random name was taken"))
}

// Acquire hands out a TAP: an idle pooled one, checked (still a TAP, on
// the bridge, up) and repaired if not (recreated if someone removed it),
// or, when the pool is empty, a new one made now. It then starts a
// background refill. The caller owns the TAP.
func (p *Pool) Acquire(ctx context.Context) (string, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", fmt.Errorf("acquire tap: %w", ErrPoolClosed)
	}
	var name string
	if len(p.idle) > 0 {
		name = p.idle[0]
		p.idle = p.idle[1:]
	}
	p.mu.Unlock()
	// Refill once the TAP is handed out: the refill's netlink requests
	// would otherwise queue with this call's on the Manager's socket.
	defer func() {
		p.mu.Lock()
		p.startRefillLocked()
		p.mu.Unlock()
	}()

	if name != "" {
		if p.m.tapReady(name) {
			return name, nil
		}
		p.logger.Warn("pooled tap changed while idle; repairing", "tap", name)
		if err := p.m.CreateTap(ctx, name); err != nil {
			// Not worth keeping: it is the caller's to lose.
			if derr := p.m.DeleteTap(context.WithoutCancel(ctx), name); derr != nil {
				err = errors.Join(err, derr)
			}
			return "", fmt.Errorf("acquire tap: %w", err)
		}
		return name, nil
	}
	name, err := p.create(ctx)
	if err != nil {
		return "", fmt.Errorf("acquire tap: %w", err)
	}
	return name, nil
}

// startRefillLocked starts a background refill unless one runs or the
// pool needs nothing. The refill loops until the pool is full, so TAPs
// taken while it runs are replaced too; after a failure it stops, and
// the next Acquire tries again.
func (p *Pool) startRefillLocked() {
	if p.refilling || p.closed || p.size-len(p.idle)-p.pending <= 0 {
		return
	}
	p.refilling = true
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		for {
			ctx, cancel := context.WithTimeout(p.bgCtx, refillTimeout)
			err := p.Fill(ctx)
			cancel()
			p.mu.Lock()
			if err != nil && !p.closed {
				p.logger.Warn("tap pool refill failed", "error", err)
			}
			if err != nil || p.closed || p.size-len(p.idle)-p.pending <= 0 {
				p.refilling = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
		}
	}()
}

// Idle returns the names of the TAPs ready in the pool.
func (p *Pool) Idle() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.idle...)
}

// Close stops refilling, waits for TAPs being made and deletes every
// idle one. Handed-out TAPs are not touched. Later calls return
// ErrPoolClosed from Fill and Acquire; Close itself may be called again.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.bgCancel()
	p.bg.Wait()

	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var errs []error
	for _, name := range idle {
		if err := p.m.DeleteTap(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close tap pool: %w", err)
	}
	return nil
}
