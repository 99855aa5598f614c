package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func newVMRunCmd(g *globals) *cobra.Command {
	var f createFlags
	var rm, detach bool
	cmd := &cobra.Command{
		Use:   "run [flags] [-- CMD [ARG...]]",
		Short: "Create and start a VM, then open a shell in it or run CMD",
		Long: `Create and start a VM, wait until it answers SSH, then open a shell in it,
or run CMD and exit with its status.

  banger vm run                              a shell in a fresh VM
  banger vm run --rm -- uname -a             run a command, then delete the VM
  banger vm run -d --name dev                start a VM in the background

The first run builds the default image, which takes a few minutes.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash > 0 || (dash < 0 && len(args) > 0) {
				return errors.New("unexpected argument before --: put the command after --, e.g. banger vm run -- make test")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if detach && rm {
				return errors.New("--rm and -d cannot be used together")
			}
			req, err := f.request(cmd)
			if err != nil {
				return err
			}
			if detach && len(args) > 0 {
				return errors.New("-d starts the VM in the background; it takes no command")
			}
			return g.runVM(cmd.Context(), req, args, rm, detach)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&rm, "rm", false, "delete the VM when the shell or command ends")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "start the VM and return; connect later with banger vm ssh")
	return cmd
}

func (g *globals) runVM(ctx context.Context, req model.VMCreateRequest, argv []string, rm, detach bool) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	var rec model.VMRecord
	if err := c.Call(ctx, api.MethodVMCreate, req, &rec); err != nil {
		return err
	}
	if detach {
		fmt.Fprintf(g.stdout, "%s\t%s\t%s\n", rec.Name, rec.State, rec.Runtime.GuestIP)
		return nil
	}
	if g.verbose || len(argv) == 0 {
		fmt.Fprintf(g.stderr, "==> %s is running at %s\n", rec.Name, rec.Runtime.GuestIP)
	}
	var info api.SSHInfo
	runErr := c.Call(ctx, api.MethodVMSSHInfo, api.Ref{Ref: rec.ID}, &info)
	if runErr == nil {
		runErr = g.runSSH(ctx, info, argv)
	}
	if rm {
		var res api.VMResults
		if err := c.Call(context.WithoutCancel(ctx), api.MethodVMDelete, api.Refs{Refs: []string{rec.ID}}, &res); err != nil {
			return errors.Join(runErr, fmt.Errorf("delete vm %q: %w", rec.Name, err))
		}
	}
	return runErr
}
