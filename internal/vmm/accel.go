package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KVMUsable reports whether KVM can run a stock guest kernel on this host.
// That takes a /dev/kvm that opens read-write and a CPU that advertises
// hardware virtualisation (vmx or svm) or a loaded kvm_intel/kvm_amd
// module: a /dev/kvm without them (paravirtual nesting) cannot boot an
// ordinary guest. The string says why KVM is unusable, or what made it
// usable.
func KVMUsable() (bool, string) {
	return kvmUsable(kvmProbe{
		Device:    "/dev/kvm",
		CPUInfo:   "/proc/cpuinfo",
		SysModule: "/sys/module",
	})
}

// kvmProbe names the host files KVMUsable looks at, so tests can point
// it at fakes.
type kvmProbe struct {
	Device    string // the KVM device node
	CPUInfo   string // /proc/cpuinfo
	SysModule string // directory of loaded modules
}

func kvmUsable(p kvmProbe) (bool, string) {
	f, err := os.OpenFile(p.Device, os.O_RDWR, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, p.Device + " missing"
	case errors.Is(err, fs.ErrPermission):
		return false, p.Device + " is not accessible read-write (permission denied; add the user to the kvm group)"
	case err != nil:
		return false, fmt.Sprintf("%s does not open read-write: %v", p.Device, err)
	}
	f.Close()

	if flag := cpuVirtFlag(p.CPUInfo); flag != "" {
		return true, fmt.Sprintf("%s opens read-write and the cpu has %s", p.Device, flag)
	}
	for _, mod := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat(filepath.Join(p.SysModule, mod)); err == nil {
			return true, fmt.Sprintf("%s opens read-write and %s is loaded", p.Device, mod)
		}
	}
	return false, "cpu has no vmx/svm and kvm_intel/kvm_amd are not loaded (paravirtual nesting)"
}

// cpuVirtFlag returns "vmx" or "svm" when a flags line of the cpuinfo file
// at path lists it, else "".
func cpuVirtFlag(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, flag := range strings.Fields(value) {
			if flag == "vmx" || flag == "svm" {
				return flag
			}
		}
	}
	return ""
}
