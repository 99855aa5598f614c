package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
	"banger/internal/workspace"
)

func newVMRunCmd(g *globals) *cobra.Command {
	var f createFlags
	var pf prepareFlags
	var rm, detach bool
	cmd := &cobra.Command{
		Use:   "run [flags] [PATH] [-- CMD [ARG...]]",
		Short: "Create and start a VM, copy PATH in, then open a shell or run CMD",
		Long: `Create and start a VM, wait until it answers SSH, then open a shell in it,
or run CMD and exit with its status. With PATH, the repository there is
copied to /root/<repo-name> first (see banger vm workspace prepare) and
the shell or CMD starts in it.

  banger vm run                              a shell in a fresh VM
  banger vm run ./repo -- make test          test a repository in a fresh VM
  banger vm run --rm -- uname -a             run a command, then delete the VM
  banger vm run -d --name dev                start a VM in the background

The first run builds the default image, which takes a few minutes.`,
		Args: func(cmd *cobra.Command, args []string) error {
			paths := len(args)
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				paths = dash
			}
			if paths > 1 {
				return errors.New("at most one PATH before --: put the command after --, e.g. banger vm run ./repo -- make test")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if detach && rm {
				return errors.New("--rm and -d cannot be used together")
			}
			path, argv := "", args
			if dash := cmd.ArgsLenAtDash(); dash > 0 || (dash < 0 && len(args) == 1) {
				path, argv = args[0], args[1:]
			}
			if path == "" && (pf.branch != "" || pf.from != "" || pf.mode != "" || pf.includeUntracked) {
				return errors.New("--branch, --from, --mode and --include-untracked need a PATH")
			}
			if err := pf.check(); err != nil {
				return err
			}
			req, err := f.request(cmd)
			if err != nil {
				return err
			}
			if detach && len(argv) > 0 {
				return errors.New("-d starts the VM in the background; it takes no command")
			}
			if path != "" {
				// Bad paths, branch names and refs fail before any
				// VM is made.
				repo, err := workspace.Inspect(cmd.Context(), path)
				if err != nil {
					return err
				}
				if err := pf.resolve(cmd.Context(), repo); err != nil {
					return err
				}
			}
			return g.runVM(cmd.Context(), req, path, pf, argv, rm, detach)
		},
	}
	f.register(cmd)
	pf.register(cmd)
	cmd.Flags().BoolVar(&rm, "rm", false, "delete the VM when the shell or command ends")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "start the VM and return; connect later with banger vm ssh")
	return cmd
}

func (g *globals) runVM(ctx context.Context, req model.VMCreateRequest, path string, pf prepareFlags, argv []string, rm, detach bool) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	var rec model.VMRecord
	if err := c.Call(ctx, api.MethodVMCreate, req, &rec); err != nil {
		return err
	}
	runErr := func() error {
		if path != "" {
			if _, err := g.prepare(ctx, c, rec.ID, path, pf); err != nil {
				return err
			}
		}
		if detach {
			fmt.Fprintf(g.stdout, "%s\t%s\t%s\n", rec.Name, rec.State, rec.Runtime.GuestIP)
			return nil
		}
		if g.verbose || len(argv) == 0 {
			fmt.Fprintf(g.stderr, "==> %s is running at %s\n", rec.Name, rec.Runtime.GuestIP)
		}
		var info api.SSHInfo
		if err := c.Call(ctx, api.MethodVMSSHInfo, api.Ref{Ref: rec.ID}, &info); err != nil {
			return err
		}
		return g.runSSH(ctx, info, argv)
	}()
	if rm {
		var res api.VMResults
		if err := c.Call(context.WithoutCancel(ctx), api.MethodVMDelete, api.Refs{Refs: []string{rec.ID}}, &res); err != nil {
			return errors.Join(runErr, fmt.Errorf("delete vm %q: %w", rec.Name, err))
		}
	}
	return runErr
}
