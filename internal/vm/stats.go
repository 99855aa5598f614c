package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/storage"
	"banger/internal/store"
	"banger/internal/vmm"
)

// minCPUWindow is the shortest time between two samples that yields a
// CPU figure: clock ticks are 10 ms, so shorter windows are mostly noise.
const minCPUWindow = time.Second

// statsWait bounds how long Stats waits for fresh samples before it
// answers with what the records hold; a VM whose lock a boot holds is
// sampled when the boot is done.
const statsWait = 2 * time.Second

// cpuSample is the CPU time a VMM process had used at one moment.
type cpuSample struct {
	pid       int
	startTime uint64        // clock ticks after boot, identifies the process
	ticks     uint64        // utime + stime, clock ticks
	at        time.Time     // when it was read (monotonic)
	uptime    time.Duration // time since boot when it was read; 0 if unknown
}

// cpuPercent returns a process's CPU use in percent of one CPU (a VMM
// with two busy vCPUs shows 200) and whether cur is to replace prev as
// the reference of the next sample.
//
// With prev a sample of the same process taken at least minCPUWindow
// earlier, it is the ticks used between the two over the wall time
// between them. Without such a prev (the first sample, or the pid now
// belongs to another process) it is the average over the process's
// life, as ps shows it. When prev is too recent it returns ok false:
// the caller keeps its last figure and prev, so the window grows.
func cpuPercent(prev *cpuSample, cur cpuSample, hz float64) (pct float64, ok bool) {
	if hz <= 0 {
		return 0, true
	}
	if prev != nil && prev.pid == cur.pid && prev.startTime == cur.startTime && cur.ticks >= prev.ticks {
		wall := cur.at.Sub(prev.at)
		if wall < minCPUWindow {
			return 0, false
		}
		return roundPercent(float64(cur.ticks-prev.ticks) / hz / wall.Seconds() * 100), true
	}
	age := cur.uptime.Seconds() - float64(cur.startTime)/hz
	if cur.uptime <= 0 || age <= 0 {
		return 0, true
	}
	return roundPercent(float64(cur.ticks) / hz / age * 100), true
}

func roundPercent(p float64) float64 { return math.Round(p*10) / 10 }

// Sampler records the resource use of VMs into their records: CPU, RSS
// and VSZ of the VMM process and the space the system overlay and the
// work disk take on the host. It writes a record only under the VM's
// lock, after reading it again, so it never undoes a lifecycle change.
type Sampler struct {
	store  *store.Store
	locks  *locks
	logger *slog.Logger
	// refresh, when set, settles a running VM whose VMM has exited
	// before Stats samples it.
	refresh func(ctx context.Context, rec model.VMRecord) model.VMRecord
	// metrics, when set, reads the VMM's own counters of a machine the
	// driver named driver runs.
	metrics  func(ctx context.Context, h vmm.Handle) (map[string]any, error)
	driver   string
	hz       float64
	pageSize int64

	mu sync.Mutex
	// prev is the last CPU reference per VM id.
	prev map[string]cpuSample
	// busy holds a channel per VM being sampled, closed when done, so a
	// VM is sampled by one goroutine at a time.
	busy map[string]chan struct{}
}

// NewSampler returns a Sampler of s's VMs that shares s's VM locks.
func (s *Service) NewSampler() *Sampler {
	p := newSampler(s.store, &s.locks, s.logger)
	p.refresh = s.refresh
	if m, ok := s.driver.(metricsReader); ok {
		p.metrics, p.driver = m.Metrics, s.driver.Name()
	}
	return p
}

// metricsReader is a driver that reports the VMM's own counters
// (Firecracker's metrics), kept raw in VMStats.MetricsRaw.
type metricsReader interface {
	Metrics(ctx context.Context, h vmm.Handle) (map[string]any, error)
}

// metricsTimeout bounds the read of a VMM's counters.
const metricsTimeout = 2 * time.Second

func newSampler(st *store.Store, l *locks, logger *slog.Logger) *Sampler {
	return &Sampler{
		store:    st,
		locks:    l,
		logger:   logger,
		hz:       clockTicks(),
		pageSize: int64(os.Getpagesize()),
		prev:     map[string]cpuSample{},
		busy:     map[string]chan struct{}{},
	}
}

