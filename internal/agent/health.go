package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ReadHealth gathers Health from the procfs mounted at root. Uptime is
// required; the other facts are left zero when unreadable.
func ReadHealth(root string) (Health, error) {
	h := Health{Version: Version, Protocol: ProtocolVersion}
	up, err := os.ReadFile(filepath.Join(root, "uptime"))
	if err != nil {
		return Health{}, fmt.Errorf("read uptime: %w", err)
	}
	if h.UptimeSeconds, err = firstFloat(up); err != nil {
		return Health{}, fmt.Errorf("parse %s/uptime: %w", root, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/kernel/hostname")); err == nil {
		h.Hostname = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/kernel/osrelease")); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(root, "loadavg")); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			for i := range 3 {
				h.LoadAvg[i], _ = strconv.ParseFloat(f[i], 64)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "meminfo")); err == nil {
		h.MemTotalBytes, h.MemAvailableBytes = parseMeminfo(b)
	}
	return h, nil
}

func firstFloat(b []byte) (float64, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty")
	}
	return strconv.ParseFloat(f[0], 64)
}

// parseMeminfo returns MemTotal and MemAvailable in bytes.
func parseMeminfo(b []byte) (total, avail int64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kib, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			total = kib << 10
		case "MemAvailable:":
			avail = kib << 10
		}
	}
	return total, avail
}
