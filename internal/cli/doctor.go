package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"banger/internal/config"
	"banger/internal/doctor"
	"banger/internal/errdefs"
	"banger/internal/paths"
)

func newDoctorCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether this host can run banger",
		Long: `Check the host: KVM, the VMM binaries (QEMU, Firecracker and its jailer),
device-mapper, loop devices, TUN, nftables, e2fsprogs, qemu-img,
mmdebstrap/debootstrap, ssh, the daemon's socket, its DNS listener and the
free disk under the state dir. Each line says PASS, WARN (banger works
with less) or FAIL (it cannot work), with the fix. Exits 1 when a check
fails. It does not start bangerd.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			layout, err := paths.Resolve()
			if err != nil {
				return err
			}
			checks := []doctor.Check{}
			cfg, err := config.Load(layout)
			if err != nil {
				// Check the rest with the defaults.
				cfg = config.Default(layout)
				checks = append(checks, doctor.Check{Name: "config", Status: doctor.Fail,
					Detail: errdefs.OneLine(err.Error()), Fix: "fix " + layout.ConfigFile()})
			}
			checks = append(checks, doctor.Run(cmd.Context(), doctor.Options{Layout: layout, Config: cfg})...)
			if asJSON {
				if err := printJSON(g.stdout, checks); err != nil {
					return err
				}
			} else if err := printDoctorTable(g.stdout, checks); err != nil {
				return err
			}
			if doctor.Failed(checks) {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON")
	return cmd
}

// printDoctorTable prints one line per check; a check that did not pass
// gets its fix on the next line, under the detail.
func printDoctorTable(w io.Writer, checks []doctor.Check) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tDETAIL")
	for _, c := range checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Status, c.Name, c.Detail)
		if c.Status != doctor.Pass && c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	return tw.Flush()
}
