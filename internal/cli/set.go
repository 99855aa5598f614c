package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/config"
	"banger/internal/errdefs"
	"banger/internal/model"
)

func newVMSetCmd(g *globals) *cobra.Command {
	var vcpu int
	var memory, diskSize string
	var nat, noNAT, asJSON bool
	cmd := &cobra.Command{
		Use:   "set VM [--vcpu N] [--memory M] [--disk-size S] [--nat|--no-nat]",
		Short: "Change a VM's vCPUs, memory, work disk size or NAT",
		Long: `Change a VM's settings. On a running VM they take effect at its next start.
The work disk only grows (offline, before the VM boots); shrinking is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := setRequest(cmd, args[0], vcpu, memory, diskSize, nat, noNAT)
			if err != nil {
				return err
			}
			var rec model.VMRecord
			if err := g.call(cmd.Context(), api.MethodVMSet, req, &rec); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, rec)
			}
			fmt.Fprintf(g.stdout, "%s\tvcpu %d\tmemory %s\tdisk %s\tnat %v\n", rec.Name, rec.Spec.VCPUCount,
				model.FormatSizeBytes(int64(rec.Spec.MemoryMiB)<<20), model.FormatSizeBytes(rec.Spec.WorkDiskSizeBytes), rec.Spec.NATEnabled)
			if rec.State == model.VMStateRunning {
				fmt.Fprintf(g.stderr, "banger: %s is running: the changes take effect at its next start (banger vm restart %s)\n", rec.Name, rec.Name)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&vcpu, "vcpu", 0, "number of vCPUs")
	fl.StringVar(&memory, "memory", "", "memory, e.g. 4G or 2048 (MiB)")
	fl.StringVar(&diskSize, "disk-size", "", "work disk size, e.g. 20G (grow only)")
	fl.BoolVar(&nat, "nat", false, "let the VM reach the network outside the host (applies at once on a running VM)")
	fl.BoolVar(&noNAT, "no-nat", false, "cut the VM off from the network outside the host (applies at once)")
	fl.BoolVar(&asJSON, "json", false, "print the VM as JSON")
	return cmd
}

// setRequest validates vm set's flags.
func setRequest(cmd *cobra.Command, ref string, vcpu int, memory, diskSize string, nat, noNAT bool) (model.VMSetRequest, error) {
	req := model.VMSetRequest{IDOrName: ref}
	fl := cmd.Flags()
	if fl.Changed("vcpu") {
		if err := config.ValidateVCPU(vcpu); err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--vcpu: %w", err))
		}
		req.VCPUCount = &vcpu
	}
	if fl.Changed("memory") {
		mib, err := config.ParseMemory(memory)
		if err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--memory: %w", err))
		}
		req.MemoryMiB = &mib
	}
	if fl.Changed("disk-size") {
		n, err := model.ParseSize(diskSize)
		if err != nil {
			return req, errdefs.Invalid(fmt.Errorf("--disk-size: %w", err))
		}
		req.WorkDiskSizeBytes = &n
	}
	switch {
	case nat && noNAT:
		return req, errdefs.Invalid(errors.New("--nat and --no-nat cannot be used together"))
	case nat:
		req.NATEnabled = &nat
	case noNAT:
		off := false
		req.NATEnabled = &off
	}
	return req, nil
}

func newVMPruneCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [-f]",
		Short: "Delete every stopped (or failed) VM, after confirmation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			var vms []model.VMRecord
			if err := c.Call(cmd.Context(), api.MethodVMList, nil, &vms); err != nil {
				return err
			}
			var refs, names []string
			for _, v := range vms {
				if v.State.Prunable() {
					refs = append(refs, v.ID)
					names = append(names, v.Name)
				}
			}
			if len(refs) == 0 {
				fmt.Fprintln(g.stdout, "no stopped vms")
				return nil
			}
			if !force {
				fmt.Fprintf(g.stderr, "Delete %d stopped vm(s) with their disks: %s? [y/N] ", len(refs), strings.Join(names, ", "))
				answer, _ := bufio.NewReader(g.stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return errors.New("prune canceled")
				}
			}
			return g.lifecycle(cmd.Context(), api.MethodVMPrune, api.Refs{Refs: refs}, "delete", false)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return cmd
}
