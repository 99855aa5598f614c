package daemon

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/paths"
)

func TestChooseVMM(t *testing.T) {
	errMissing := errdefs.NotFound(errors.New(`firecracker binary "firecracker" not found: install Firecracker 1.5.0 or later, or set firecracker_bin`))
	found := func() error { return nil }
	missing := func() error { return errMissing }
	kvmOK := func() (bool, string) { return true, "/dev/kvm opens read-write and the cpu has vmx" }
	kvmNo := func() (bool, string) { return false, "cpu has no vmx/svm (paravirtual nesting)" }
	tests := []struct {
		name     string
		mode     string
		fc       func() error
		kvm      func() (bool, string)
		want     string
		whyHas   string
		wantErr  string
		errKind  func(error) bool
		noProbes bool // qemu asked for by name probes nothing
	}{
		{name: "auto with firecracker and kvm", mode: "auto", fc: found, kvm: kvmOK, want: "firecracker", whyHas: "has vmx"},
		{name: "auto empty means auto", mode: "", fc: found, kvm: kvmOK, want: "firecracker"},
		{name: "auto without the binary", mode: "auto", fc: missing, kvm: kvmOK, want: "qemu", whyHas: "firecracker is not available (firecracker binary"},
		{name: "auto without kvm", mode: "auto", fc: found, kvm: kvmNo, want: "qemu", whyHas: "kvm is not usable for firecracker (cpu has no vmx/svm"},
		{name: "auto without either", mode: "auto", fc: missing, kvm: kvmNo, want: "qemu", whyHas: "kvm is not usable"},
		{name: "qemu by name", mode: "qemu", want: "qemu", noProbes: true},
		{name: "firecracker by name", mode: "firecracker", fc: found, kvm: kvmOK, want: "firecracker", whyHas: "in the configuration"},
		{name: "firecracker by name without the binary", mode: "firecracker", fc: missing, kvm: kvmOK,
			wantErr: `vmm "firecracker": firecracker binary "firecracker" not found`, errKind: errdefs.IsNotFound},
		{name: "firecracker by name without kvm", mode: "firecracker", fc: found, kvm: kvmNo,
			wantErr: `vmm "firecracker": kvm is not usable (cpu has no vmx/svm (paravirtual nesting)); firecracker needs it`, errKind: func(err error) bool { return errors.Is(err, errdefs.ErrUnavailable) }},
		{name: "unknown", mode: "bhyve", fc: found, kvm: kvmOK, wantErr: `vmm "bhyve": unknown`, errKind: errdefs.IsInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probed := false
			p := vmmProbe{
				firecracker: func() error { probed = true; return tt.fc() },
				kvm:         func() (bool, string) { probed = true; return tt.kvm() },
			}
			got, why, err := chooseVMM(tt.mode, p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v, want error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("got a multi-line error %q, want one line", err)
				}
				if tt.errKind != nil && !tt.errKind(err) {
					t.Errorf("got error %v of another kind", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got %s (%s), want %s", got, why, tt.want)
			}
			if !strings.Contains(why, tt.whyHas) || why == "" {
				t.Errorf("got reason %q, want one containing %q", why, tt.whyHas)
			}
			if tt.noProbes && probed {
				t.Errorf("got host probes for vmm %q, want none", tt.mode)
			}
		})
	}
}

// TestNewDriver runs the real probes: a firecracker binary that does not
// exist is refused by name and passed over by auto.
func TestNewDriver(t *testing.T) {
	layout := paths.Layout{StateDir: t.TempDir()}
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		mode    string
		want    string
		wantErr string
	}{
		{mode: "firecracker", wantErr: `vmm "firecracker": firecracker binary "/nonexistent/firecracker" not found: install Firecracker 1.5.0 or later, or set firecracker_bin`},
		{mode: "auto", want: "qemu"},
		{mode: "qemu", want: "qemu"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			cfg := model.DaemonConfig{VMM: tt.mode, FirecrackerBin: "/nonexistent/firecracker"}
			d, accel, _, err := newDriver(t.Context(), cfg, layout, logger)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got %v, want error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want driver %s", err, tt.want)
			}
			if d.Name() != tt.want || accel == "" {
				t.Errorf("got driver %s accel %q, want %s with an accelerator", d.Name(), accel, tt.want)
			}
		})
	}
}

func TestGuestDNSAddr(t *testing.T) {
	tests := []struct {
		listen, bridge, want string
	}{
		{"127.0.0.1:42069", "172.16.0.1", "172.16.0.1:42069"},
		{"127.0.0.1:5353", "10.77.0.1", "10.77.0.1:5353"},
		{"172.16.0.1:42069", "172.16.0.1", ""}, // already there
		{"0.0.0.0:42069", "172.16.0.1", ""},    // every address
		{"off", "172.16.0.1", ""},
		{"127.0.0.1:42069", "not-an-ip", ""},
	}
	for _, tt := range tests {
		if got := guestDNSAddr(tt.listen, tt.bridge); got != tt.want {
			t.Errorf("guestDNSAddr(%q, %q): got %q, want %q", tt.listen, tt.bridge, got, tt.want)
		}
	}
}
