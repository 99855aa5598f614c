package vmm

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcStat is the part of /proc/PID/stat banger uses.
type ProcStat struct {
	State     byte
	StartTime uint64 // clock ticks after boot
	UTime     uint64 // clock ticks
	STime     uint64
	VSZ       int64 // bytes
	RSSPages  int64
}

// ReadProcStat reads /proc/PID/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseProcStat(string(data))
}

// ParseProcStat parses the contents of /proc/PID/stat.
func ParseProcStat(data string) (ProcStat, error) {
	// The command name is in parentheses and may itself hold spaces and
	// parentheses: the fields start after the last ')'.
	end := strings.LastIndexByte(data, ')')
	if end < 0 || end+2 >= len(data) {
		return ProcStat{}, fmt.Errorf("parse proc stat: malformed")
	}
	fields := strings.Fields(data[end+2:])
	// fields[0] is field 3 (state); field N is fields[N-3].
	if len(fields) < 22 {
		return ProcStat{}, fmt.Errorf("parse proc stat: %d fields", len(fields))
	}
	num := func(i int) uint64 {
		v, _ := strconv.ParseUint(fields[i], 10, 64)
		return v
	}
	return ProcStat{
		State:     fields[0][0],
		UTime:     num(14 - 3),
		STime:     num(15 - 3),
		StartTime: num(22 - 3),
		VSZ:       int64(num(23 - 3)),
		RSSPages:  int64(num(24 - 3)),
	}, nil
}

// WaitExit waits until the process of h is gone or ctx ends.
func WaitExit(ctx context.Context, h Handle) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for Alive(h) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Kill sends SIGKILL to the process of h and waits for it to be gone.
func Kill(ctx context.Context, h Handle) error {
	if err := Signal(h, syscall.SIGKILL); err != nil {
		if err == ErrNotRunning {
			return nil
		}
		return fmt.Errorf("kill vmm pid %d: %w", h.PID, err)
	}
	return WaitExit(ctx, h)
}
