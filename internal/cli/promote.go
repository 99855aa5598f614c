package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func newImagePromoteCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "promote VM NAME",
		Short: "Make a stopped VM's root filesystem a new image",
		Long: `Make the root filesystem of a VM that is not running the new image NAME.
The VM's system disk is flattened into a standalone ext4 image, shrunk to its
content plus headroom; its SSH host keys, machine id and hostname are removed
so that each VM of the new image gets its own. The kernel, initrd and work
disk seed come from the VM's image.

Only the system disk is promoted: /root is on the VM's work disk, and VMs of
the new image start with the work seed of the VM's image.

  banger vm stop dev
  banger image promote dev dev-tools
  banger vm run --image dev-tools`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var img model.Image
			req := api.ImagePromoteRequest{VM: args[0], Name: args[1]}
			if err := g.call(cmd.Context(), api.MethodImagePromote, req, &img); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, img)
			}
			fmt.Fprintf(g.stdout, "%s\t%s\n", img.Name, img.ID[:12])
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the image as JSON")
	return cmd
}

func newImageCacheCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Manage the caches of image pulls and builds",
	}
	cmd.AddCommand(newImageCachePruneCmd(g))
	return cmd
}

func newImageCachePruneCmd(g *globals) *cobra.Command {
	var req api.CachePruneRequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "prune [--dry-run] [--packages]",
		Short: "Remove cached layers, build leftovers, kernels and modules disks no image needs",
		Long: `Remove what the caches hold that no image needs: OCI layers no pulled image
was made of, leftovers of pulls, builds, kernel extractions and modules disks
that died, build logs, extracted kernels no image boots, and modules disks no
image's kernel needs. Files less than a minute old and anything a running pull
or build uses are kept.

--packages also empties the Debian package cache image builds download into
(package_cache_dir). It is shared by every banger home on the host: do not use
it while another one builds an image; the next build downloads the packages
again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res api.CachePruneResult
			if err := g.call(cmd.Context(), api.MethodImageCachePrune, req, &res); err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(g.stdout, res); err != nil {
					return err
				}
			} else if err := printPruneResult(g.stdout, res); err != nil {
				return err
			}
			if n := failedEntries(res); n > 0 {
				return fmt.Errorf("%d of %d cache entries could not be removed", n, len(res.Entries))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "list what would be removed, remove nothing")
	cmd.Flags().BoolVar(&req.Packages, "packages", false, "also empty the Debian package cache shared by every banger home on the host")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// printPruneResult prints one line per entry and the total, then the
// notes on what was kept.
func printPruneResult(w io.Writer, res api.CachePruneResult) error {
	if len(res.Entries) == 0 {
		fmt.Fprintln(w, "nothing to prune")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tSIZE\tPATH")
		for _, e := range res.Entries {
			path := e.Path
			if e.Files > 0 {
				path = fmt.Sprintf("%s (%d files)", path, e.Files)
			}
			if e.Error != "" {
				path += "  error: " + e.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Kind, model.HumanBytes(e.Bytes), path)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if res.DryRun {
			fmt.Fprintf(w, "would free %s (dry run: nothing removed)\n", model.HumanBytes(res.Bytes))
		} else {
			fmt.Fprintf(w, "freed %s\n", model.HumanBytes(res.Bytes))
		}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func failedEntries(res api.CachePruneResult) int {
	n := 0
	for _, e := range res.Entries {
		if e.Error != "" {
			n++
		}
	}
	return n
}
