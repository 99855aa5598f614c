// Package image builds banger's managed guest images from distribution
// packages, following a recipe (a TOML file: Debian suite, packages,
// files, commands; see ParseRecipe). The default image, debian-bookworm,
// comes from the embedded recipes/debian-bookworm.toml: a minimal Debian
// made with mmdebstrap, with systemd, openssh-server, a developer
// toolset, the Debian kernel and its initrd. Every image gets banger's
// guest units (network from the kernel command line, per-VM SSH host
// keys, root filesystem growth, the work disk at /root), embedded from
// guest/. Builds are reproducible: the same recipe and package versions
// give the same content (Listing).
//
// A build produces, in its artifact directory, rootfs.ext4 (label
// banger-root), work-seed.ext4 (label banger-work: the image's /root with
// the owner's authorized_keys), vmlinuz and initrd.img. The daemon's image
// service imports this package.
package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"banger/internal/aptrepo"
	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/model"
	"banger/internal/storage"
)

// Artifact file names inside BuildOptions.ArtifactDir.
const (
	RootfsFile   = "rootfs.ext4"
	WorkSeedFile = "work-seed.ext4"
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
)

// RootLabel is the filesystem label of every image rootfs.
const RootLabel = "banger-root"

// BuildOptions says what to build and where.
type BuildOptions struct {
	// Name is the embedded recipe to build (see Names), or with Recipe
	// the name of the build (its log and scratch directory).
	Name string
	// Recipe, if set, is built instead of the embedded recipe Name (see
	// ParseRecipe).
	Recipe *Recipe
	Suite  string // Debian suite; "" for the recipe's
	// Mirror is the Debian mirror; "" for the recipe's, else
	// DefaultMirror.
	Mirror      string
	ArtifactDir string // receives the artifacts; created if missing
	CacheDir    string // scratch space and the build log
	// PackageCache keeps downloaded .deb files between builds; ""
	// means CacheDir/debs. When the mirror cannot be reached, a build
	// runs offline from it (a flat repository of the cached packages).
	PackageCache string
	SSHPublicKey string // authorized_keys line for root, seeded into work-seed.ext4
	// AgentPath is the static banger-agent binary installed as
	// /usr/local/bin/banger-agent (FindAgent finds the installed one).
	AgentPath string
	// Progress, if set, hears each step as it starts: "bootstrap",
	// "configure", "kernel", "rootfs", "work-seed", "listing".
	Progress func(step string, detail string)
}

// Result is a finished build.
type Result struct {
	RootfsPath   string
	WorkSeedPath string
	KernelPath   string
	InitrdPath   string
	BuildSize    string // size of rootfs.ext4, e.g. "1152M"
	// SeededSSHPublicKeyFingerprint is the fingerprint of the key in
	// work-seed.ext4's authorized_keys, "SHA256:..." as ssh-keygen -lf
	// prints it.
	SeededSSHPublicKeyFingerprint string
	// AgentDigest is "sha256:<hex>" of the banger-agent in the image (see
	// AgentDigest): an image whose digest differs from the current
	// agent's needs a rebuild to get it.
	AgentDigest string
	// ListingSHA256 is "sha256:<hex>" of rootfs.ext4's Listing: two
	// builds with the same value have the same content.
	ListingSHA256 string
}

