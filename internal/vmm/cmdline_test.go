package vmm

import "testing"

func TestWithKernelArg(t *testing.T) {
	tests := []struct {
		cmdline, key, value, want string
	}{
		{"console=ttyS0 rw", "reboot", "t", "console=ttyS0 rw reboot=t"},
		{"", "reboot", "t", "reboot=t"},
		{"console=ttyS0 reboot=k", "reboot", "t", "console=ttyS0 reboot=k"},
		{"reboot", "reboot", "t", "reboot"},
		{"noreboot=1 xreboot=2", "reboot", "t", "noreboot=1 xreboot=2 reboot=t"},
		{"tsc_early_khz=1000 quiet", "tsc_early_khz", "3000000", "tsc_early_khz=1000 quiet"},
	}
	for _, tt := range tests {
		if got := WithKernelArg(tt.cmdline, tt.key, tt.value); got != tt.want {
			t.Errorf("WithKernelArg(%q, %q, %q): got %q, want %q", tt.cmdline, tt.key, tt.value, got, tt.want)
		}
	}
}