// Run samples every VM every interval (model.DefaultStatsPollInterval
// when interval is not positive) until ctx ends.
func (p *Sampler) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = model.DefaultStatsPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.sampleAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleAll starts a sample of every VM and forgets the CPU references
// of VMs that are gone. It does not wait: a VM whose lock is held is
// sampled when it is released.
func (p *Sampler) sampleAll(ctx context.Context) {
	recs, err := p.store.ListVMs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Warn("sample vm stats", "error", err)
		}
		return
	}
	live := map[string]bool{}
	for _, rec := range recs {
		live[rec.ID] = true
		p.start(ctx, rec.ID)
	}
	p.mu.Lock()
	for id := range p.prev {
		if !live[id] {
			delete(p.prev, id)
		}
	}
	p.mu.Unlock()
}

// Sample samples the VMs with ids and waits until they are done or wait
// has passed (forever when wait is not positive). A sample still waiting
// for its VM's lock then finishes in the background.
func (p *Sampler) Sample(ctx context.Context, ids []string, wait time.Duration) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	// The samples outlive this call when it stops waiting.
	bg := context.WithoutCancel(ctx)
	var done []chan struct{}
	for _, id := range ids {
		done = append(done, p.start(bg, id))
	}
	for _, ch := range done {
		select {
		case <-ch:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Stats samples the VMs named by refs (every VM when refs is empty) and
// returns their records with the fresh stats. A VM deleted meanwhile is
// left out.
func (p *Sampler) Stats(ctx context.Context, refs []string) ([]model.VMRecord, error) {
	var recs []model.VMRecord
	if len(refs) == 0 {
		all, err := p.store.ListVMs(ctx)
		if err != nil {
			return nil, err
		}
		recs = all
	} else {
		seen := map[string]bool{}
		for _, ref := range refs {
			rec, err := p.store.GetVM(ctx, ref)
			if err != nil {
				return nil, err
			}
			if !seen[rec.ID] {
				seen[rec.ID] = true
				recs = append(recs, rec)
			}
		}
	}
	ids := make([]string, len(recs))
	for i := range recs {
		if p.refresh != nil {
			recs[i] = p.refresh(ctx, recs[i])
		}
		ids[i] = recs[i].ID
	}
	p.Sample(ctx, ids, statsWait)
	out := make([]model.VMRecord, 0, len(recs))
	for _, rec := range recs {
		fresh, err := p.store.GetVM(ctx, rec.ID)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fresh)
	}
	return out, nil
}

// start begins a sample of VM id unless one runs, and returns a channel
// closed when it is done.
func (p *Sampler) start(ctx context.Context, id string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.busy[id]; ok {
		return ch
	}
	ch := make(chan struct{})
	p.busy[id] = ch
	go func() {
		defer func() {
			p.mu.Lock()
			delete(p.busy, id)
			p.mu.Unlock()
			close(ch)
		}()
		if err := p.sampleOne(ctx, id); err != nil && ctx.Err() == nil {
			p.logger.Warn("sample vm stats", "vm_id", shortID(id), "error", err)
		}
	}()
	return ch
}

// sampleOne measures VM id and stores the result under the VM's lock.
func (p *Sampler) sampleOne(ctx context.Context, id string) error {
	unlock := p.locks.lock(id)
	defer unlock()
	rec, err := p.store.GetVM(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) {
		p.forget(id)
		return nil
	}
	if err != nil {
		return err
	}
	next, running := p.measure(rec, time.Now())
	next.MetricsRaw = nil
	if running {
		next.MetricsRaw = p.vmmMetrics(ctx, rec)
	}
	if !running && sameStats(rec.Stats, next) && rec.Stats.MetricsRaw == nil {
		// A stopped VM's numbers did not change: spare the write.
		return nil
	}
	next.CollectedAt = model.Now()
	rec.Stats = next
	if err := p.store.UpdateVM(ctx, rec); err != nil {
		return fmt.Errorf("record stats of vm %q: %w", rec.Name, err)
	}
	return nil
}

// measure returns rec's stats measured now and whether its VMM process
// runs. The caller holds the VM's lock.
func (p *Sampler) measure(rec model.VMRecord, now time.Time) (model.VMStats, bool) {
	st := rec.Stats
	st.SystemOverlayBytes = p.allocated(rec.Runtime.SystemOverlay, st.SystemOverlayBytes)
	st.WorkDiskBytes = p.allocated(rec.Runtime.WorkDiskPath, st.WorkDiskBytes)

	h := readHandles(rec).VMM
	var ps vmm.ProcStat
	var err error
	alive := rec.State == model.VMStateRunning && vmm.Alive(h)
	if alive {
		ps, err = vmm.ReadProcStat(h.PID)
		// The process may have exited, and its pid been reused, since
		// Alive looked.
		alive = err == nil && h.StartTime != 0 && ps.StartTime == h.StartTime
	}
	if !alive {
		st.CPUPercent, st.RSSBytes, st.VSZBytes = 0, 0, 0
		p.forget(rec.ID)
		return st, false
	}
	cur := cpuSample{pid: h.PID, startTime: ps.StartTime, ticks: ps.UTime + ps.STime, at: now, uptime: readUptime()}
	p.mu.Lock()
	prev, hasPrev := p.prev[rec.ID]
	var prevp *cpuSample
	if hasPrev {
		prevp = &prev
	}
	if pct, ok := cpuPercent(prevp, cur, p.hz); ok {
		st.CPUPercent = pct
		p.prev[rec.ID] = cur
	}
	p.mu.Unlock()
	st.RSSBytes = ps.RSSPages * p.pageSize
	st.VSZBytes = ps.VSZ
	return st, true
}

// vmmMetrics returns the VMM's counters of rec's machine, nil when the
// driver has none or they cannot be read.
func (p *Sampler) vmmMetrics(ctx context.Context, rec model.VMRecord) map[string]any {
	h := readHandles(rec).VMM
	if p.metrics == nil || h.Driver != p.driver {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, metricsTimeout)
	defer cancel()
	m, err := p.metrics(ctx, h)
	if err != nil {
		p.logger.Debug("vmm metrics", "vm", rec.Name, "error", err)
		return nil
	}
	return m
}

// allocated returns the bytes path takes on the host, 0 when it does not
// exist, and last when it cannot be read.
func (p *Sampler) allocated(path string, last int64) int64 {
	if path == "" {
		return 0
	}
	n, err := storage.AllocatedBytes(path)
	if errors.Is(err, errdefs.ErrNotFound) {
		return 0
	}
	if err != nil {
		p.logger.Debug("disk usage", "path", path, "error", err)
		return last
	}
	return n
}

func (p *Sampler) forget(id string) {
	p.mu.Lock()
	delete(p.prev, id)
	p.mu.Unlock()
}

// sameStats reports whether a and b hold the same figures, whenever
// they were collected.
func sameStats(a, b model.VMStats) bool {
	return a.CPUPercent == b.CPUPercent && a.RSSBytes == b.RSSBytes && a.VSZBytes == b.VSZBytes &&
		a.SystemOverlayBytes == b.SystemOverlayBytes && a.WorkDiskBytes == b.WorkDiskBytes
}

// atClkTck is the auxiliary vector entry holding the clock tick rate.
const atClkTck = 17

// clockTicks returns the rate of the clock ticks /proc reports (USER_HZ).
func clockTicks() float64 {
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 {
				return float64(kv[1])
			}
		}
	}
	return 100
}

// readUptime returns the time since boot, 0 when it cannot be read.
func readUptime() time.Duration {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	return parseUptime(string(data))
}

// parseUptime parses /proc/uptime ("12345.67 54321.00"), 0 when malformed.
func parseUptime(data string) time.Duration {
	fields := strings.Fields(data)
	if len(fields) == 0 {
		return 0
	}
	secs, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || secs < 0 || math.IsInf(secs, 0) || math.IsNaN(secs) {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
