package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"banger/internal/api"
)

// sshArgs builds the arguments of the system ssh for a guest: banger's
// key and known_hosts only, strict host key checking, no agent, and the
// remote command (already quoted) if any.
func sshArgs(info api.SSHInfo, tty bool, batch bool, remote string) []string {
	args := []string{
		"-i", info.KeyPath,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "UserKnownHostsFile=\"" + info.KnownHosts + "\"",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
		"-o", "ServerAliveInterval=15",
	}
	if batch {
		args = append(args, "-o", "BatchMode=yes")
	}
	if tty {
		args = append(args, "-t")
	} else if remote != "" {
		args = append(args, "-T")
	}
	args = append(args, info.User+"@"+info.GuestIP)
	if remote != "" {
		args = append(args, "--", remote)
	}
	return args
}

// remoteCommand quotes argv for the guest's shell, optionally in dir.
func remoteCommand(argv []string, dir string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	cmd := strings.Join(quoted, " ")
	if dir != "" {
		cmd = "cd " + shellQuote(dir) + " && " + cmd
	}
	return cmd
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runSSH runs the system ssh attached to this terminal and returns the
// remote status as an ExitError when it is not 0. ssh's own failures
// (status 255) become an error that says so.
func (g *globals) runSSH(ctx context.Context, info api.SSHInfo, argv []string) error {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return errors.New("ssh not found in PATH: install openssh-client")
	}
	remote := ""
	switch {
	case len(argv) > 0:
		remote = remoteCommand(argv, info.WorkDir)
	case info.WorkDir != "":
		// A login shell that starts in the workspace.
		remote = "cd " + shellQuote(info.WorkDir) + ` && exec "${SHELL:-/bin/sh}" -l`
	}
	interactive := len(argv) == 0
	tty := interactive && isTerminal(os.Stdin)
	cmd := exec.CommandContext(ctx, sshBin, sshArgs(info, tty, !interactive, remote)...)
	cmd.Stdin = g.stdin
	cmd.Stdout = g.stdout
	cmd.Stderr = g.stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if code == 255 {
			return fmt.Errorf("ssh to %s (%s) failed; is it running? try banger vm show %s", info.Name, info.GuestIP, info.Name)
		}
		if code < 0 {
			code = 1
		}
		return &ExitError{Code: code}
	}
	return err
}

func newVMSSHCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh VM [-- CMD...]",
		Short: "Open a shell in a running VM (or run CMD)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var info api.SSHInfo
			if err := g.call(cmd.Context(), api.MethodVMSSHInfo, api.Ref{Ref: args[0]}, &info); err != nil {
				return err
			}
			info.WorkDir = ""
			return g.runSSH(cmd.Context(), info, args[1:])
		},
	}
}

func newVMExecCmd(g *globals) *cobra.Command {
	var guestPath string
	var autoPrepare bool
	cmd := &cobra.Command{
		Use:   "exec VM -- CMD [ARG...]",
		Short: "Run a command in a running VM; its exit status becomes banger's",
		Long: `Run a command in a running VM over SSH. Its stdout and stderr stay
apart, and banger exits with the command's exit status. The command runs
in the VM's prepared workspace, if any (--guest-path overrides), and
banger warns when the host repository changed since that prepare
(--auto-prepare copies it again first).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return errors.New("usage: banger vm exec VM -- CMD [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			var info api.SSHInfo
			if err := c.Call(cmd.Context(), api.MethodVMSSHInfo, api.Ref{Ref: args[0]}, &info); err != nil {
				return err
			}
			if err := g.checkDrift(cmd.Context(), c, &info, autoPrepare); err != nil {
				return err
			}
			if cmd.Flags().Changed("guest-path") {
				info.WorkDir = guestPath
			}
			return g.runSSH(cmd.Context(), info, args[1:])
		},
	}
	cmd.Flags().StringVar(&guestPath, "guest-path", "", "directory in the guest to run the command in")
	cmd.Flags().BoolVar(&autoPrepare, "auto-prepare", false, "copy the workspace again first when the host repository changed")
	return cmd
}

// sshPipe runs a remote shell command on the guest in batch mode with
// the given stdin and stdout; the remote stderr goes to the CLI's. A
// non-zero remote status is an error that says what ran.
func (g *globals) sshPipe(ctx context.Context, info api.SSHInfo, what, remote string, stdin io.Reader, stdout io.Writer) error {
	return g.sshPipeStderr(ctx, info, what, remote, stdin, stdout, g.stderr)
}

// sshPipeStderr is sshPipe with the remote command's stderr going to
// stderr.
func (g *globals) sshPipeStderr(ctx context.Context, info api.SSHInfo, what, remote string, stdin io.Reader, stdout, stderr io.Writer) error {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return errors.New("ssh not found in PATH: install openssh-client")
	}
	cmd := exec.CommandContext(ctx, sshBin, sshArgs(info, false, true, remote)...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) && exitErr.ExitCode() == 255 {
			return fmt.Errorf("%s: ssh to %s (%s) failed", what, info.Name, info.GuestIP)
		}
		return fmt.Errorf("%s in %s: %w", what, info.Name, err)
	}
	return nil
}