// Build builds opts.Recipe, or the embedded recipe opts.Name, into
// opts.ArtifactDir. It needs root (mmdebstrap's root mode is what gives
// the image's files their real owners) and the Debian mirror or a filled
// package cache, and takes a few minutes. The recipe's
// SourceDateEpoch is the build's SOURCE_DATE_EPOCH. On failure or when
// ctx ends, it leaves no partial artifacts and no scratch files.
func Build(ctx context.Context, opts BuildOptions) (res Result, err error) {
	r, err := opts.recipe()
	if err != nil {
		return Result{}, fmt.Errorf("build image: %w", err)
	}
	if err := opts.complete(r); err != nil {
		return Result{}, fmt.Errorf("build image %q: %w", opts.Name, err)
	}
	fingerprint, err := FingerprintSSHPublicKey(opts.SSHPublicKey)
	if err != nil {
		return Result{}, fmt.Errorf("build image %q: %w", opts.Name, err)
	}
	if os.Geteuid() != 0 {
		return Result{}, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf(
			"build image %q: must run as root: mmdebstrap's root mode gives the image's files their owners (run bangerd as root)", opts.Name))
	}
	for _, tool := range [][2]string{{"mmdebstrap", "mmdebstrap"}, {"unshare", "util-linux"}, {"env", "coreutils"}, {"mkfs.ext4", "e2fsprogs"}, {"debugfs", "e2fsprogs"}} {
		if _, err := hostexec.Look(tool[0], tool[1]); err != nil {
			return Result{}, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("build image %q: %w", opts.Name, err))
		}
	}

	b := &build{opts: opts, recipe: r}
	defer func() {
		// The scratch tree goes in every case; the artifacts only with an
		// error, so an error always means nothing was built.
		if cerr := b.removeStage(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("build image %q: clean up: %w", opts.Name, cerr))
		}
		if err != nil {
			res = Result{}
			if cerr := b.removeOutputs(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("build image %q: clean up: %w", opts.Name, cerr))
			}
		}
	}()
	for _, step := range []struct {
		name, detail string
		run          func(context.Context) error
	}{
		{"prepare", "", b.prepare},
		{"bootstrap", fmt.Sprintf("mmdebstrap %s from %s (log: %s)", opts.Suite, opts.Mirror, b.logPath()), b.bootstrap},
		{"configure", "initrd modules, banger-agent, /root, authorized_keys", b.configure},
		{"kernel", "vmlinuz and initrd.img", b.kernel},
		{"rootfs", RootfsFile, b.rootfs},
		{"work-seed", WorkSeedFile, b.workSeed},
		{"listing", "content listing of " + RootfsFile, b.listing},
	} {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("build image %q: %w", opts.Name, err)
		}
		if step.name != "prepare" && opts.Progress != nil {
			opts.Progress(step.name, step.detail)
		}
		if err := step.run(ctx); err != nil {
			return Result{}, fmt.Errorf("build image %q: %s: %w", opts.Name, step.name, err)
		}
	}
	return Result{
		RootfsPath:                    b.artifact(RootfsFile),
		WorkSeedPath:                  b.artifact(WorkSeedFile),
		KernelPath:                    b.artifact(KernelFile),
		InitrdPath:                    b.artifact(InitrdFile),
		BuildSize:                     model.FormatSizeBytes(b.rootfsBytes),
		SeededSSHPublicKeyFingerprint: fingerprint,
		AgentDigest:                   b.agentDigest,
		ListingSHA256:                 b.listingSHA256,
	}, nil
}

// recipe returns the recipe to build: opts.Recipe, validated, or the
// embedded one called opts.Name.
func (o *BuildOptions) recipe() (Recipe, error) {
	if o.Recipe == nil {
		return lookupRecipe(o.Name)
	}
	if err := model.ValidateName(o.Name); err != nil {
		return Recipe{}, errdefs.Invalid(fmt.Errorf("image %w", err))
	}
	if err := o.Recipe.validate(); err != nil {
		return Recipe{}, errdefs.Invalid(fmt.Errorf("recipe %s: %w", o.Recipe.Name, err))
	}
	return o.Recipe.clone(), nil
}

