package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/config"
	"banger/internal/errdefs"
	"banger/internal/model"
)

func newVMCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Create, run and manage VMs",
	}
	cmd.AddCommand(
		newVMCreateCmd(g), newVMRunCmd(g),
		newVMLifecycleCmd(g, "start", "Start stopped VMs and wait until they answer SSH", api.MethodVMStart),
		newVMLifecycleCmd(g, "stop", "Power VMs off (killed when the guest does not power off in time)", api.MethodVMStop),
		newVMLifecycleCmd(g, "restart", "Stop and start VMs", api.MethodVMRestart),
		newVMKillCmd(g),
		newVMLifecycleCmd(g, "delete", "Delete VMs with their disks (running ones are killed)", api.MethodVMDelete),
		newVMSetCmd(g), newVMPruneCmd(g), newVMWorkspaceCmd(g),
		newVMListCmd(g), newVMShowCmd(g), newVMSSHCmd(g), newVMExecCmd(g), newVMLogsCmd(g),
		newVMStatsCmd(g), newVMHealthCmd(g), newVMPingCmd(g), newVMPortsCmd(g),
	)
	return cmd
}

// createFlags are the flags vm create and vm run share.
type createFlags struct {
	name, image, memory, diskSize, overlaySize string
	vcpu                                       int
	nat                                        bool
}

func (f *createFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "VM name (a DNS label: a-z, 0-9, '-'); random when empty")
	fl.StringVar(&f.image, "image", "", "image name (default: the configured default image, debian-bookworm)")
	fl.IntVar(&f.vcpu, "vcpu", 0, fmt.Sprintf("number of vCPUs (default %d)", model.DefaultVCPUCount))
	fl.StringVar(&f.memory, "memory", "", "memory, e.g. 2G or 1024 (MiB) (default 2G)")
	fl.StringVar(&f.diskSize, "disk-size", "", "work disk size mounted at /root, e.g. 8G (default 8G)")
	fl.StringVar(&f.overlaySize, "system-overlay-size", "", "copy-on-write space for the system disk, e.g. 8G (default 8G)")
	fl.BoolVar(&f.nat, "nat", false, "let the VM reach the network outside the host")
}

// request validates the flags into a create request.
func (f *createFlags) request(cmd *cobra.Command) (model.VMCreateRequest, error) {
	req := model.VMCreateRequest{Name: f.name, ImageName: f.image, NATEnabled: f.nat}
	if f.name != "" {
		if err := model.ValidateName(f.name); err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--name: %w", err))
		}
	}
	if cmd.Flags().Changed("vcpu") {
		if err := config.ValidateVCPU(f.vcpu); err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--vcpu: %w", err))
		}
		req.VCPUCount = f.vcpu
	}
	if cmd.Flags().Changed("memory") {
		mib, err := config.ParseMemory(f.memory)
		if err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--memory: %w", err))
		}
		req.MemoryMiB = mib
	}
	for _, s := range []struct {
		flag string
		raw  string
		dst  *int64
	}{{"disk-size", f.diskSize, &req.WorkDiskSizeBytes}, {"system-overlay-size", f.overlaySize, &req.SystemOverlaySizeByte}} {
		if !cmd.Flags().Changed(s.flag) {
			continue
		}
		n, err := model.ParseSize(s.raw)
		if err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--%s: %w", s.flag, err))
		}
		*s.dst = n
	}
	return req, nil
}

func newVMCreateCmd(g *globals) *cobra.Command {
	var f createFlags
	var noStart, asJSON bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a VM (and start it unless --no-start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd)
			if err != nil {
				return err
			}
			req.NoStart = noStart
			var rec model.VMRecord
			if err := g.call(cmd.Context(), api.MethodVMCreate, req, &rec); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, rec)
			}
			fmt.Fprintf(g.stdout, "%s\t%s\t%s\n", rec.Name, rec.State, rec.Runtime.GuestIP)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&noStart, "no-start", false, "create the VM without starting it")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the VM as JSON")
	return cmd
}

func newVMLifecycleCmd(g *globals, verb, short, method string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   verb + " VM...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.lifecycle(cmd.Context(), method, api.Refs{Refs: args}, verb, asJSON)
		},
	}
	if verb == "delete" {
		cmd.Aliases = []string{"rm"}
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}

func newVMKillCmd(g *globals) *cobra.Command {
	var signal string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "kill VM...",
		Short: "Send a signal (default KILL) to the VMs' VMM processes; works even when a guest is wedged",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.lifecycle(cmd.Context(), api.MethodVMKill, api.Refs{Refs: args, Signal: signal}, "kill", asJSON)
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal name or number")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}

// lifecycle calls a multi-VM method and prints one line per VM. It
// fails when any VM failed.
func (g *globals) lifecycle(ctx context.Context, method string, refs api.Refs, verb string, asJSON bool) error {
	var res api.VMResults
	if err := g.call(ctx, method, refs, &res); err != nil {
		return err
	}
	if asJSON {
		if err := printJSON(g.stdout, res.Results); err != nil {
			return err
		}
	}
	failed := 0
	for _, r := range res.Results {
		if r.Error != "" {
			failed++
			fmt.Fprintf(g.stderr, "banger: %s\n", resultLine(r))
			continue
		}
		if !asJSON && r.VM != nil {
			state := string(r.VM.State)
			if verb == "delete" {
				state = "deleted"
			}
			fmt.Fprintf(g.stdout, "%s\t%s\n", r.VM.Name, state)
		}
	}
	if failed > 0 {
		return &ExitError{Code: 1}
	}
	return nil
}

// resultLine renders a failed result as one line: the ref, the error and
// the operation id, as errorLine does for a whole call.
func resultLine(r api.VMResult) string {
	line := r.Ref + ": " + errdefs.OneLine(r.Error)
	if r.OpID != "" {
		line += " [" + r.OpID + "]"
	}
	return line
}

func newVMListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ps", "ls"},
		Short:   "List VMs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var vms []model.VMRecord
			if err := g.call(cmd.Context(), api.MethodVMList, nil, &vms); err != nil {
				return err
			}
			if asJSON {
				if vms == nil {
					vms = []model.VMRecord{}
				}
				return printJSON(g.stdout, vms)
			}
			return printVMTable(g.stdout, vms)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print VMs as JSON")
	return cmd
}

func newVMShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show VM",
		Short: "Show a VM's details",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rec model.VMRecord
			if err := g.call(cmd.Context(), api.MethodVMShow, api.Ref{Ref: args[0]}, &rec); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, rec)
			}
			printVM(g.stdout, rec)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the VM as JSON")
	return cmd
}
