package nat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeForwarding is a forwarding over temporary files: proc starts with
// the value initial.
func fakeForwarding(t *testing.T, initial string) forwarding {
	t.Helper()
	dir := t.TempDir()
	f := forwarding{proc: filepath.Join(dir, "ip_forward"), state: filepath.Join(dir, "state", "nat-ip-forward"), logger: discard()}
	if err := os.WriteFile(f.proc, []byte(initial+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(data))
}

func stateExists(t *testing.T, f forwarding) bool {
	t.Helper()
	_, err := os.Stat(f.state)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat state file: %v", err)
	}
	return err == nil
}

func TestForwardingSettle(t *testing.T) {
	tests := []struct {
		name    string
		initial string
		// steps: true = NAT guests exist, false = none.
		steps     []bool
		wantProc  string
		wantState string // "" = no state file
	}{
		{name: "on from 0", initial: "0", steps: []bool{true}, wantProc: "1", wantState: "0"},
		{name: "on from 1", initial: "1", steps: []bool{true}, wantProc: "1", wantState: "1"},
		{name: "on then off from 0", initial: "0", steps: []bool{true, false}, wantProc: "0"},
		{name: "on then off from 1", initial: "1", steps: []bool{true, false}, wantProc: "1"},
		{name: "on twice keeps first memory", initial: "0", steps: []bool{true, true}, wantProc: "1", wantState: "0"},
		{name: "off without memory leaves value", initial: "1", steps: []bool{false}, wantProc: "1"},
		{name: "off twice", initial: "0", steps: []bool{true, false, false}, wantProc: "0"},
		{name: "cycle", initial: "0", steps: []bool{true, false, true, false}, wantProc: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fakeForwarding(t, tt.initial)
			for i, on := range tt.steps {
				if err := f.settle(on); err != nil {
					t.Fatalf("step %d settle(%v): %v", i, on, err)
				}
			}
			if got := readTrim(t, f.proc); got != tt.wantProc {
				t.Errorf("got ip_forward %q, want %q", got, tt.wantProc)
			}
			if tt.wantState == "" {
				if stateExists(t, f) {
					t.Errorf("state file exists, want it removed")
				}
			} else if got := readTrim(t, f.state); got != tt.wantState {
				t.Errorf("got state %q, want %q", got, tt.wantState)
			}
		})
	}
}

func TestForwardingSurvivesRestart(t *testing.T) {
	f := fakeForwarding(t, "0")
	if err := f.settle(true); err != nil {
		t.Fatal(err)
	}
	// A new daemon: same files, nothing in memory. Something else set
	// forwarding meanwhile; the memory from before banger still wins.
	g := forwarding{proc: f.proc, state: f.state, logger: discard()}
	if err := g.settle(true); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, g.state); got != "0" {
		t.Errorf("after restart got state %q, want the original 0", got)
	}
	if err := g.settle(false); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, g.proc); got != "0" {
		t.Errorf("got ip_forward %q, want 0 restored", got)
	}
}

func TestForwardingErrors(t *testing.T) {
	t.Run("damaged memory", func(t *testing.T) {
		f := fakeForwarding(t, "1")
		if err := os.MkdirAll(filepath.Dir(f.state), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.state, []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := f.settle(true); err != nil {
			t.Errorf("settle(true) with a damaged state file: %v, want nil (forwarding is needed)", err)
		}
		err := f.settle(false)
		if err == nil || !strings.Contains(err.Error(), `holds "junk"`) {
			t.Errorf("settle(false) = %v, want an error naming the bad content", err)
		}
		if got := readTrim(t, f.proc); got != "1" {
			t.Errorf("got ip_forward %q, want 1 left alone", got)
		}
	})
	t.Run("unexpected sysctl value", func(t *testing.T) {
		f := fakeForwarding(t, "2")
		if err := f.settle(true); err == nil {
			t.Error("settle(true) with ip_forward 2 succeeded, want error")
		}
		if stateExists(t, f) {
			t.Error("state file written from a bad value")
		}
	})
	t.Run("missing sysctl", func(t *testing.T) {
		f := fakeForwarding(t, "0")
		f.proc = filepath.Join(t.TempDir(), "absent")
		if err := f.settle(true); err == nil {
			t.Error("settle(true) without the sysctl succeeded, want error")
		}
	})
}
