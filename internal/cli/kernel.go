package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func newKernelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Import and manage the kernels images boot",
		Long: `The kernel catalog holds kernels (with their initrd and modules) that images
refer to by name: image pull --kernel-ref and image register --kernel-ref.
Building the default image enters its Debian kernel as <image>-kernel.`,
	}
	cmd.AddCommand(newKernelImportCmd(g), newKernelListCmd(g), newKernelShowCmd(g), newKernelRmCmd(g))
	return cmd
}

func newKernelImportCmd(g *globals) *cobra.Command {
	var from string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import NAME --from DIR",
		Short: "Copy a kernel from a directory into the catalog",
		Long: `Copy a kernel into the catalog as NAME. DIR holds the kernel, named vmlinuz
(a bzImage) or vmlinux (ELF), and optionally initrd.img (or initrd) and a
modules directory.

  banger kernel import deb-6-1 --from ./kernel`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := kernelImportRequest(args[0], from)
			if err != nil {
				return err
			}
			var k model.Kernel
			if err := g.call(cmd.Context(), api.MethodKernelImport, req, &k); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, k)
			}
			fmt.Fprintf(g.stdout, "%s\t%s\n", k.Name, abbrevID(k.ID))
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "directory holding vmlinuz or vmlinux, and optionally initrd.img and modules/")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the kernel as JSON")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// kernelImportRequest makes the import request, from as an absolute
// path: the daemon resolves no relative paths.
func kernelImportRequest(name, from string) (api.KernelImportRequest, error) {
	abs, err := filepath.Abs(from)
	if err != nil {
		return api.KernelImportRequest{}, fmt.Errorf("--from %q: %w", from, err)
	}
	return api.KernelImportRequest{Name: name, From: abs}, nil
}

func newKernelListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the kernel catalog",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ks []model.Kernel
			if err := g.call(cmd.Context(), api.MethodKernelList, nil, &ks); err != nil {
				return err
			}
			if asJSON {
				if ks == nil {
					ks = []model.Kernel{}
				}
				return printJSON(g.stdout, ks)
			}
			return printKernelTable(g.stdout, ks)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print kernels as JSON")
	return cmd
}

func newKernelShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show KERNEL",
		Short: "Show a catalog kernel's files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var k model.Kernel
			if err := g.call(cmd.Context(), api.MethodKernelShow, api.Ref{Ref: args[0]}, &k); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, k)
			}
			return printKernel(g.stdout, k)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the kernel as JSON")
	return cmd
}

func newKernelRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm KERNEL",
		Aliases: []string{"delete"},
		Short:   "Remove a kernel no image uses, with its files",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(cmd.Context(), api.MethodKernelRm, api.Ref{Ref: args[0]}, nil)
		},
	}
}

func printKernelTable(w io.Writer, ks []model.Kernel) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tVERSION\tINITRD\tMODULES\tCREATED")
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, abbrevID(k.ID), valueOrDash(k.Version),
			yesOrNo(k.InitrdPath != ""), yesOrNo(k.ModulesDir != ""), ago(k.CreatedAt))
	}
	return tw.Flush()
}

func printKernel(w io.Writer, k model.Kernel) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"Name", k.Name}, {"ID", k.ID}, {"Version", k.Version}, {"Managed", fmt.Sprint(k.Managed)},
		{"Kernel", k.KernelPath}, {"Initrd", k.InitrdPath}, {"Modules", k.ModulesDir},
		{"Created", k.CreatedAt.Local().String()},
	} {
		if kv[1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	return tw.Flush()
}

func abbrevID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func valueOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesOrNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
