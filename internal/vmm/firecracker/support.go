package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"banger/internal/errdefs"
	"banger/internal/paths"
	"banger/internal/vmm"
)

// validate checks spec and reports every problem at once. Missing files
// are not-found errors, everything else invalid input.
func (d *Driver) validate(spec vmm.Spec) error {
	var c vmm.SpecCheck
	socket := func(what, path string) {
		if !filepath.IsAbs(path) {
			c.Invalid("%s %q: not an absolute path", what, path)
		} else if err := paths.CheckSocketPath(what, path); err != nil {
			c.Invalid("%s", err)
		}
	}
	if spec.VCPUs < 1 || spec.VCPUs > 32 {
		c.Invalid("vcpus %d: firecracker runs 1 to 32", spec.VCPUs)
	}
	// Firecracker takes raw disk images or block devices only.
	if c.Common(spec, "raw", "") && !d.jailer.Enabled {
		socket("api socket", filepath.Join(spec.Dir, apiSockName))
	}
	if spec.TapDevice != "" {
		if err := d.checkTap(spec.TapDevice); err != nil {
			c.Add(errdefs.NotFound(fmt.Errorf("tap %q: no such network device", spec.TapDevice)))
		}
	}
	if spec.ConsoleLog != "" && !filepath.IsAbs(spec.ConsoleLog) {
		c.Invalid("console log %q: not an absolute path", spec.ConsoleLog)
	}
	if spec.AgentSocket != "" {
		socket("agent socket", spec.AgentSocket)
		if spec.VSockCID < 3 {
			c.Invalid("vsock cid %d: must be at least 3", spec.VSockCID)
		}
	}
	if d.jailer.Enabled {
		_, err := d.jailFor(spec.ID)
		c.Add(err)
	}
	return c.Err()
}

// cleanups is a LIFO stack of undo steps.
type cleanups struct {
	steps []cleanupStep
}

type cleanupStep struct {
	name string
	fn   func() error
}

func (c *cleanups) push(name string, fn func() error) {
	c.steps = append(c.steps, cleanupStep{name, fn})
}

// run undoes every step, last first, logging what fails.
func (c *cleanups) run(log *slog.Logger) {
	for i := len(c.steps) - 1; i >= 0; i-- {
		if err := c.steps[i].fn(); err != nil {
			log.Error("undo failed start", "step", c.steps[i].name, "err", err)
		}
	}
}

// touch creates path when missing, and empties it when truncate.
func touch(path string, truncate bool) error {
	flags := os.O_WRONLY | os.O_CREATE
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func writeState(dir string, st state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+stateName+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record firecracker state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateName)); err != nil {
		return fmt.Errorf("record firecracker state: %w", err)
	}
	return nil
}

func readState(dir string) (state, error) {
	var st state
	data, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

// readPIDFile reads a pid file and the start time of its process.
func readPIDFile(path string) (int, uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("pid file %s: bad pid %q", path, strings.TrimSpace(string(data)))
	}
	st, err := vmm.ReadProcStat(pid)
	if err != nil || st.State == 'Z' || st.State == 'X' {
		return 0, 0, fmt.Errorf("pid file %s: process %d is gone", path, pid)
	}
	return pid, st.StartTime, nil
}

// waitPIDFile waits until path names a running process. The jailer,
// launched, writes it: once launched is gone without a pid there, it
// never will.
func waitPIDFile(ctx context.Context, path string, launched vmm.Handle, timeout time.Duration) (int, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		alive := vmm.Alive(launched)
		pid, start, err := readPIDFile(path)
		if err == nil {
			return pid, start, nil
		}
		if !alive {
			return 0, 0, fmt.Errorf("jailer (pid %d) exited before firecracker was up: %w", launched.PID, err)
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("wait for firecracker pid: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// jailInUse returns a process whose root directory is j's root: the
// Firecracker of its pid file, else any process found in /proc (a
// jailer before 1.7 writes no pid file). Firecracker's root is a bind
// mount of the jail in a mount namespace of its own, where
// /proc/PID/root reads "/": the check compares the directories
// themselves.
func jailInUse(j Jail) (int, bool) {
	root, err := os.Stat(j.Root())
	if err != nil {
		return 0, false
	}
	if pid, _, err := readPIDFile(j.PIDFile()); err == nil && rootIs(pid, root) {
		return pid, true
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && rootIs(pid, root) {
			return pid, true
		}
	}
	return 0, false
}

// rootIs reports whether process pid has dir as its root directory.
func rootIs(pid int, dir os.FileInfo) bool {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/root", pid))
	return err == nil && os.SameFile(fi, dir)
}

// consoleTail returns the end of the console log for an error message,
// "" when there is nothing to show.
func consoleTail(path string) string {
	if path == "" {
		return ""
	}
	data, err := readTail(path, 600)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	return "; console: " + strings.TrimSpace(strings.ToValidUTF8(string(data), ""))
}

// readTail returns the last n bytes of the file at path.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	_, err = f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// MetricsPath returns the metrics file of the machine of h: it lies
// beside the API socket, in the VM directory or at the root of the jail.
func MetricsPath(h vmm.Handle) string {
	return filepath.Join(filepath.Dir(h.ControlSocket), metricsName)
}

// LogPath returns Firecracker's own log file for the machine of h.
func LogPath(h vmm.Handle) string { return filepath.Join(filepath.Dir(h.ControlSocket), logName) }

// maxMetricsLine bounds how much of the metrics file is read for the
// last sample.
const maxMetricsLine = 1 << 20

// Metrics makes Firecracker flush a metrics sample and returns it, as
// Firecracker wrote it: one JSON object per flush, with counters since
// the previous flush. It feeds `vm stats`.
func (d *Driver) Metrics(ctx context.Context, h vmm.Handle) (map[string]any, error) {
	if !vmm.Alive(h) {
		return nil, vmm.ErrNotRunning
	}
	if err := newClient(h.ControlSocket).do(ctx, FlushMetricsRequest(), nil); err != nil {
		return nil, fmt.Errorf("metrics of firecracker pid %d: %w", h.PID, err)
	}
	m, err := LastMetrics(MetricsPath(h))
	if err != nil {
		return nil, fmt.Errorf("metrics of firecracker pid %d: %w", h.PID, err)
	}
	return m, nil
}

// LastMetrics returns the last complete sample in the metrics file at
// path.
func LastMetrics(path string) (map[string]any, error) {
	data, err := readTail(path, maxMetricsLine)
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var m map[string]any
		if json.Unmarshal(lines[i], &m) == nil && m != nil {
			return m, nil
		}
	}
	return nil, errdefs.NotFound(fmt.Errorf("metrics file %s: no sample yet", path))
}
