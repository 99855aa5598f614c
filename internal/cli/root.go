// Package cli is the banger command line: one file per command group,
// each command an options struct and a run function. It is a stateless
// client of bangerd (started on demand) and execs the system ssh for
// interactive sessions and commands. Only cmd/banger imports it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"banger/internal/errdefs"
	"banger/internal/rpc"
)

// Version is the CLI's version, set at build time.
var Version = "dev"

// globals are the flags every command has.
type globals struct {
	verbose bool
	stdout  io.Writer
	stderr  io.Writer
	stdin   io.Reader
}

// ExitError carries an exit status that is not a failure of banger
// itself, such as the guest command's status in vm exec.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// NewRoot returns the banger command tree.
func NewRoot() *cobra.Command {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	root := &cobra.Command{
		Use:   "banger",
		Short: "Disposable Linux sandboxes on microVMs",
		Long: `banger gives you a clean, isolated Linux machine in one command.

  banger vm run                      boot a VM and open a shell in it
  banger vm run -- make test         boot a VM, run a command, exit with its status
  banger vm list                     show your VMs

The first run builds the default Debian image, which takes a few minutes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "show every step of long operations")
	root.AddCommand(newVMCmd(g), newImageCmd(g), newDaemonCmd(g), newSSHConfigCmd(g), newDoctorCmd(g), newKernelCmd(g))
	root.CompletionOptions.HiddenDefaultCmd = true
	return root
}

// Main runs the CLI and returns the process exit code.
func Main(ctx context.Context, args []string) int {
	root := NewRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	fmt.Fprintln(os.Stderr, "banger: "+errorLine(err))
	return 1
}

// errorLine renders err as one line, with the daemon's operation id.
func errorLine(err error) string {
	var rpcErr *rpc.Error
	if errors.As(err, &rpcErr) && rpcErr.OpID() != "" {
		return fmt.Sprintf("%s [%s]", errdefs.OneLine(err.Error()), rpcErr.OpID())
	}
	return errdefs.OneLine(err.Error())
}
