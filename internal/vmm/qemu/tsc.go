package qemu

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// hostTSCKHz returns the host's TSC frequency in kHz, or 0 when it cannot
// tell. It reads tsc_freq_khz from sysfs where the kernel exports it,
// else the "cpu MHz" of the first processor in cpuinfo, which equals the
// TSC frequency on the virtual machines TCG typically runs in and is
// close enough elsewhere: the guest only needs a plausible value to
// finish booting.
func hostTSCKHz(sysfsPath, cpuinfoPath string) int {
	if data, err := os.ReadFile(sysfsPath); err == nil {
		if khz, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && khz > 0 {
			return khz
		}
	}
	f, err := os.Open(cpuinfoPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || mhz <= 0 || mhz > 100000 {
			return 0
		}
		return int(mhz * 1000)
	}
	return 0
}
