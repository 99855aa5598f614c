package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/rpc"
	"banger/internal/workspace"
)

// prepareFlags are the workspace flags of vm run and vm workspace prepare.
type prepareFlags struct {
	mode             string
	includeUntracked bool
	branch, from     string
}

func (f *prepareFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", "", "how the repository reaches the guest: shallow_overlay (default), full_copy or metadata_only")
	fl.BoolVar(&f.includeUntracked, "include-untracked", false, "also send untracked files that git does not ignore")
	fl.StringVar(&f.branch, "branch", "", "create and check out this branch in the guest copy")
	fl.StringVar(&f.from, "from", "", "with --branch: start the branch at this commit or ref instead of HEAD")
}

func (f *prepareFlags) check() error {
	mode, err := workspace.ParseMode(f.mode)
	if err != nil {
		return err
	}
	if f.from != "" && f.branch == "" {
		return errors.New("--from needs --branch")
	}
	if f.branch != "" && mode == model.WorkspacePrepareModeMetadataOnly {
		return errors.New("--branch needs a copy in the guest; --mode metadata_only copies nothing")
	}
	return nil
}

// resolve checks the branch name and turns --from into the commit id it
// names in repo, so that bad values fail before anything is made.
func (f *prepareFlags) resolve(ctx context.Context, repo workspace.Repo) error {
	if f.branch != "" {
		if err := workspace.CheckBranchName(ctx, f.branch); err != nil {
			return err
		}
	}
	if f.from != "" {
		id, err := workspace.ResolveCommit(ctx, repo, f.from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		f.from = id
	}
	return nil
}

// options are the plan options the flags ask for.
func (f *prepareFlags) options(mode model.WorkspacePrepareMode) workspace.Options {
	return workspace.Options{Mode: mode, IncludeUntracked: f.includeUntracked, From: f.from}
}

func newVMWorkspaceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workspace",
		Short: "Copy a repository into a VM and bring changes back",
	}
	cmd.AddCommand(newWorkspacePrepareCmd(g), newWorkspaceExportCmd(g))
	return cmd
}

