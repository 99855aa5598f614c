package vm

import (
	"slices"
	"testing"
	"time"

	"banger/internal/model"
)

func TestIdleFor(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		rec  model.VMRecord
		want time.Duration
	}{
		{"touched an hour ago", model.VMRecord{LastTouchedAt: now.Add(-time.Hour), CreatedAt: now.Add(-5 * time.Hour)}, time.Hour},
		{"never touched counts from creation", model.VMRecord{CreatedAt: now.Add(-2 * time.Hour)}, 2 * time.Hour},
		{"no times at all", model.VMRecord{}, 0},
		{"touched in the future (clock step)", model.VMRecord{LastTouchedAt: now.Add(time.Minute)}, -time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idleFor(tt.rec, now); got != tt.want {
				t.Errorf("idleFor: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStaleVMs(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	vm := func(name string, state model.VMState, idle time.Duration) model.VMRecord {
		return model.VMRecord{ID: name + "-id", Name: name, State: state, CreatedAt: now.Add(-24 * time.Hour), LastTouchedAt: now.Add(-idle)}
	}
	recs := []model.VMRecord{
		vm("busy", model.VMStateRunning, 10*time.Minute),
		vm("idle-3h", model.VMStateRunning, 3*time.Hour),
		vm("stopped-old", model.VMStateStopped, 10*time.Hour),
		vm("created-old", model.VMStateCreated, 10*time.Hour),
		vm("error-old", model.VMStateError, 10*time.Hour),
		vm("idle-5h", model.VMStateRunning, 5*time.Hour),
		vm("exactly-2h", model.VMStateRunning, 2*time.Hour),
		vm("just-over-2h", model.VMStateRunning, 2*time.Hour+time.Second),
		{ID: "never-id", Name: "never-touched", State: model.VMStateRunning, CreatedAt: now.Add(-4 * time.Hour)},
	}
	tests := []struct {
		name  string
		after time.Duration
		want  []string
	}{
		{"two hours, longest idle first", 2 * time.Hour, []string{"idle-5h", "never-touched", "idle-3h", "just-over-2h"}},
		{"a day stops none", 24 * time.Hour, nil},
		{"a minute stops every running vm", time.Minute, []string{"idle-5h", "never-touched", "idle-3h", "just-over-2h", "exactly-2h", "busy"}},
		{"zero is off", 0, nil},
		{"negative is off", -time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range staleVMs(recs, now, tt.after) {
				got = append(got, r.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("staleVMs(after %v): got %v, want %v", tt.after, got, tt.want)
			}
		})
	}
}

func TestSweepOff(t *testing.T) {
	// A sweeper with the feature off touches nothing, not even its store.
	w := &Sweeper{svc: &Service{}, StaleAfter: 0, now: time.Now}
	if got := w.Sweep(t.Context()); got != nil {
		t.Errorf("Sweep with StaleAfter 0: got %v, want nil", got)
	}
}