// complete fills defaults from the recipe and validates opts.
func (o *BuildOptions) complete(r Recipe) error {
	if o.Suite == "" {
		o.Suite = r.Suite
	}
	if o.Mirror == "" {
		o.Mirror = r.Mirror
	}
	if o.Mirror == "" {
		o.Mirror = DefaultMirror
	}
	var errs []error
	if err := validateSuite(o.Suite); err != nil {
		errs = append(errs, err)
	}
	if err := validateMirror(o.Mirror); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct{ name, path string }{{"artifact dir", o.ArtifactDir}, {"cache dir", o.CacheDir}} {
		if d.path == "" || !filepath.IsAbs(d.path) {
			errs = append(errs, errdefs.Invalid(fmt.Errorf("%s %q must be an absolute path", d.name, d.path)))
		}
	}
	if o.SSHPublicKey == "" {
		errs = append(errs, errdefs.Invalid(errors.New("an SSH public key for root is required")))
	}
	if err := checkAgent(o.AgentPath); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// build is the state of one Build call.
type build struct {
	opts   BuildOptions
	recipe Recipe

	stage          string   // scratch dir under CacheDir
	createdArtDir  bool     // ArtifactDir did not exist before
	createdOutputs []string // artifacts written so far
	rootfsBytes    int64
	agentDigest    string // of the banger-agent copied into the image
	listingSHA256  string
}

func (b *build) artifact(name string) string { return filepath.Join(b.opts.ArtifactDir, name) }
func (b *build) tree() string                { return filepath.Join(b.stage, "tree") }
func (b *build) workTree() string            { return filepath.Join(b.stage, "work") }
func (b *build) initrdList() string          { return filepath.Join(b.stage, "initrd-files.txt") }
func (b *build) debCache() string {
	if b.opts.PackageCache != "" {
		return filepath.Join(b.opts.PackageCache, b.opts.Suite)
	}
	return filepath.Join(b.opts.CacheDir, "debs", b.opts.Suite)
}
func (b *build) logPath() string {
	return filepath.Join(b.opts.CacheDir, b.opts.Name+"-build.log")
}

// prepare makes the scratch and artifact directories and refuses to
// overwrite existing artifacts.
func (b *build) prepare(context.Context) error {
	for _, name := range []string{RootfsFile, WorkSeedFile, KernelFile, InitrdFile} {
		if _, err := os.Lstat(b.artifact(name)); err == nil {
			return errdefs.WithKind(errdefs.ErrAlreadyExists, fmt.Errorf("%s already exists", b.artifact(name)))
		}
	}
	if _, err := os.Stat(b.opts.ArtifactDir); errors.Is(err, fs.ErrNotExist) {
		b.createdArtDir = true
	}
	if err := os.MkdirAll(b.opts.ArtifactDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(b.opts.CacheDir, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(b.opts.CacheDir, "build-"+b.opts.Name+"-")
	if err != nil {
		return err
	}
	b.stage = stage
	// The tree becomes the image's "/": 0755 root, whatever the umask.
	if err := os.Mkdir(b.tree(), 0o755); err != nil {
		return err
	}
	return os.Chmod(b.tree(), 0o755)
}

// bootstrap runs mmdebstrap.
func (b *build) bootstrap(ctx context.Context) error {
	plan := bootstrapPlan{
		Suite:     b.opts.Suite,
		Mirror:    b.opts.Mirror,
		Tree:      b.tree(),
		Packages:  b.recipe.Packages,
		DebCache:  b.debCache(),
		Sources:   fmt.Sprintf("deb %s %s main", b.opts.Mirror, b.opts.Suite),
		Early:     filepath.Join(b.stage, "early"),
		Late:      filepath.Join(b.stage, "late"),
		Customize: filepath.Join(b.stage, customizeScript),
		InitrdOut: b.initrdList(),
		LogFile:   b.logPath(),
		TmpDir:    filepath.Join(b.stage, "tmp"),

		SourceDateEpoch: b.recipe.SourceDateEpoch,
	}
	for _, d := range []string{plan.DebCache, plan.TmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := writeOverlay(plan.Early, true); err != nil {
		return fmt.Errorf("write guest files: %w", err)
	}
	if err := writeOverlayFile(plan.Early, recipeModulesPath, []byte(recipeModulesFile(b.recipe.InitrdModules)), 0o644); err != nil {
		return fmt.Errorf("write guest files: %w", err)
	}
	if len(b.recipe.Files) > 0 || len(b.recipe.Commands) > 0 {
		hook, err := writeRecipeHook(b.stage, b.recipe)
		if err != nil {
			return fmt.Errorf("write recipe files: %w", err)
		}
		plan.RecipeHook = hook
	}
	if err := writeOverlay(plan.Late, false); err != nil {
		return fmt.Errorf("write guest files: %w", err)
	}
	digest, err := installAgent(plan.Late, b.opts.AgentPath)
	if err != nil {
		return fmt.Errorf("copy %s: %w", AgentName, err)
	}
	b.agentDigest = digest
	if err := writeCustomizeScript(plan.Customize); err != nil {
		return err
	}
	if err := probeMirror(ctx, plan.Mirror, plan.Suite); err != nil {
		source, oerr := aptrepo.Write(ctx, plan.DebCache, plan.Suite)
		if oerr != nil {
			return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf(
				"debian mirror %s is unreachable (%v) and no offline build is possible (%v); connect the host to the network or pass a reachable --mirror", plan.Mirror, err, oerr))
		}
		if b.opts.Progress != nil {
			b.opts.Progress("offline", fmt.Sprintf("mirror %s is unreachable; building offline from the package cache %s", plan.Mirror, plan.DebCache))
		}
		plan.Mirror = source
	}
	name, args := bootstrapCommand(plan)
	if _, err := hostexec.Run(ctx, name, args...); err != nil {
		if tail := logTail(plan.LogFile, 8); tail != "" {
			return fmt.Errorf("mmdebstrap: %w; end of %s:\n%s", err, plan.LogFile, tail)
		}
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	return nil
}

// configure checks what the customize hook did and moves /root out of
// the tree into the work seed's tree, adding authorized_keys.
func (b *build) configure(context.Context) error {
	listing, err := os.ReadFile(b.initrdList())
	if err != nil {
		return fmt.Errorf("read initrd listing: %w", err)
	}
	builtins, _ := filepath.Glob(filepath.Join(b.tree(), "usr/lib/modules/*/modules.builtin"))
	var builtin []byte
	if len(builtins) == 1 {
		if builtin, err = os.ReadFile(builtins[0]); err != nil {
			return err
		}
	}
	if missing := missingInitrdModules(string(listing), string(builtin), b.recipe.InitrdModules); len(missing) > 0 {
		return fmt.Errorf("the initrd lacks modules %s: the guest could not find its disks", strings.Join(missing, ", "))
	}
	if keys, _ := filepath.Glob(filepath.Join(b.tree(), "etc/ssh/ssh_host_*")); len(keys) > 0 {
		return fmt.Errorf("SSH host keys left in the image: %s", strings.Join(keys, ", "))
	}
	if st, err := os.Stat(filepath.Join(b.tree(), AgentImagePath)); err != nil || st.Mode().Perm() != 0o755 {
		return fmt.Errorf("%s is not in the image as an executable (%v)", AgentImagePath, err)
	}
	for _, unit := range enabledUnits {
		link := filepath.Join(b.tree(), "etc/systemd/system/multi-user.target.wants", unit)
		if _, err := os.Lstat(link); err != nil {
			return fmt.Errorf("guest unit %s is not enabled: %w", unit, err)
		}
	}

	// The image keeps an empty /root as the work disk's mount point.
	if err := os.Rename(filepath.Join(b.tree(), "root"), b.workTree()); err != nil {
		return fmt.Errorf("move /root out of the image: %w", err)
	}
	if err := os.Mkdir(filepath.Join(b.tree(), "root"), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(b.tree(), "root"), 0o700); err != nil {
		return err
	}
	return writeAuthorizedKeys(b.workTree(), b.opts.SSHPublicKey)
}

// writeAuthorizedKeys writes home/.ssh/authorized_keys (0700 and 0600,
// root-owned) with the one key line.
func writeAuthorizedKeys(home, line string) error {
	sshDir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	keys := filepath.Join(sshDir, "authorized_keys")
	if err := os.WriteFile(keys, []byte(strings.TrimSpace(line)+"\n"), 0o600); err != nil {
		return err
	}
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{home, 0o700}, {sshDir, 0o700}, {keys, 0o600}} {
		if err := os.Chmod(p.path, p.mode); err != nil {
			return err
		}
		if err := os.Lchown(p.path, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// kernel moves the kernel and initrd out of the tree into the artifacts:
// the VMM loads them directly, the rootfs does not need its own copy.
func (b *build) kernel(context.Context) error {
	for _, k := range []struct{ pattern, dst string }{
		{"boot/vmlinuz-*", KernelFile},
		{"boot/initrd.img-*", InitrdFile},
	} {
		matches, err := filepath.Glob(filepath.Join(b.tree(), k.pattern))
		if err != nil {
			return err
		}
		if len(matches) != 1 {
			return fmt.Errorf("want exactly one /%s in the image, got %d", k.pattern, len(matches))
		}
		dst := b.artifact(k.dst)
		b.createdOutputs = append(b.createdOutputs, dst)
		if err := moveFile(matches[0], dst); err != nil {
			return fmt.Errorf("move %s: %w", filepath.Base(matches[0]), err)
		}
		if err := os.Chmod(dst, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// rootfs makes rootfs.ext4 from the tree.
func (b *build) rootfs(ctx context.Context) error {
	content, err := treeBytes(b.tree())
	if err != nil {
		return fmt.Errorf("measure image tree: %w", err)
	}
	b.rootfsBytes = rootfsSize(content)
	dst := b.artifact(RootfsFile)
	b.createdOutputs = append(b.createdOutputs, dst)
	return storage.MakeExt4FromDir(ctx, b.tree(), dst, b.rootfsBytes, RootLabel)
}

// workSeed makes work-seed.ext4 from the image's /root.
func (b *build) workSeed(ctx context.Context) error {
	dst := b.artifact(WorkSeedFile)
	b.createdOutputs = append(b.createdOutputs, dst)
	return storage.MakeExt4FromDir(ctx, b.workTree(), dst, workSeedSize, storage.WorkLabel)
}

// listing lists rootfs.ext4's content (Listing) for Result.ListingSHA256.
func (b *build) listing(ctx context.Context) error {
	l, err := listing(ctx, b.artifact(RootfsFile), b.stage)
	if err != nil {
		return err
	}
	b.listingSHA256 = ListingDigest(l)
	return nil
}

// removeStage removes the scratch directory.
func (b *build) removeStage() error {
	if b.stage == "" {
		return nil
	}
	return removeBuildDir(b.stage)
}

// removeOutputs removes every artifact written so far, and the artifact
// directory if the build made it.
func (b *build) removeOutputs() error {
	var errs []error
	for i := len(b.createdOutputs) - 1; i >= 0; i-- {
		if err := os.Remove(b.createdOutputs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if b.createdArtDir {
		if err := os.Remove(b.opts.ArtifactDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logTail returns the last n lines of a log file, "" if unreadable.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
