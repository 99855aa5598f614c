package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

// The commands below ask a running VM's guest agent (banger-agent) over
// its private channel; they need no network and no SSH.

func newVMHealthCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "health VM",
		Short: "Ask the guest agent how the VM is (uptime, load, memory)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var h api.VMHealth
			if err := g.call(cmd.Context(), api.MethodVMHealth, api.Ref{Ref: args[0]}, &h); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, h)
			}
			x := h.Health
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "vm\t%s\n", h.Name)
			fmt.Fprintf(tw, "agent\t%s (protocol %d)\n", x.Version, x.Protocol)
			fmt.Fprintf(tw, "hostname\t%s\n", x.Hostname)
			fmt.Fprintf(tw, "kernel\t%s\n", x.Kernel)
			fmt.Fprintf(tw, "uptime\t%s\n", (time.Duration(x.UptimeSeconds) * time.Second).String())
			fmt.Fprintf(tw, "load\t%.2f %.2f %.2f\n", x.LoadAvg[0], x.LoadAvg[1], x.LoadAvg[2])
			fmt.Fprintf(tw, "memory\t%s available of %s\n", model.HumanBytes(x.MemAvailableBytes), model.HumanBytes(x.MemTotalBytes))
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func newVMPingCmd(g *globals) *cobra.Command {
	var count int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ping VM",
		Short: "Measure round trips to the guest agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 {
				return fmt.Errorf("--count %d: must be at least 1", count)
			}
			var all []api.VMPing
			for i := 0; i < count; i++ {
				var p api.VMPing
				if err := g.call(cmd.Context(), api.MethodVMPing, api.Ref{Ref: args[0]}, &p); err != nil {
					return err
				}
				all = append(all, p)
				if !asJSON {
					fmt.Fprintf(g.stdout, "agent of %s: seq=%d time=%.2f ms\n", p.Name, i+1, float64(p.RTTMicros)/1000)
				}
			}
			if asJSON {
				return printJSON(g.stdout, all)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&count, "count", "c", 1, "number of round trips")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the round trips as JSON")
	return cmd
}

func newVMPortsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ports VM",
		Short: "List the guest's listening TCP and UDP sockets with NAME.vm endpoints",
		Long: `List the sockets listening in the guest, with the process that owns each,
its NAME.vm:PORT endpoint (resolvable through banger's .vm DNS, see
docs/dns-routing.md) and an http:// link for listeners that answer HTTP
from the host. Loopback-only listeners have no endpoint.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.VMPorts
			if err := g.call(cmd.Context(), api.MethodVMPorts, api.Ref{Ref: args[0]}, &p); err != nil {
				return err
			}
			if asJSON {
				if p.Ports == nil {
					p.Ports = []api.Port{}
				}
				return printJSON(g.stdout, p)
			}
			return printPorts(g.stdout, p.Ports)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the listeners as JSON")
	return cmd
}

func printPorts(w io.Writer, ports []api.Port) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tADDRESS\tPORT\tPROCESS\tPID\tENDPOINT\tURL")
	for _, p := range ports {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", p.Proto, p.Address, p.Port, dash(p.Process), p.PID, dash(p.Endpoint), dash(p.URL))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
