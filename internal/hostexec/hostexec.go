// Package hostexec runs host tools (qemu-img, mkfs.ext4, debugfs,
// mmdebstrap, ...) the one way banger runs them: with a context, and with
// the tool's stderr folded into the returned error so failures explain
// themselves. Packages build argument lists with pure, tested functions
// and hand them here.
package hostexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
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
	msg := strings.TrimSpace(e.Stderr)
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 && len(msg) > 400 {
		msg = msg[i+1:]
	}
	if msg == "" {
		return fmt.Sprintf("%s: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Name, e.Err, msg)
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
	if err := cmd.Run(); err != nil {
		e := &Error{Name: name, Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			e.ExitCode = exitErr.ExitCode()
		}
		return stdout.Bytes(), e
	}
	return stdout.Bytes(), nil
}

// Look reports whether a tool is on PATH, with an error that says which
// package provides it.
func Look(name, debianPackage string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH: install the %s package (sudo apt-get install %s)", name, debianPackage, debianPackage)
	}
	return path, nil
}
