package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/image"
	"banger/internal/model"
)

// newImageRecipeCmd groups the image recipe commands.
func newImageRecipeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recipe",
		Short: "Show the recipes images are built from",
	}
	cmd.AddCommand(newImageRecipeShowCmd(g))
	return cmd
}

func newImageRecipeShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [NAME]",
		Short: "Print an embedded image recipe (default: " + model.DefaultImageName + ")",
		Long: `Print an embedded image recipe as TOML (default: the default image's).
Save it, edit it and build your own image from it:

  banger image recipe show > my.toml
  banger image build my-image --recipe my.toml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := model.DefaultImageName
			if len(args) == 1 {
				name = args[0]
			}
			data, err := image.RecipeTOML(name)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(data)
			return err
		},
	}
}

// imageBuildOptions are the flags of image build.
type imageBuildOptions struct {
	force, quiet, asJSON bool
	mirror, recipe       string
}

// request builds the build request for the image name ("" for the
// default one, or with --recipe the recipe's name). A --recipe file is
// read and checked here, as the daemon will check it, so that a bad
// recipe fails at once with nothing built; the daemon gets its text and
// directory.
func (o imageBuildOptions) request(name string) (api.ImageBuildRequest, error) {
	req := api.ImageBuildRequest{Name: name, Force: o.force, Mirror: o.mirror}
	if o.recipe == "" {
		if req.Name == "" {
			req.Name = model.DefaultImageName
		}
		return req, nil
	}
	path, err := filepath.Abs(o.recipe)
	if err != nil {
		return req, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return req, fmt.Errorf("read recipe: %w", err)
	}
	r, err := image.ParseRecipe(data, filepath.Dir(path))
	if err != nil {
		return req, fmt.Errorf("recipe %s: %w", o.recipe, err)
	}
	if req.Name == "" {
		req.Name = r.Name
	}
	if err := model.ValidateName(req.Name); err != nil {
		return req, fmt.Errorf("image %w", err)
	}
	req.Recipe, req.RecipeDir = string(data), filepath.Dir(path)
	return req, nil
}

// runImageBuild builds the image and prints it: progress on stderr (log
// lines, or only warnings with --quiet), the image on stdout.
func runImageBuild(ctx context.Context, g *globals, name string, o imageBuildOptions) error {
	req, err := o.request(name)
	if err != nil {
		return err
	}
	return makeImage(ctx, g, api.MethodImageBuild, req, o.quiet, o.asJSON)
}