func newWorkspacePrepareCmd(g *globals) *cobra.Command {
	var f prepareFlags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prepare VM [PATH]",
		Short: "Copy the repository at PATH (default .) into the VM's /root/<repo-name>",
		Long: `Copy a repository into a running VM at /root/<repo-name>, replacing an
earlier copy. Modes:

  shallow_overlay  a shallow clone of HEAD plus your tracked working tree
                   byte for byte (uncommitted changes included) (default)
  full_copy        the repository as it is, .git and submodules included
  metadata_only    record source, HEAD and branch; copy nothing

Gitignored files never go in; untracked ones only with --include-untracked.
--dry-run lists what would be sent, with sizes, and sends nothing.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			path := "."
			if len(args) == 2 {
				path = args[1]
			}
			if dryRun {
				return g.dryRun(cmd.Context(), path, f)
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			_, err = g.prepare(cmd.Context(), c, args[0], path, f)
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be sent, with sizes and the total, and send nothing")
	return cmd
}

// dryRun prints what a prepare of path would send.
func (g *globals) dryRun(ctx context.Context, path string, f prepareFlags) error {
	repo, err := workspace.Inspect(ctx, path)
	if err != nil {
		return err
	}
	if err := f.resolve(ctx, repo); err != nil {
		return err
	}
	mode, _ := workspace.ParseMode(f.mode)
	plan, err := workspace.NewPlan(ctx, repo, f.options(mode))
	if err != nil {
		return err
	}
	defer plan.Close()
	return workspace.WriteList(g.stdout, plan)
}

// prepare copies the repository at path into the VM ref and records the
// workspace on it.
func (g *globals) prepare(ctx context.Context, c *rpc.Client, ref, path string, f prepareFlags) (model.VMWorkspace, error) {
	repo, err := workspace.Inspect(ctx, path)
	if err != nil {
		return model.VMWorkspace{}, err
	}
	mode, err := workspace.ParseMode(f.mode)
	if err != nil {
		return model.VMWorkspace{}, err
	}
	if err := f.resolve(ctx, repo); err != nil {
		return model.VMWorkspace{}, err
	}
	var info api.SSHInfo
	if err := c.Call(ctx, api.MethodVMSSHInfo, api.Ref{Ref: ref}, &info); err != nil {
		return model.VMWorkspace{}, err
	}
	// The fingerprint is read while the copy runs.
	type fpResult struct {
		fp  string
		err error
	}
	fpc := make(chan fpResult, 1)
	go func() {
		fp, err := workspace.Fingerprint(ctx, repo)
		fpc <- fpResult{fp, err}
	}()
	guestPath := workspace.DefaultGuestPath(repo)
	if mode != model.WorkspacePrepareModeMetadataOnly {
		if err := g.copyWorkspace(ctx, c, info, repo, guestPath, mode, f); err != nil {
			return model.VMWorkspace{}, err
		}
	} else {
		guestPath = ""
	}
	fp := <-fpc
	if fp.err != nil {
		return model.VMWorkspace{}, fp.err
	}
	fingerprint := fp.fp
	ws := model.VMWorkspace{
		GuestPath:        guestPath,
		SourcePath:       repo.Path,
		HeadCommit:       repo.HeadCommit,
		Branch:           repo.Branch,
		Mode:             mode,
		IncludeUntracked: f.includeUntracked,
		GuestBranch:      f.branch,
		GuestBranchFrom:  f.from,
		Fingerprint:      fingerprint,
	}
	var rec model.VMRecord
	if err := c.Call(ctx, api.MethodVMWorkspaceSet, api.WorkspaceSet{Ref: info.Name, Workspace: ws}, &rec); err != nil {
		return model.VMWorkspace{}, err
	}
	return rec.Workspace, nil
}

// copyWorkspace plans repo and streams it into guestPath: through the
// daemon and the guest agent when the VM has one (no SSH handshake, no
// encryption: many times faster under software emulation), else over
// SSH.
func (g *globals) copyWorkspace(ctx context.Context, c *rpc.Client, info api.SSHInfo, repo workspace.Repo, guestPath string, mode model.WorkspacePrepareMode, f prepareFlags) error {
	plan, err := workspace.NewPlan(ctx, repo, f.options(mode))
	if err != nil {
		return err
	}
	defer plan.Close()
	via := "agent"
	err = c.CallStream(ctx, api.MethodVMWorkspaceCopy, api.WorkspaceCopy{Ref: info.Name, GuestPath: guestPath}, func(w io.Writer) error {
		_, err := workspace.WriteTar(ctx, w, plan)
		return err
	}, nil)
	if errors.Is(err, rpc.ErrStreamNotStarted) && errors.Is(err, errdefs.ErrUnavailable) {
		fmt.Fprintf(g.stderr, "note: %s; copying over SSH\n", strings.TrimPrefix(err.Error(), rpc.ErrStreamNotStarted.Error()+": "))
		via = "ssh"
		err = g.copyOverSSH(ctx, info, guestPath, plan)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "==> %s copied to %s:%s (%s, %d entries, %s, over %s)\n", repo.Root, info.Name, guestPath, mode, len(plan.Entries), model.HumanBytes(plan.TotalBytes), via)
	if f.branch != "" {
		branch, err := workspace.BranchCommand(ctx, guestPath, f.branch, f.from)
		if err != nil {
			return err
		}
		if err := g.sshPipe(ctx, info, "create branch "+f.branch, workspace.ShellCommand(branch), nil, io.Discard); err != nil {
			return err
		}
	}
	return nil
}

// copyOverSSH streams plan into guestPath over SSH.
func (g *globals) copyOverSSH(ctx context.Context, info api.SSHInfo, guestPath string, plan *workspace.Plan) error {
	extract, err := workspace.ExtractCommand(guestPath)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := workspace.WriteTar(ctx, pw, plan)
		pw.CloseWithError(err)
	}()
	err = g.sshPipe(ctx, info, "copy the workspace", workspace.ShellCommand(extract), pr, io.Discard)
	pr.Close()
	return err
}

// checkDrift warns when the host repository of a prepared workspace has
// moved since the prepare, or prepares again with autoPrepare.
func (g *globals) checkDrift(ctx context.Context, c *rpc.Client, info *api.SSHInfo, autoPrepare bool) error {
	ws := info.Workspace
	if ws.SourcePath == "" || ws.Fingerprint == "" {
		if autoPrepare {
			return fmt.Errorf("--auto-prepare: no workspace was prepared on %s yet; run banger vm workspace prepare %s PATH", info.Name, info.Name)
		}
		return nil
	}
	if _, err := os.Stat(ws.SourcePath); err != nil {
		return nil // prepared from elsewhere; nothing to compare
	}
	repo, err := workspace.Inspect(ctx, ws.SourcePath)
	if err != nil {
		return nil
	}
	now, err := workspace.Fingerprint(ctx, repo)
	if err != nil || now == ws.Fingerprint {
		return nil
	}
	if !autoPrepare {
		fmt.Fprintf(g.stderr, "warning: %s changed since it was prepared in %s (HEAD or tracked files); use --auto-prepare or banger vm workspace prepare %s %s\n",
			ws.SourcePath, info.Name, info.Name, ws.SourcePath)
		return nil
	}
	fresh, err := g.prepare(ctx, c, info.Name, ws.SourcePath, prepareFlags{
		mode:             string(ws.Mode),
		includeUntracked: ws.IncludeUntracked,
		branch:           ws.GuestBranch,
		from:             ws.GuestBranchFrom,
	})
	if err != nil {
		return err
	}
	info.Workspace = fresh
	info.WorkDir = fresh.GuestPath
	return nil
}

func newWorkspaceExportCmd(g *globals) *cobra.Command {
	var base, output string
	cmd := &cobra.Command{
		Use:   "export VM [--base-commit REF] [--output FILE]",
		Short: "Write a binary-safe patch of everything changed in the guest copy",
		Long: `Write a patch of everything changed in the VM's workspace copy since the
prepare (new, modified, deleted, renamed and binary files), without
touching the guest's own git index. Apply it on the host with git apply.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var info api.SSHInfo
			if err := g.call(ctx, api.MethodVMSSHInfo, api.Ref{Ref: args[0]}, &info); err != nil {
				return err
			}
			ws := info.Workspace
			if ws.GuestPath == "" {
				return fmt.Errorf("no workspace copy in %s: prepare one with banger vm workspace prepare %s PATH", info.Name, info.Name)
			}
			if base == "" {
				base = ws.HeadCommit
			} else if repo, err := workspace.Inspect(ctx, ws.SourcePath); err == nil {
				// A ref of the host repository (say main, which a
				// shallow copy does not have) becomes its commit id;
				// one the host does not know is left to the guest.
				if id, err := workspace.ResolveCommit(ctx, repo, base); err == nil {
					base = id
				}
			}
			script, err := workspace.ExportCommand(ws.GuestPath, base)
			if err != nil {
				return err
			}
			out := g.stdout
			var file *os.File
			if output != "" && output != "-" {
				if file, err = os.Create(output); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				out = file
			}
			err = g.sshPipe(ctx, info, "export the workspace", workspace.ShellCommand(script), nil, out)
			if file != nil {
				if cerr := file.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					os.Remove(output)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&base, "base-commit", "", "commit or ref to diff against (default: HEAD at prepare time); the guest copy must hold it")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the patch to FILE instead of stdout")
	return cmd
}
