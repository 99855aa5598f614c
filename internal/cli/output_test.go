package cli

import (
	"bytes"
	"regexp"
	"testing"

	"banger/internal/model"
)

// TestPrintVMDriver: vm show names the driver, its accelerator and the
// rootfs backend of the system disk.
func TestPrintVMDriver(t *testing.T) {
	tests := []struct {
		name    string
		rt      model.VMRuntime
		want    []string
		wantNot []string
	}{
		{
			name: "firecracker on a dm-snapshot",
			rt:   model.VMRuntime{VMM: "firecracker", Accel: "kvm", RootfsBackend: "dm-snapshot"},
			want: []string{`(?m)^VMM:\s+firecracker \(kvm\)$`, `(?m)^Rootfs backend:\s+dm-snapshot$`},
		},
		{
			name: "firecracker on a sparse copy",
			rt:   model.VMRuntime{VMM: "firecracker", Accel: "kvm", RootfsBackend: "sparse"},
			want: []string{`(?m)^Rootfs backend:\s+sparse$`},
		},
		{
			name:    "qemu with a qcow2 overlay",
			rt:      model.VMRuntime{VMM: "qemu", Accel: "tcg"},
			want:    []string{`(?m)^VMM:\s+qemu \(tcg\)$`},
			wantNot: []string{`Rootfs backend`},
		},
		{
			name: "driver without a recorded accelerator",
			rt:   model.VMRuntime{VMM: "firecracker"},
			want: []string{`(?m)^VMM:\s+firecracker$`},
		},
		{
			name:    "never started",
			rt:      model.VMRuntime{},
			wantNot: []string{`VMM`, `Rootfs backend`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			printVM(&buf, model.VMRecord{Name: "box", State: model.VMStateRunning, Runtime: tt.rt})
			for _, re := range tt.want {
				if !regexp.MustCompile(re).Match(buf.Bytes()) {
					t.Errorf("got\n%s\nwant a line matching %s", buf.String(), re)
				}
			}
			for _, re := range tt.wantNot {
				if regexp.MustCompile(re).Match(buf.Bytes()) {
					t.Errorf("got\n%s\nwant no line matching %s", buf.String(), re)
				}
			}
		})
	}
}
