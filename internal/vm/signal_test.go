package vm

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"banger/internal/errdefs"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		raw  string
		want syscall.Signal
	}{
		{"", syscall.SIGKILL},
		{"   ", syscall.SIGKILL},
		{"KILL", syscall.SIGKILL},
		{"SIGKILL", syscall.SIGKILL},
		{"kill", syscall.SIGKILL},
		{"sigkill", syscall.SIGKILL},
		{"TERM", syscall.SIGTERM},
		{"SIGTERM", syscall.SIGTERM},
		{"term", syscall.SIGTERM},
		{"SigTerm", syscall.SIGTERM},
		{" int ", syscall.SIGINT},
		{"HUP", syscall.SIGHUP},
		{"QUIT", syscall.SIGQUIT},
		{"USR1", syscall.SIGUSR1},
		{"sigusr2", syscall.SIGUSR2},
		{"STOP", syscall.SIGSTOP},
		{"CONT", syscall.SIGCONT},
		{"9", syscall.SIGKILL},
		{"15", syscall.SIGTERM},
		{"1", syscall.SIGHUP},
		{"64", syscall.Signal(64)},
	}
	for _, tt := range tests {
		t.Run("ok "+tt.raw, func(t *testing.T) {
			got, err := ParseSignal(tt.raw)
			if err != nil {
				t.Fatalf("ParseSignal(%q): got error %v, want %v", tt.raw, err, tt.want)
			}
			if got != tt.want {
				t.Errorf("ParseSignal(%q): got %v (%d), want %v (%d)", tt.raw, got, int(got), tt.want, int(tt.want))
			}
		})
	}
}

func TestParseSignalInvalid(t *testing.T) {
	tests := []string{"0", "65", "-9", "999999999999999999999", "BOGUS", "SIGSIGKILL", "KILL9", "9.0", "TERM INT", "SIG", "sig", "sig9"}
	for _, raw := range tests {
		t.Run("bad "+raw, func(t *testing.T) {
			got, err := ParseSignal(raw)
			if err == nil {
				t.Fatalf("ParseSignal(%q): got %v, want an error", raw, got)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid): got false, want true", err)
			}
			if !strings.Contains(err.Error(), raw) {
				t.Errorf("error %q: want it to name the input %q", err, raw)
			}
		})
	}
}
