package vm

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// Sweeper stops running VMs nobody has touched for a while. A VM is
// touched when it starts, whenever its SSH details are asked for (vm
// ssh, vm exec, vm run, workspace prepare and export) and at each sweep
// that finds an SSH connection open to it from the daemon's network
// namespace (a long vm ssh session, ssh NAME.vm, an editor's remote
// SSH).
type Sweeper struct {
	svc *Service
	// StaleAfter is how long a running VM may stay untouched; zero or
	// less turns the sweep off.
	StaleAfter time.Duration
	// Interval is how often Run sweeps.
	Interval time.Duration
	// now is the clock; tests replace it.
	now func() time.Time
	// sessions counts the open SSH connections to a guest address
	// (sshSessions); tests replace it.
	sessions func(ip string) int
}

// NewSweeper returns a Sweeper of s's VMs that stops those untouched for
// the configured auto_stop_stale_after, every
// model.DefaultStaleSweepInterval.
func (s *Service) NewSweeper() *Sweeper {
	return &Sweeper{
		svc:        s,
		StaleAfter: s.cfg.AutoStopStaleAfter,
		Interval:   model.DefaultStaleSweepInterval,
		now:        time.Now,
		sessions:   sshSessions,
	}
}

// Run sweeps every Interval until ctx ends. It returns at once when the
// sweep is off.
func (w *Sweeper) Run(ctx context.Context) {
	if w.StaleAfter <= 0 {
		return
	}
	interval := w.Interval
	if interval <= 0 {
		interval = model.DefaultStaleSweepInterval
	}
	w.svc.logger.Info("idle auto-stop on", "stale_after", w.StaleAfter.String(), "every", interval.String())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Sweep(ctx)
		}
	}
}

// Sweep stops, gracefully and concurrently, every running VM untouched
// for longer than StaleAfter, and returns the names of those it stopped.
func (w *Sweeper) Sweep(ctx context.Context) []string {
	if w.StaleAfter <= 0 {
		return nil
	}
	recs, err := w.svc.store.ListVMs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.svc.logger.Warn("idle sweep", "error", err)
		}
		return nil
	}
	var (
		mu      sync.Mutex
		stopped []string
		wg      sync.WaitGroup
	)
	for _, rec := range staleVMs(recs, w.now(), w.StaleAfter) {
		if w.inUse(ctx, rec) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w.stopIfStale(ctx, rec.ID) {
				mu.Lock()
				stopped = append(stopped, rec.Name)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(stopped)
	return stopped
}

// inUse reports whether an SSH connection is open to rec's guest, and
// then touches rec: a session in progress is use, and the idle time
// counts from its end.
func (w *Sweeper) inUse(ctx context.Context, rec model.VMRecord) bool {
	if w.sessions == nil || rec.Runtime.GuestIP == "" {
		return false
	}
	n := w.sessions(rec.Runtime.GuestIP)
	if n == 0 {
		return false
	}
	if _, err := w.svc.touch(ctx, rec.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		w.svc.logger.Warn("idle sweep: touch a vm in use", "vm", rec.Name, "error", err)
	}
	w.svc.logger.Debug("idle sweep: vm in use", "vm", rec.Name, "ssh_connections", n)
	return true
}

// stopIfStale checks again, under the VM's lock, that the VM still runs
// untouched (a boot in progress holds the lock and touches the VM when
// done), then stops it.
func (w *Sweeper) stopIfStale(ctx context.Context, id string) bool {
	if ctx.Err() != nil {
		return false
	}
	// The check runs under the VM's lock, in the same hold as the stop,
	// so an ssh or exec that touches the VM in between keeps it running.
	_, stopped, err := w.svc.stopIf(ctx, id, func(rec model.VMRecord) bool {
		now := w.now()
		if rec.State != model.VMStateRunning || !isStale(rec, now, w.StaleAfter) {
			return false
		}
		idle := idleFor(rec, now).Round(time.Second)
		w.svc.logger.Info("stopping idle vm", "vm", rec.Name, "reason", "untouched for "+idle.String()+", over auto_stop_stale_after "+w.StaleAfter.String(),
			"last_touched_at", rec.LastTouchedAt)
		return true
	})
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			w.svc.logger.Warn("idle sweep", "vm_id", shortID(id), "error", err)
		}
		return false
	}
	return stopped
}

// staleVMs returns the running VMs of recs untouched for longer than
// after at now, longest idle first.
func staleVMs(recs []model.VMRecord, now time.Time, after time.Duration) []model.VMRecord {
	var out []model.VMRecord
	for _, rec := range recs {
		if isStale(rec, now, after) {
			out = append(out, rec)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return idleFor(out[i], now) > idleFor(out[j], now) })
	return out
}

// isStale reports whether rec runs and was untouched for longer than
// after at now. A zero after never makes a VM stale.
func isStale(rec model.VMRecord, now time.Time, after time.Duration) bool {
	return after > 0 && rec.State == model.VMStateRunning && idleFor(rec, now) > after
}

// idleFor is how long rec has gone untouched at now: since LastTouchedAt,
// or since it was created when it was never touched.
func idleFor(rec model.VMRecord, now time.Time) time.Duration {
	touched := rec.LastTouchedAt
	if touched.IsZero() {
		touched = rec.CreatedAt
	}
	if touched.IsZero() {
		return 0
	}
	return now.Sub(touched)
}
