package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// discardLogger is a logger for tests that do not look at logs.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// stepSpec describes a test step: whether its do or undo fails.
type stepSpec struct {
	name    string
	doErr   error
	undoErr error
	noUndo  bool
}

// buildSteps turns specs into steps that record "do NAME" and
// "undo NAME" in *events.
func buildSteps(specs []stepSpec, events *[]string) []step {
	var steps []step
	for _, sp := range specs {
		s := step{
			name: sp.name,
			do: func(ctx context.Context) error {
				*events = append(*events, "do "+sp.name)
				return sp.doErr
			},
		}
		if !sp.noUndo {
			s.undo = func(ctx context.Context) error {
				*events = append(*events, "undo "+sp.name)
				return sp.undoErr
			}
		}
		steps = append(steps, s)
	}
	return steps
}

func TestRunSteps(t *testing.T) {
	errBoom := errors.New("boom")
	errUndoA := errors.New("undo a broke")
	errUndoC := errors.New("undo c broke")
	tests := []struct {
		name       string
		specs      []stepSpec
		wantEvents []string
		wantErr    error    // errors.Is target; nil for success
		wantMsg    []string // substrings of the error message
		wantAlso   []error  // further errors.Is targets (undo errors)
	}{
		{
			name:       "all succeed in order",
			specs:      []stepSpec{{name: "a"}, {name: "b"}, {name: "c"}},
			wantEvents: []string{"do a", "do b", "do c"},
		},
		{
			name:       "no steps",
			wantEvents: nil,
		},
		{
			name:       "first step fails",
			specs:      []stepSpec{{name: "a", doErr: errBoom}, {name: "b"}},
			wantEvents: []string{"do a", "undo a"},
			wantErr:    errBoom,
			wantMsg:    []string{"a: boom"},
		},
		{
			name:       "middle step fails and undoes itself and earlier steps in reverse",
			specs:      []stepSpec{{name: "a"}, {name: "b"}, {name: "c", doErr: errBoom}, {name: "d"}},
			wantEvents: []string{"do a", "do b", "do c", "undo c", "undo b", "undo a"},
			wantErr:    errBoom,
			wantMsg:    []string{"c: boom"},
		},
		{
			name:       "last step fails",
			specs:      []stepSpec{{name: "a"}, {name: "b", doErr: errBoom}},
			wantEvents: []string{"do a", "do b", "undo b", "undo a"},
			wantErr:    errBoom,
			wantMsg:    []string{"b: boom"},
		},
		{
			name:       "steps without undo are skipped in rollback",
			specs:      []stepSpec{{name: "a"}, {name: "b", noUndo: true}, {name: "c", doErr: errBoom}},
			wantEvents: []string{"do a", "do b", "do c", "undo c", "undo a"},
			wantErr:    errBoom,
			wantMsg:    []string{"c: boom"},
		},
		{
			name: "undo errors are joined and every undo still runs",
			specs: []stepSpec{
				{name: "a", undoErr: errUndoA},
				{name: "b"},
				{name: "c", doErr: errBoom, undoErr: errUndoC},
			},
			wantEvents: []string{"do a", "do b", "do c", "undo c", "undo b", "undo a"},
			wantErr:    errBoom,
			wantMsg:    []string{"c: boom", "rollback: ", "undo c: undo c broke", "undo a: undo a broke"},
			wantAlso:   []error{errUndoA, errUndoC},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			err := runSteps(t.Context(), discardLogger(), nil, buildSteps(tt.specs, &events))
			if !slices.Equal(events, tt.wantEvents) {
				t.Errorf("events: got %q, want %q", events, tt.wantEvents)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("error: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("error: got nil, want %v", tt.wantErr)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("errors.Is(%v, %v): got false, want true", err, tt.wantErr)
			}
			for _, target := range tt.wantAlso {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v): got false, want true", err, target)
				}
			}
			for _, sub := range tt.wantMsg {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q: want it to contain %q", err, sub)
				}
			}
			// The failed step comes first: the message starts with its name.
			if first := tt.wantMsg[0]; !strings.HasPrefix(err.Error(), first) {
				t.Errorf("error %q: want prefix %q", err, first)
			}
		})
	}
}

