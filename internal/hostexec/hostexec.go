// Package hostexec runs host tools (qemu-img, mkfs.ext4, debugfs,
// mmdebstrap, ...) the one way banger runs them: with a context whose end
// kills the tool and everything it forked, and with the tool's stderr
// folded into the returned error so failures explain themselves. Packages build argument lists with pure, tested functions
// and hand them here.
package hostexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Error is a failed command with what it printed on stderr.
type Error struct {
	Name     string
	Args     []string
	ExitCode int
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	msg := stderrSummary(e.Stderr)
	if msg == "" {
		return fmt.Sprintf("%s: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Name, e.Err, msg)
}

// maxStderrMessage bounds how much of stderr an error message carries.
const maxStderrMessage = 400

// stderrSummary is what an error shows of stderr: all of it when short,
// else its last line, itself cut to its last maxStderrMessage bytes.
func stderrSummary(stderr string) string {
	msg := strings.TrimSpace(stderr)
	if len(msg) <= maxStderrMessage {
		return msg
	}
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = strings.TrimSpace(msg[i+1:])
	}
	if len(msg) > maxStderrMessage {
		msg = "..." + strings.ToValidUTF8(msg[len(msg)-maxStderrMessage:], "")
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs name with args and returns its stdout.
func Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return RunStdin(ctx, nil, name, args...)
}

// RunStdin is Run with stdin fed from in (nil for none).
func RunStdin(ctx context.Context, in []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	// The command gets its own process group so that canceling ctx kills
	// the children it forked too (mmdebstrap's apt and dpkg); otherwise
	// they would live on and hold the output pipes open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	// Descendants that left the group (daemons) must not keep Run waiting
	// on pipes they inherited.
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		e := &Error{Name: name, Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			e.ExitCode = exitErr.ExitCode()
		}
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			e.Err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return stdout.Bytes(), e
	}
	return stdout.Bytes(), nil
}

// waitDelay is how long Run waits for the output pipes to close after
// the command exited or was killed.
const waitDelay = 5 * time.Second

// Look reports whether a tool is on PATH, with an error that says which
// package provides it.
func Look(name, debianPackage string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH: install the %s package (sudo apt-get install %s)", name, debianPackage, debianPackage)
	}
	return path, nil
}
