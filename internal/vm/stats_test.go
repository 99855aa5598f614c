package vm

import (
	"testing"
	"time"

	"banger/internal/model"
)

func TestCPUPercent(t *testing.T) {
	const hz = 100
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	proc := func(ticks uint64, at time.Time, uptime time.Duration) cpuSample {
		return cpuSample{pid: 42, startTime: 1000, ticks: ticks, at: at, uptime: uptime}
	}
	tests := []struct {
		name   string
		prev   *cpuSample
		cur    cpuSample
		want   float64
		wantOK bool
	}{
		{
			name:   "half a cpu over ten seconds",
			prev:   &cpuSample{pid: 42, startTime: 1000, ticks: 500, at: t0},
			cur:    proc(1000, t0.Add(10*time.Second), 0),
			want:   50,
			wantOK: true,
		},
		{
			name:   "two busy vcpus exceed one cpu",
			prev:   &cpuSample{pid: 42, startTime: 1000, ticks: 0, at: t0},
			cur:    proc(2000, t0.Add(10*time.Second), 0),
			want:   200,
			wantOK: true,
		},
		{
			name:   "idle",
			prev:   &cpuSample{pid: 42, startTime: 1000, ticks: 700, at: t0},
			cur:    proc(700, t0.Add(10*time.Second), 0),
			want:   0,
			wantOK: true,
		},
		{
			name:   "rounded to a tenth",
			prev:   &cpuSample{pid: 42, startTime: 1000, ticks: 0, at: t0},
			cur:    proc(1, t0.Add(3*time.Second), 0),
			want:   0.3, // 1 tick = 10ms over 3s = 0.333%
			wantOK: true,
		},
		{
			name:   "window too short keeps the last figure",
			prev:   &cpuSample{pid: 42, startTime: 1000, ticks: 0, at: t0},
			cur:    proc(50, t0.Add(500*time.Millisecond), 0),
			want:   0,
			wantOK: false,
		},
		{
			name:   "first sample averages over the process's life",
			prev:   nil,
			cur:    proc(3000, t0, 70*time.Second), // started at 10s, 60s old, 30s of cpu
			want:   50,
			wantOK: true,
		},
		{
			name:   "another process with the same pid averages over its life",
			prev:   &cpuSample{pid: 42, startTime: 999, ticks: 10, at: t0},
			cur:    proc(600, t0.Add(10*time.Second), 40*time.Second), // 30s old, 6s of cpu
			want:   20,
			wantOK: true,
		},
		{
			name:   "another pid averages over its life",
			prev:   &cpuSample{pid: 41, startTime: 1000, ticks: 10, at: t0},
			cur:    proc(600, t0.Add(10*time.Second), 40*time.Second),
			want:   20,
			wantOK: true,
		},
		{
			name:   "ticks going back restart the reference",
			prev:   &cpuSample{pid: 42, startTime: 1000, ticks: 9000, at: t0},
			cur:    proc(600, t0.Add(10*time.Second), 40*time.Second),
			want:   20,
			wantOK: true,
		},
		{
			name:   "unknown uptime on the first sample gives zero",
			prev:   nil,
			cur:    proc(600, t0, 0),
			want:   0,
			wantOK: true,
		},
		{
			name:   "uptime before the process start gives zero",
			prev:   nil,
			cur:    proc(600, t0, 5*time.Second),
			want:   0,
			wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cpuPercent(tt.prev, tt.cur, hz)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("cpuPercent: got (%v, %v), want (%v, %v)", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestCPUPercentZeroHz(t *testing.T) {
	got, ok := cpuPercent(nil, cpuSample{pid: 1, ticks: 100, uptime: time.Hour}, 0)
	if got != 0 || !ok {
		t.Errorf("cpuPercent with hz 0: got (%v, %v), want (0, true)", got, ok)
	}
}

func TestParseUptime(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"typical", "12345.67 54321.00\n", 12345*time.Second + 670*time.Millisecond},
		{"whole seconds", "60 10", time.Minute},
		{"empty", "", 0},
		{"garbage", "abc 1.0", 0},
		{"negative", "-5.0 1.0", 0},
		{"infinite", "inf 1.0", 0},
		{"nan", "NaN 1.0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseUptime(tt.in); got != tt.want {
				t.Errorf("parseUptime(%q): got %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSameStats(t *testing.T) {
	base := model.VMStats{CollectedAt: time.Unix(100, 0), CPUPercent: 1.5, RSSBytes: 10, VSZBytes: 20, SystemOverlayBytes: 30, WorkDiskBytes: 40}
	tests := []struct {
		name   string
		change func(*model.VMStats)
		want   bool
	}{
		{"identical", func(*model.VMStats) {}, true},
		{"only the time differs", func(s *model.VMStats) { s.CollectedAt = time.Unix(200, 0) }, true},
		{"cpu", func(s *model.VMStats) { s.CPUPercent = 0 }, false},
		{"rss", func(s *model.VMStats) { s.RSSBytes = 0 }, false},
		{"vsz", func(s *model.VMStats) { s.VSZBytes = 0 }, false},
		{"overlay", func(s *model.VMStats) { s.SystemOverlayBytes++ }, false},
		{"work disk", func(s *model.VMStats) { s.WorkDiskBytes++ }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := base
			tt.change(&other)
			if got := sameStats(base, other); got != tt.want {
				t.Errorf("sameStats: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClockTicks(t *testing.T) {
	// USER_HZ is 100 on every architecture banger runs on.
	if got := clockTicks(); got != 100 {
		t.Errorf("clockTicks: got %v, want 100", got)
	}
}
