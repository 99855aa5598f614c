package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKVMUsable(t *testing.T) {
	const (
		amdFlags   = "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic svm sse4a\n"
		intelFlags = "flags\t\t: fpu vme de pse tsc vmx ept\n"
		pvmFlags   = "flags\t\t: fpu vme de pse tsc hypervisor lahf_lm\n"
		// "vmx" inside another word is not the vmx flag.
		lookalike = "flags\t\t: fpu vmxlike svm_lock\nbugs\t\t: vmx\n"
	)
	tests := []struct {
		name      string
		device    bool
		cpuinfo   string
		modules   []string
		want      bool
		wantInMsg string
	}{
		{name: "no device", device: false, cpuinfo: intelFlags, want: false, wantInMsg: "kvm missing"},
		{name: "intel vmx", device: true, cpuinfo: intelFlags, want: true, wantInMsg: "cpu has vmx"},
		{name: "amd svm", device: true, cpuinfo: amdFlags, want: true, wantInMsg: "cpu has svm"},
		{name: "paravirtual nesting", device: true, cpuinfo: pvmFlags, modules: []string{"kvm", "kvm_pvm"}, want: false, wantInMsg: "paravirtual nesting"},
		{name: "flag lookalikes", device: true, cpuinfo: lookalike, want: false, wantInMsg: "no vmx/svm"},
		{name: "kvm_intel loaded", device: true, cpuinfo: pvmFlags, modules: []string{"kvm", "kvm_intel"}, want: true, wantInMsg: "kvm_intel is loaded"},
		{name: "kvm_amd loaded", device: true, cpuinfo: pvmFlags, modules: []string{"kvm_amd"}, want: true, wantInMsg: "kvm_amd is loaded"},
		{name: "no cpuinfo", device: true, cpuinfo: "", want: false, wantInMsg: "paravirtual nesting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := kvmProbe{
				Device:    filepath.Join(dir, "kvm"),
				CPUInfo:   filepath.Join(dir, "cpuinfo"),
				SysModule: filepath.Join(dir, "module"),
			}
			if tt.device {
				writeFile(t, p.Device, "")
			}
			if tt.cpuinfo != "" {
				writeFile(t, p.CPUInfo, "processor\t: 0\n"+tt.cpuinfo)
			}
			for _, m := range tt.modules {
				if err := os.MkdirAll(filepath.Join(p.SysModule, m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			got, msg := kvmUsable(p)
			if got != tt.want {
				t.Errorf("got usable %v (%q), want %v", got, msg, tt.want)
			}
			if !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("got reason %q, want it to contain %q", msg, tt.wantInMsg)
			}
		})
	}
}

func TestKVMUsableReadOnlyDevice(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root opens any file read-write; run as an ordinary user to test the permission case")
	}
	dir := t.TempDir()
	p := kvmProbe{Device: filepath.Join(dir, "kvm"), CPUInfo: filepath.Join(dir, "cpuinfo"), SysModule: dir}
	writeFile(t, p.Device, "")
	if err := os.Chmod(p.Device, 0o400); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.CPUInfo, "flags : vmx\n")
	got, msg := kvmUsable(p)
	if got || !strings.Contains(msg, "permission denied") {
		t.Errorf("got (%v, %q), want (false, ...permission denied...)", got, msg)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
