package image

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// DefaultMirror is the Debian mirror used when neither BuildOptions nor
// the recipe names one.
const DefaultMirror = "http://deb.debian.org/debian"

// DefaultSourceDateEpoch is the SOURCE_DATE_EPOCH of a recipe without a
// source_date_epoch key: 2024-01-01T00:00:00Z.
const DefaultSourceDateEpoch int64 = 1704067200

// maxRecipeFileSize bounds one [[files]] entry's content.
const maxRecipeFileSize = 64 << 20

// Recipe is how an image is built: a Debian suite, the packages
// installed on top of mmdebstrap's minbase variant, files put into the
// image and commands run in it. Recipes are TOML files (see
// ParseRecipe); banger embeds its own in recipes/.
type Recipe struct {
	Name   string
	Suite  string
	Mirror string // "" for DefaultMirror
	// SourceDateEpoch is the build's SOURCE_DATE_EPOCH: the time that
	// mmdebstrap, dpkg and the tools they run record instead of now, so
	// that builds from the same package versions have the same content.
	SourceDateEpoch int64
	Packages        []string
	// InitrdModules must be in the initrd and are loaded early: QEMU
	// microvm's disks and NIC are virtio-mmio devices found through ACPI,
	// and the Debian kernel builds all of that as modules.
	InitrdModules []string
	Files         []RecipeFile
	// Commands run in the image (chroot, /bin/sh -e, as root) after the
	// packages and Files, in order.
	Commands []string
}

// RecipeFile is one file a recipe puts into the image.
type RecipeFile struct {
	Path    string // absolute and clean, in the image
	Content []byte
	Mode    os.FileMode
	Owner   string // "user:group", names (of the image) or numbers
	// Override allows replacing one of banger's own guest files.
	Override bool
}

// recipeFile is the TOML shape of a recipe.
type recipeFile struct {
	Name            string          `toml:"name"`
	Suite           string          `toml:"suite"`
	Mirror          string          `toml:"mirror"`
	SourceDateEpoch *int64          `toml:"source_date_epoch"`
	Packages        []string        `toml:"packages"`
	InitrdModules   []string        `toml:"initrd_modules"`
	Files           []recipeFileRow `toml:"files"`
	Commands        []string        `toml:"commands"`
}

type recipeFileRow struct {
	Path     string  `toml:"path"`
	Content  *string `toml:"content"`
	Source   string  `toml:"source"`
	Mode     string  `toml:"mode"`
	Owner    string  `toml:"owner"`
	Override bool    `toml:"override"`
}

// ParseRecipe parses and validates a TOML recipe. Keys:
//
//	name               image recipe name (a-z, 0-9, '-')
//	suite              Debian suite or codename, e.g. "bookworm"
//	mirror             Debian mirror URL (optional)
//	source_date_epoch  SOURCE_DATE_EPOCH (optional, DefaultSourceDateEpoch)
//	packages           Debian package names; one must be a linux-image-* kernel
//	initrd_modules     kernel modules the initrd must carry and load
//	commands           shell commands run in the image, in order
//	[[files]]          path, content or source, mode ("0644"), owner
//	                   ("root:root"), override (of a banger guest file)
//
// A source is read relative to baseDir, the recipe file's directory.
// Unknown keys and bad values are errors naming the key; every problem
// is reported at once, on one line, as errdefs.ErrInvalid (callers add
// which recipe).
func ParseRecipe(data []byte, baseDir string) (Recipe, error) {
	var f recipeFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return Recipe{}, errdefs.Invalid(errors.New(errdefs.OneLine(err.Error())))
	}
	var errs []error
	undecoded := md.Undecoded()
	keys := make([]string, 0, len(undecoded))
	for _, k := range undecoded {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	for _, k := range keys {
		errs = append(errs, fmt.Errorf("unknown key %q", k))
	}
	r := Recipe{
		Name:            f.Name,
		Suite:           f.Suite,
		Mirror:          f.Mirror,
		SourceDateEpoch: DefaultSourceDateEpoch,
		Packages:        f.Packages,
		InitrdModules:   f.InitrdModules,
		Commands:        f.Commands,
	}
	if f.SourceDateEpoch != nil {
		r.SourceDateEpoch = *f.SourceDateEpoch
	}
	for i, row := range f.Files {
		file, err := row.resolve(baseDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("files[%d] %s: %w", i, row.Path, err))
			continue
		}
		r.Files = append(r.Files, file)
	}
	if err := r.validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Recipe{}, errdefs.Invalid(errdefs.JoinLines(errs))
	}
	return r, nil
}