func TestRunStepsReportsStepNames(t *testing.T) {
	tests := []struct {
		name  string
		specs []stepSpec
		want  []string
	}{
		{
			name:  "every step reported before it runs",
			specs: []stepSpec{{name: "record"}, {name: "vm-dir"}, {name: "work-disk"}},
			want:  []string{"record", "vm-dir", "work-disk"},
		},
		{
			name:  "steps after a failure are not reported",
			specs: []stepSpec{{name: "bridge"}, {name: "tap", doErr: errors.New("no tap")}, {name: "vmm"}},
			want:  []string{"bridge", "tap"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events, reported []string
			steps := buildSteps(tt.specs, &events)
			report := func(step, msg string) {
				if msg != "" {
					t.Errorf("report(%q, %q): got message %q, want empty", step, msg, msg)
				}
				// The step is reported before its do runs.
				if want := len(reported); countPrefix(events, "do ") != want {
					t.Errorf("report(%q): got %d steps run before it, want %d", step, countPrefix(events, "do "), want)
				}
				reported = append(reported, step)
			}
			_ = runSteps(t.Context(), discardLogger(), report, steps)
			if !slices.Equal(reported, tt.want) {
				t.Errorf("reported: got %q, want %q", reported, tt.want)
			}
		})
	}
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// TestRunStepsRollbackDetachedFromCancel checks that a canceled request
// still gets a full rollback with a live, bounded context.
func TestRunStepsRollbackDetachedFromCancel(t *testing.T) {
	type ctxKey struct{}
	tests := []struct {
		name   string
		cancel bool // cancel the request before running
	}{
		{name: "request canceled before run", cancel: true},
		{name: "request live", cancel: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.WithValue(t.Context(), ctxKey{}, "op-1"))
			defer cancel()
			if tt.cancel {
				cancel()
			}
			var undone []string
			check := func(name string) func(ctx context.Context) error {
				return func(uctx context.Context) error {
					undone = append(undone, name)
					if err := uctx.Err(); err != nil {
						t.Errorf("undo %s: got ctx.Err() %v, want nil", name, err)
					}
					deadline, ok := uctx.Deadline()
					if !ok {
						t.Errorf("undo %s: got no deadline, want one at most %s away", name, undoTimeout)
					} else if left := time.Until(deadline); left <= 0 || left > undoTimeout {
						t.Errorf("undo %s: got deadline %s away, want within (0, %s]", name, left, undoTimeout)
					}
					if got := uctx.Value(ctxKey{}); got != "op-1" {
						t.Errorf("undo %s: got ctx value %v, want op-1", name, got)
					}
					return nil
				}
			}
			steps := []step{
				{name: "a", do: func(context.Context) error { return nil }, undo: check("a")},
				{name: "b", do: func(ctx context.Context) error { return ctx.Err() }, undo: check("b")},
			}
			if !tt.cancel {
				steps[1].do = func(context.Context) error { return errors.New("fail") }
			}
			err := runSteps(ctx, discardLogger(), nil, steps)
			if err == nil {
				t.Fatal("error: got nil, want the failure of step b")
			}
			if tt.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("errors.Is(%v, context.Canceled): got false, want true", err)
			}
			if want := []string{"b", "a"}; !slices.Equal(undone, want) {
				t.Errorf("undone: got %q, want %q", undone, want)
			}
		})
	}
}

// TestRunStepsFaultHook checks the test hook: a fault after a named
// step's do fails the pipeline at that step, and its undo runs.
func TestRunStepsFaultHook(t *testing.T) {
	errFault := errors.New("injected fault")
	tests := []struct {
		name       string
		faultAt    string
		wantEvents []string
		wantErr    bool
	}{
		{
			name:       "fault after first step",
			faultAt:    "a",
			wantEvents: []string{"do a", "undo a"},
			wantErr:    true,
		},
		{
			name:       "fault after middle step",
			faultAt:    "b",
			wantEvents: []string{"do a", "do b", "undo b", "undo a"},
			wantErr:    true,
		},
		{
			name:       "fault after last step",
			faultAt:    "c",
			wantEvents: []string{"do a", "do b", "do c", "undo c", "undo b", "undo a"},
			wantErr:    true,
		},
		{
			name:       "fault at a step that does not exist",
			faultAt:    "zzz",
			wantEvents: []string{"do a", "do b", "do c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooked []string
			setFaultHook(t, func(step string) error {
				hooked = append(hooked, step)
				if step == tt.faultAt {
					return errFault
				}
				return nil
			})
			var events []string
			specs := []stepSpec{{name: "a"}, {name: "b"}, {name: "c"}}
			err := runSteps(t.Context(), discardLogger(), nil, buildSteps(specs, &events))
			if !slices.Equal(events, tt.wantEvents) {
				t.Errorf("events: got %q, want %q", events, tt.wantEvents)
			}
			if got := countPrefix(events, "do "); len(hooked) != got {
				t.Errorf("fault hook calls: got %d, want one per step run (%d)", len(hooked), got)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("error: got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, errFault) {
				t.Errorf("errors.Is(%v, errFault): got false, want true", err)
			}
			if want := tt.faultAt + ": " + errFault.Error(); !strings.HasPrefix(fmt.Sprint(err), want) {
				t.Errorf("error %q: want prefix %q", err, want)
			}
		})
	}
}

// TestRunStepsFaultHookNotCalledOnFailure checks that a step whose do
// failed is not also reported to the fault hook.
func TestRunStepsFaultHookNotCalledOnFailure(t *testing.T) {
	var hooked []string
	setFaultHook(t, func(step string) error {
		hooked = append(hooked, step)
		return nil
	})
	var events []string
	specs := []stepSpec{{name: "a"}, {name: "b", doErr: errors.New("b broke")}}
	_ = runSteps(t.Context(), discardLogger(), nil, buildSteps(specs, &events))
	if want := []string{"a"}; !slices.Equal(hooked, want) {
		t.Errorf("fault hook calls: got %q, want %q", hooked, want)
	}
}

// setFaultHook installs hook for the test's duration. Tests that use it
// must not run in parallel.
func setFaultHook(t *testing.T, hook func(step string) error) {
	t.Helper()
	old := faultHook
	faultHook = hook
	t.Cleanup(func() { faultHook = old })
}
