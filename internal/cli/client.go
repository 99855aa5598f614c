package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"banger/internal/api"
	"banger/internal/paths"
	"banger/internal/rpc"
)

// daemonStartTimeout bounds the wait for an on-demand daemon.
const daemonStartTimeout = 20 * time.Second

// connect returns a client of the running daemon, starting one when none
// answers and no service manager runs it.
func (g *globals) connect(ctx context.Context) (*rpc.Client, error) {
	layout, err := paths.Resolve()
	if err != nil {
		return nil, err
	}
	c := &rpc.Client{Socket: layout.Socket(), OnNotify: g.onNotify}
	var st api.DaemonStatus
	for attempt := 0; ; attempt++ {
		err := c.Call(ctx, api.MethodDaemonStatus, nil, &st)
		if err == nil {
			return c, nil
		}
		// A daemon that is dying (killed, its last threads still
		// exiting) can take a connection in its backlog and then reset
		// it: ask again, then treat it as gone.
		if errors.Is(err, syscall.ECONNRESET) && attempt < 5 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !errors.Is(err, rpc.ErrNoDaemon) && !errors.Is(err, syscall.ECONNRESET) {
			return nil, err
		}
		break
	}
	if err := startDaemon(ctx, layout, g.stderr); err != nil {
		return nil, err
	}
	return c, nil
}

// call connects and calls one method.
func (g *globals) call(ctx context.Context, method string, params, result any) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	return c.Call(ctx, method, params, result)
}

// startDaemon launches bangerd in the background with its log under the
// layout and waits until it answers.
func startDaemon(ctx context.Context, layout paths.Layout, stderr io.Writer) error {
	if managedByService() {
		return fmt.Errorf("bangerd is not running; start it with: sudo systemctl start bangerd")
	}
	bin, err := daemonBinary()
	if err != nil {
		return err
	}
	if err := layout.Ensure(); err != nil {
		return err
	}
	logFile, err := os.OpenFile(layout.DaemonLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bangerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(daemonStartTimeout)
	defer deadline.Stop()
	c := &rpc.Client{Socket: layout.Socket()}
	for {
		if err := c.Call(ctx, api.MethodDaemonStatus, nil, nil); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			// Another CLI started a daemon at the same moment and
			// its daemon won the lock: wait for that one to answer.
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == api.ExitDaemonAlreadyRunning {
				exited = nil
				continue
			}
			return fmt.Errorf("bangerd exited at start (%v): %s", err, lastLogLine(layout.DaemonLog()))
		case <-deadline.C:
			return fmt.Errorf("bangerd did not answer within %s; see %s", daemonStartTimeout, layout.DaemonLog())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// managedByService reports whether a service manager owns bangerd here.
func managedByService() bool {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return false
	}
	for _, unit := range []string{"/etc/systemd/system/bangerd.service", "/lib/systemd/system/bangerd.service", "/usr/lib/systemd/system/bangerd.service"} {
		if _, err := os.Stat(unit); err == nil {
			return true
		}
	}
	return false
}

// daemonBinary finds bangerd next to this executable, else on PATH.
func daemonBinary() (string, error) {
	if self, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(self), "bangerd")
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
	}
	if p, err := exec.LookPath("bangerd"); err == nil {
		return p, nil
	}
	return "", errors.New("bangerd not found next to banger or on PATH; run make install")
}

func lastLogLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "see " + path
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	last := lines[len(lines)-1]
	var rec struct {
		Msg   string `json:"msg"`
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(last), &rec) == nil && rec.Msg != "" {
		if rec.Error != "" {
			return rec.Msg + ": " + rec.Error
		}
		return rec.Msg
	}
	return last
}

// onNotify prints progress from the daemon on stderr.
func (g *globals) onNotify(method string, params json.RawMessage) {
	if method != api.NotifyProgress {
		return
	}
	var p api.Progress
	if json.Unmarshal(params, &p) != nil {
		return
	}
	if p.Verbose && !g.verbose {
		return
	}
	switch {
	case p.Step == "warning":
		fmt.Fprintf(g.stderr, "warning: %s\n", p.Message)
	case p.Verbose:
		fmt.Fprintf(g.stderr, "  - %s\n", p.Step)
	case p.Message != "":
		fmt.Fprintf(g.stderr, "==> %s\n", p.Message)
	default:
		fmt.Fprintf(g.stderr, "==> %s\n", p.Step)
	}
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
