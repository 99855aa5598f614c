package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, register and manage images",
	}
	cmd.AddCommand(newImageBuildCmd(g), newImageListCmd(g), newImageShowCmd(g), newImageDeleteCmd(g), newImageRegisterCmd(g))
	cmd.AddCommand(newImagePullCmd(g))
	cmd.AddCommand(newImagePromoteCmd(g), newImageCacheCmd(g), newImageRecipeCmd(g))
	return cmd
}

func newImageBuildCmd(g *globals) *cobra.Command {
	var o imageBuildOptions
	cmd := &cobra.Command{
		Use:   "build [NAME] [--recipe FILE]",
		Short: "Build a managed image from Debian packages (default debian-bookworm)",
		Long: `Build a managed image from Debian packages: root filesystem, work disk seed,
kernel and initrd. The first build takes a few minutes.

NAME is an embedded recipe (debian-bookworm). With --recipe, the TOML recipe
FILE is built as the image NAME (default: the recipe's name); start from
banger image recipe show. Two builds of one recipe from the same package
versions have the same content.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return runImageBuild(cmd.Context(), g, name, o)
		},
	}
	cmd.Flags().BoolVar(&o.force, "force", false, "rebuild even when the image exists")
	cmd.Flags().StringVar(&o.mirror, "mirror", "", "Debian mirror URL (default: the recipe's, else http://deb.debian.org/debian)")
	cmd.Flags().StringVar(&o.recipe, "recipe", "", "build this TOML recipe file")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print no progress, only warnings")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the image as JSON")
	return cmd
}

func newImageListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var imgs []model.Image
			if err := g.call(cmd.Context(), api.MethodImageList, nil, &imgs); err != nil {
				return err
			}
			if asJSON {
				if imgs == nil {
					imgs = []model.Image{}
				}
				return printJSON(g.stdout, imgs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tMANAGED\tSIZE\tCREATED")
			for _, img := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", img.Name, img.ID[:12], img.Managed, img.BuildSize, ago(img.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print images as JSON")
	return cmd
}

func newImageShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show IMAGE",
		Short: "Show an image's artifacts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d api.ImageDetails
			if err := g.call(cmd.Context(), api.MethodImageShow, api.Ref{Ref: args[0]}, &d); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, d)
			}
			img := d.Image
			firstBoot := ""
			if fb := d.FirstBoot; fb != nil {
				firstBoot = fmt.Sprintf("installs %s with %s (needs --nat)", strings.Join(fb.Installs, " and "), fb.PackageManager)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			for _, kv := range [][2]string{
				{"Name", img.Name}, {"ID", img.ID}, {"Managed", fmt.Sprint(img.Managed)},
				{"Rootfs", img.RootfsPath}, {"Work seed", img.WorkSeedPath}, {"Kernel", img.KernelPath},
				{"Initrd", img.InitrdPath}, {"Modules", img.ModulesDir}, {"Modules disk", d.ModulesDisk},
				{"First boot", firstBoot}, {"Size", img.BuildSize},
				{"SSH key", img.SeededSSHPublicKeyFingerprint}, {"Created", img.CreatedAt.Local().String()},
			} {
				if kv[1] != "" {
					fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the image as JSON")
	return cmd
}

func newImageDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "delete IMAGE",
		Aliases: []string{"rm"},
		Short:   "Delete an image no VM uses (managed artifacts are removed)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(cmd.Context(), api.MethodImageDelete, api.Ref{Ref: args[0]}, nil)
		},
	}
}

func newImageRegisterCmd(g *globals) *cobra.Command {
	var req api.ImageRegisterRequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "register --name NAME --rootfs FILE (--kernel FILE | --kernel-ref KERNEL) [--initrd FILE] [--modules DIR]",
		Short: "Register local artifacts (ext4 rootfs, kernel, initrd) as an image",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, p := range []*string{&req.Rootfs, &req.Kernel, &req.Initrd, &req.Modules, &req.WorkSeed} {
				if *p != "" {
					abs, err := filepath.Abs(*p)
					if err != nil {
						return err
					}
					*p = abs
				}
			}
			var img model.Image
			if err := g.call(cmd.Context(), api.MethodImageRegister, req, &img); err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, img)
			}
			fmt.Fprintf(g.stdout, "%s\t%s\n", img.Name, img.ID[:12])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Name, "name", "", "image name")
	fl.StringVar(&req.Rootfs, "rootfs", "", "ext4 root filesystem image")
	fl.StringVar(&req.Kernel, "kernel", "", "kernel (vmlinuz or vmlinux)")
	fl.StringVar(&req.KernelRef, "kernel-ref", "", "catalog kernel to boot, with its initrd and modules (instead of --kernel)")
	fl.StringVar(&req.Initrd, "initrd", "", "initrd (optional)")
	fl.StringVar(&req.Modules, "modules", "", "kernel modules directory (optional)")
	fl.StringVar(&req.WorkSeed, "work-seed", "", "ext4 image with the initial /root (optional)")
	fl.BoolVar(&asJSON, "json", false, "print the image as JSON")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("rootfs")
	cmd.MarkFlagsOneRequired("kernel", "kernel-ref")
	cmd.MarkFlagsMutuallyExclusive("kernel", "kernel-ref")
	return cmd
}
