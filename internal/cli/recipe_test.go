package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"banger/internal/api"
	"banger/internal/image"
)

func TestImageRecipeShow(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"default", nil, string(image.DefaultRecipeTOML()), ""},
		{"by name", []string{"debian-bookworm"}, string(image.DefaultRecipeTOML()), ""},
		{"unknown", []string{"nope"}, "", `unknown image recipe "nope"; known: debian-bookworm`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			g := &globals{stdout: &out, stderr: &out}
			cmd := newImageRecipeCmd(g)
			cmd.SetArgs(append([]string{"show"}, tt.args...))
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || out.String() != tt.want {
				t.Errorf("got %d bytes, %v, want the %d-byte recipe", out.Len(), err, len(tt.want))
			}
		})
	}
}

func TestImageBuildRequest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\"]\n[[files]]\npath = \"/etc/motd\"\nsource = \"motd\"\n")
	write("motd", "hi\n")
	unknownKey := write("unknown.toml", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\"]\nextra = 1\n")
	badPackage := write("badpkg.toml", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\", \"Bad_Pkg\"]\n")
	missingSource := write("missing.toml", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\"]\n[[files]]\npath = \"/etc/x\"\nsource = \"nope\"\n")
	goodText, _ := os.ReadFile(good)

	tests := []struct {
		name    string
		arg     string
		opts    imageBuildOptions
		want    api.ImageBuildRequest
		wantErr string
	}{
		{"default", "", imageBuildOptions{}, api.ImageBuildRequest{Name: "debian-bookworm"}, ""},
		{"named with flags", "debian-bookworm", imageBuildOptions{force: true, mirror: "http://m/debian"},
			api.ImageBuildRequest{Name: "debian-bookworm", Force: true, Mirror: "http://m/debian"}, ""},
		{"recipe named after itself", "", imageBuildOptions{recipe: good},
			api.ImageBuildRequest{Name: "mine", Recipe: string(goodText), RecipeDir: dir}, ""},
		{"recipe with a name", "dev-box", imageBuildOptions{recipe: good, force: true},
			api.ImageBuildRequest{Name: "dev-box", Force: true, Recipe: string(goodText), RecipeDir: dir}, ""},
		{"bad image name", "Dev Box", imageBuildOptions{recipe: good}, api.ImageBuildRequest{}, `image invalid name "Dev Box"`},
		{"unknown key", "", imageBuildOptions{recipe: unknownKey}, api.ImageBuildRequest{}, `recipe ` + unknownKey + `: unknown key "extra"`},
		{"bad package", "", imageBuildOptions{recipe: badPackage}, api.ImageBuildRequest{}, `packages[1] "Bad_Pkg": not a Debian package name`},
		{"missing source", "", imageBuildOptions{recipe: missingSource}, api.ImageBuildRequest{}, `files[0] /etc/x: source "nope": open ` + filepath.Join(dir, "nope")},
		{"missing recipe", "", imageBuildOptions{recipe: filepath.Join(dir, "none.toml")}, api.ImageBuildRequest{}, "read recipe: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.request(tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Errorf("got %v, want one line containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

func TestImageBuildFlags(t *testing.T) {
	cmd := newImageBuildCmd(&globals{})
	if err := cmd.Flags().Parse([]string{"--recipe", "r.toml", "-q", "--force", "--mirror", "http://m/debian"}); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"recipe": "r.toml", "quiet": "true", "force": "true", "mirror": "http://m/debian", "json": "false"} {
		if got := cmd.Flags().Lookup(flag); got == nil || got.Value.String() != want {
			t.Errorf("--%s: got %v, want %q", flag, got, want)
		}
	}
}