// resolve reads the row's content and mode; validate checks the rest.
func (row recipeFileRow) resolve(baseDir string) (RecipeFile, error) {
	f := RecipeFile{Path: row.Path, Owner: row.Owner, Override: row.Override, Mode: 0o644}
	if f.Owner == "" {
		f.Owner = "root:root"
	}
	if row.Mode != "" {
		m, err := strconv.ParseUint(strings.TrimPrefix(row.Mode, "0o"), 8, 32)
		if err != nil || m > 0o7777 || len(row.Mode) < 3 {
			return f, fmt.Errorf("mode %q: want an octal mode such as \"0644\"", row.Mode)
		}
		f.Mode = os.FileMode(m&0o777) | unixModeBits(m)
	}
	switch {
	case row.Content != nil && row.Source != "":
		return f, errors.New("give content or source, not both")
	case row.Content != nil:
		f.Content = []byte(*row.Content)
	case row.Source != "":
		data, err := readRecipeSource(baseDir, row.Source)
		if err != nil {
			return f, err
		}
		f.Content = data
	default:
		return f, errors.New("content or source is required")
	}
	return f, nil
}

// unixModeBits turns the setuid, setgid and sticky bits of a numeric
// mode into os.FileMode bits.
func unixModeBits(m uint64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// readRecipeSource reads a [[files]] source, relative to baseDir.
func readRecipeSource(baseDir, source string) ([]byte, error) {
	p := source
	if !filepath.IsAbs(p) {
		if baseDir == "" || !filepath.IsAbs(baseDir) {
			return nil, fmt.Errorf("source %q: relative, and the recipe has no absolute base directory", source)
		}
		p = filepath.Join(baseDir, p)
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", source, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", source, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("source %q: %s is not a regular file", source, p)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxRecipeFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", source, err)
	}
	if len(data) > maxRecipeFileSize {
		return nil, fmt.Errorf("source %q: larger than %d MiB", source, maxRecipeFileSize>>20)
	}
	return data, nil
}

var (
	// Debian policy 5.6.1: lowercase letters, digits, '+', '-', '.';
	// at least two characters, starting with an alphanumeric.
	packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	modulePattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	ownerPart      = `([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})`
	ownerPattern   = regexp.MustCompile(`^` + ownerPart + `(:` + ownerPart + `)?$`)
)

// noRecipeFilesUnder are mounted from the host while the recipe's files
// and commands are installed: nothing may be written there.
var noRecipeFilesUnder = []string{"/proc", "/sys", "/dev"}

// validate checks every field; errors name the key.
func (r Recipe) validate() error {
	var errs []error
	if err := model.ValidateName(r.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if err := validateSuite(r.Suite); err != nil {
		errs = append(errs, fmt.Errorf("suite: %w", err))
	}
	if r.Mirror != "" {
		if err := validateMirror(r.Mirror); err != nil {
			errs = append(errs, fmt.Errorf("mirror: %w", err))
		}
	}
	if r.SourceDateEpoch < 0 {
		errs = append(errs, fmt.Errorf("source_date_epoch %d: must not be negative", r.SourceDateEpoch))
	}
	if len(r.Packages) == 0 {
		errs = append(errs, errors.New("packages: empty; list at least a kernel (linux-image-amd64)"))
	}
	seen := map[string]bool{}
	kernel := false
	for i, p := range r.Packages {
		switch {
		case !packagePattern.MatchString(p):
			errs = append(errs, fmt.Errorf("packages[%d] %q: not a Debian package name (a-z, 0-9, '+', '-', '.'; two characters or more)", i, p))
		case seen[p]:
			errs = append(errs, fmt.Errorf("packages[%d] %q: listed twice", i, p))
		}
		seen[p] = true
		kernel = kernel || strings.HasPrefix(p, "linux-image-")
	}
	if len(r.Packages) > 0 && !kernel {
		errs = append(errs, errors.New("packages: no kernel package (linux-image-...): banger boots the image's own kernel"))
	}
	for i, m := range r.InitrdModules {
		if !modulePattern.MatchString(m) {
			errs = append(errs, fmt.Errorf("initrd_modules[%d] %q: not a kernel module name", i, m))
		}
	}
	protected := map[string]bool{AgentImagePath: true, recipeModulesPath: true, "/root/.ssh/authorized_keys": true}
	for _, g := range guestFiles {
		protected[g.Dst] = true
	}
	paths := map[string]bool{}
	for i, f := range r.Files {
		if err := validateRecipeFile(f, protected); err != nil {
			errs = append(errs, fmt.Errorf("files[%d] %s: %w", i, f.Path, err))
		}
		if paths[f.Path] {
			errs = append(errs, fmt.Errorf("files[%d] %s: listed twice", i, f.Path))
		}
		paths[f.Path] = true
	}
	for i, c := range r.Commands {
		if strings.TrimSpace(c) == "" {
			errs = append(errs, fmt.Errorf("commands[%d]: empty", i))
		} else if strings.ContainsRune(c, 0) {
			errs = append(errs, fmt.Errorf("commands[%d]: contains a NUL byte", i))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errdefs.JoinLines(errs)
}

func validateRecipeFile(f RecipeFile, protected map[string]bool) error {
	p := f.Path
	switch {
	case p == "":
		return errors.New("path is required")
	case !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/":
		return fmt.Errorf("path %q: want an absolute, clean path of a file such as /etc/motd", p)
	case strings.ContainsFunc(p, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return fmt.Errorf("path %q: control characters are not allowed", p)
	}
	for _, d := range noRecipeFilesUnder {
		if p == d || strings.HasPrefix(p, d+"/") {
			return fmt.Errorf("path %q: %s is not part of the image", p, d)
		}
	}
	if protected[p] && !f.Override {
		return fmt.Errorf("path %q is one of banger's own guest files; set override = true to replace it", p)
	}
	if !ownerPattern.MatchString(f.Owner) {
		return fmt.Errorf("owner %q: want user:group, names or numbers", f.Owner)
	}
	if f.Mode&^(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
		return fmt.Errorf("mode %v: want permission bits only", f.Mode)
	}
	if len(f.Content) > maxRecipeFileSize {
		return fmt.Errorf("larger than %d MiB", maxRecipeFileSize>>20)
	}
	return nil
}

// The recipes banger embeds, one TOML file each, named after the recipe.
//
//go:embed recipes/*.toml
var recipeFS embed.FS

// embedded are the parsed embedded recipes by name.
var embedded = mustParseEmbedded()

func mustParseEmbedded() map[string]Recipe {
	out := map[string]Recipe{}
	entries, err := recipeFS.ReadDir("recipes")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		data, err := recipeFS.ReadFile("recipes/" + e.Name())
		if err != nil {
			panic(err)
		}
		r, err := ParseRecipe(data, "")
		if err != nil {
			panic(fmt.Sprintf("embedded recipe %s: %v", e.Name(), err))
		}
		if r.Name+".toml" != e.Name() {
			panic(fmt.Sprintf("embedded recipe %s is named %q", e.Name(), r.Name))
		}
		out[r.Name] = r
	}
	return out
}

// DefaultRecipe returns the recipe of banger's default image,
// model.DefaultImageName.
func DefaultRecipe() Recipe {
	r, err := lookupRecipe(model.DefaultImageName)
	if err != nil {
		panic(err)
	}
	return r
}

// DefaultRecipeTOML returns the default recipe's TOML text.
func DefaultRecipeTOML() []byte {
	data, err := RecipeTOML(model.DefaultImageName)
	if err != nil {
		panic(err)
	}
	return data
}

// RecipeTOML returns the TOML text of the embedded recipe name.
func RecipeTOML(name string) ([]byte, error) {
	if _, err := lookupRecipe(name); err != nil {
		return nil, err
	}
	return recipeFS.ReadFile("recipes/" + name + ".toml")
}

// Names lists the embedded recipes, sorted.
func Names() []string {
	names := make([]string, 0, len(embedded))
	for n := range embedded {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookupRecipe returns a copy of the embedded recipe name.
func lookupRecipe(name string) (Recipe, error) {
	r, ok := embedded[name]
	if !ok {
		return Recipe{}, errdefs.Invalid(fmt.Errorf("unknown image recipe %q; known: %s", name, strings.Join(Names(), ", ")))
	}
	return r.clone(), nil
}

// clone copies the recipe's slices so callers cannot change the
// embedded recipes.
func (r Recipe) clone() Recipe {
	r.Packages = append([]string(nil), r.Packages...)
	r.InitrdModules = append([]string(nil), r.InitrdModules...)
	r.Commands = append([]string(nil), r.Commands...)
	files := make([]RecipeFile, len(r.Files))
	for i, f := range r.Files {
		f.Content = bytes.Clone(f.Content)
		files[i] = f
	}
	r.Files = files
	return r
}

var suitePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// validateSuite accepts Debian suite and codename spellings.
func validateSuite(s string) error {
	if !suitePattern.MatchString(s) {
		return errdefs.Invalid(fmt.Errorf("invalid Debian suite %q", s))
	}
	return nil
}

// validateMirror accepts an http, https or file URL without spaces.
func validateMirror(m string) error {
	u, err := url.Parse(m)
	if err != nil {
		return errdefs.Invalid(fmt.Errorf("invalid mirror %q: %w", m, err))
	}
	if (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") || strings.ContainsAny(m, " \t\n'\"") ||
		(u.Scheme != "file" && u.Host == "") {
		return errdefs.Invalid(fmt.Errorf("invalid mirror %q: want an http(s) URL such as %s", m, DefaultMirror))
	}
	return nil
}
