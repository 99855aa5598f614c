package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/paths"
	"banger/internal/rpc"
)

func newDaemonCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Inspect or stop bangerd",
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether bangerd runs, and how",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			layout, err := paths.Resolve()
			if err != nil {
				return err
			}
			c := &rpc.Client{Socket: layout.Socket()}
			var st api.DaemonStatus
			if err := c.Call(cmd.Context(), api.MethodDaemonStatus, nil, &st); err != nil {
				if errors.Is(err, rpc.ErrNoDaemon) {
					if asJSON {
						return printJSON(g.stdout, map[string]any{"running": false, "socket": layout.Socket()})
					}
					fmt.Fprintf(g.stdout, "bangerd is not running (socket %s)\n", layout.Socket())
					return &ExitError{Code: 3}
				}
				return err
			}
			if asJSON {
				return printJSON(g.stdout, st)
			}
			fmt.Fprintf(g.stdout, "bangerd %s running, pid %d, up %s\n", st.Version, st.PID, time.Since(st.StartedAt).Round(time.Second))
			fmt.Fprintf(g.stdout, "socket:  %s\nstate:   %s\nvmm:     %s (%s)\n", st.Socket, st.StateDir, st.VMM, st.Accel)
			if st.AccelNote != "" {
				fmt.Fprintf(g.stdout, "note:    %s\n", st.AccelNote)
			}
			fmt.Fprintf(g.stdout, "vms:     %d running, %d total\nimages:  %d\n", st.VMsRunning, st.VMsTotal, st.Images)
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print status as JSON")
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop bangerd (running VMs keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			layout, err := paths.Resolve()
			if err != nil {
				return err
			}
			c := &rpc.Client{Socket: layout.Socket()}
			if err := c.Call(cmd.Context(), api.MethodDaemonStop, nil, nil); err != nil {
				if errors.Is(err, rpc.ErrNoDaemon) {
					fmt.Fprintln(g.stdout, "bangerd is not running")
					return nil
				}
				return err
			}
			// Stopped means done: the daemon removes its pid file after
			// its last cleanup (the TAP pool), once it stopped answering.
			for i := 0; i < 300; i++ {
				err := c.Call(cmd.Context(), api.MethodDaemonStatus, nil, nil)
				if _, perr := os.Stat(layout.PIDFile()); errors.Is(err, rpc.ErrNoDaemon) && errors.Is(perr, os.ErrNotExist) {
					fmt.Fprintln(g.stdout, "bangerd stopped")
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return errors.New("bangerd did not stop within 30s")
		},
	}
	cmd.AddCommand(status, stop)
	return cmd
}
