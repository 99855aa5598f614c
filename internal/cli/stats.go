package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func newVMStatsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats [VM...]",
		Short: "Show VMs' CPU, memory and disk use (all VMs when none is named)",
		Long: `Show the resource use of VMs: CPU of the VMM process in percent of one
CPU (a VM with two busy vCPUs shows 200), its resident (RSS) and virtual
(VSZ) memory, and the host space the system overlay and the work disk
take. bangerd samples running VMs every stats_poll_interval (10s by
default) and again when this command asks.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var entries []api.VMStatsEntry
			if err := g.call(cmd.Context(), api.MethodVMStats, api.Refs{Refs: args}, &entries); err != nil {
				return err
			}
			if asJSON {
				if entries == nil {
					entries = []api.VMStatsEntry{}
				}
				return printJSON(g.stdout, entries)
			}
			return printStatsTable(g.stdout, entries)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stats as JSON")
	return cmd
}

func printStatsTable(w io.Writer, entries []api.VMStatsEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCPU%\tRSS\tVSZ\tOVERLAY\tWORK\tSAMPLED")
	for _, e := range entries {
		s := e.Stats
		cpu, rss, vsz := "-", "-", "-"
		if e.State == model.VMStateRunning && s.RSSBytes > 0 {
			cpu = fmt.Sprintf("%.1f", s.CPUPercent)
			rss = model.HumanBytes(s.RSSBytes)
			vsz = model.HumanBytes(s.VSZBytes)
		}
		sampled := "never"
		if !s.CollectedAt.IsZero() {
			sampled = ago(s.CollectedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.State, cpu, rss, vsz,
			model.HumanBytes(s.SystemOverlayBytes), model.HumanBytes(s.WorkDiskBytes), sampled)
	}
	return tw.Flush()
}
