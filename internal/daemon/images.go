package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
	"banger/internal/paths"
	"banger/internal/sshkey"
	"banger/internal/store"
)

// images manages the image catalog: builds from recipes, registration of
// local artifacts, lookup and deletion.
type images struct {
	layout paths.Layout
	store  *store.Store
	key    sshkey.Key
	logger *slog.Logger
	// packageCache keeps downloaded packages between builds.
	packageCache string

	buildMu sync.Mutex // one image build at a time
}

// Resolve returns the image called name, building it first when it is a
// known recipe that has not been built yet.
func (m *images) Resolve(ctx context.Context, name string, report func(step, msg string)) (model.Image, error) {
	img, err := m.store.GetImage(ctx, name)
	if err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	if !knownRecipe(name) {
		return model.Image{}, fmt.Errorf("image %q not found: build one with banger image build or register one with banger image register: %w", name, errdefs.ErrNotFound)
	}
	if report != nil {
		report("image", fmt.Sprintf("image %s is not built yet; building it now (the first build takes a few minutes)", name))
	}
	return m.Build(ctx, api.ImageBuildRequest{Name: name}, report)
}

// Build builds a managed image from its recipe and registers it.
func (m *images) Build(ctx context.Context, req api.ImageBuildRequest, report func(step, msg string)) (model.Image, error) {
	if req.Name == "" {
		req.Name = model.DefaultImageName
	}
	// A recipe in the request is built under the image name req.Name;
	// otherwise req.Name is an embedded recipe.
	var recipe *image.Recipe
	if req.Recipe != "" {
		if err := model.ValidateName(req.Name); err != nil {
			return model.Image{}, errdefs.Invalid(fmt.Errorf("image %w", err))
		}
		r, err := image.ParseRecipe([]byte(req.Recipe), req.RecipeDir)
		if err != nil {
			return model.Image{}, fmt.Errorf("build image %q: recipe: %w", req.Name, err)
		}
		recipe = &r
	} else if !knownRecipe(req.Name) {
		return model.Image{}, errdefs.Invalid(fmt.Errorf("unknown image recipe %q; known: %s", req.Name, strings.Join(image.Names(), ", ")))
	}
	m.buildMu.Lock()
	defer m.buildMu.Unlock()
	existing, err := m.store.GetImage(ctx, req.Name)
	switch {
	case err == nil && !req.Force:
		return existing, nil
	case err == nil:
		if users, err := m.store.VMsUsingImage(ctx, existing.ID); err == nil && len(users) > 0 {
			return model.Image{}, fmt.Errorf("image %q is used by vms %v; delete them before rebuilding: %w", req.Name, users, errdefs.ErrConflict)
		}
	case !errdefs.IsNotFound(err):
		return model.Image{}, err
	}
	agentPath, err := image.FindAgent()
	if err != nil {
		return model.Image{}, fmt.Errorf("build image %q: %w", req.Name, err)
	}
	id, err := model.NewID()
	if err != nil {
		return model.Image{}, err
	}
	dir := filepath.Join(m.layout.ImagesDir(), id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return model.Image{}, fmt.Errorf("build image %q: %w", req.Name, err)
	}
	res, err := image.Build(ctx, image.BuildOptions{
		AgentPath:    agentPath,
		Name:         req.Name,
		Recipe:       recipe,
		Mirror:       req.Mirror,
		ArtifactDir:  dir,
		CacheDir:     m.layout.CacheDir,
		PackageCache: m.packageCache,
		SSHPublicKey: m.key.AuthorizedLine,
		Progress:     stepReporter(report),
	})
	if err != nil {
		os.RemoveAll(dir)
		return model.Image{}, fmt.Errorf("build image %q: %w", req.Name, err)
	}
	now := model.Now()
	img := model.Image{
		ID:                            id,
		Name:                          req.Name,
		Managed:                       true,
		ArtifactDir:                   dir,
		RootfsPath:                    res.RootfsPath,
		WorkSeedPath:                  res.WorkSeedPath,
		KernelPath:                    res.KernelPath,
		InitrdPath:                    res.InitrdPath,
		BuildSize:                     res.BuildSize,
		SeededSSHPublicKeyFingerprint: res.SeededSSHPublicKeyFingerprint,
		CreatedAt:                     now,
		UpdatedAt:                     now,
	}
	if existing.ID != "" {
		if err := m.Delete(ctx, existing.ID); err != nil {
			os.RemoveAll(dir)
			return model.Image{}, err
		}
	}
	if err := m.store.CreateImage(ctx, img); err != nil {
		os.RemoveAll(dir)
		return model.Image{}, err
	}
	img = m.catalogKernel(ctx, img)
	m.logger.Info("image built", "image", img.Name, "size", img.BuildSize)
	return img, nil
}

// Register records local artifacts as an unmanaged image. The files stay
// where they are and are not removed by image delete.
func (m *images) Register(ctx context.Context, req api.ImageRegisterRequest) (model.Image, error) {
	if err := model.ValidateName(req.Name); err != nil {
		return model.Image{}, errdefs.Invalid(fmt.Errorf("image %w", err))
	}
	var kern model.Kernel
	if req.KernelRef != "" {
		if req.Kernel != "" {
			return model.Image{}, errdefs.Invalid(errors.New("--kernel and --kernel-ref exclude each other; give one"))
		}
		var err error
		if kern, err = m.store.GetKernel(ctx, req.KernelRef); err != nil {
			return model.Image{}, fmt.Errorf("--kernel-ref: %w; banger kernel list shows the catalog", err)
		}
		req.Kernel = kern.KernelPath
		if req.Initrd == "" {
			req.Initrd = kern.InitrdPath
		}
		if req.Modules == "" {
			req.Modules = kern.ModulesDir
		}
	}
	files := []struct {
		flag, path string
		required   bool
		dir        bool
	}{
		{"--rootfs", req.Rootfs, true, false},
		{"--kernel", req.Kernel, true, false},
		{"--initrd", req.Initrd, false, false},
		{"--work-seed", req.WorkSeed, false, false},
		{"--modules", req.Modules, false, true},
	}
	for _, f := range files {
		if f.path == "" {
			if f.required {
				return model.Image{}, errdefs.Invalid(fmt.Errorf("%s is required", f.flag))
			}
			continue
		}
		if !filepath.IsAbs(f.path) {
			return model.Image{}, errdefs.Invalid(fmt.Errorf("%s %q: must be an absolute path", f.flag, f.path))
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return model.Image{}, errdefs.Invalid(fmt.Errorf("%s %q: %v", f.flag, f.path, errors.Unwrap(err)))
		}
		if st.IsDir() != f.dir {
			want := "a file"
			if f.dir {
				want = "a directory"
			}
			return model.Image{}, errdefs.Invalid(fmt.Errorf("%s %q: must be %s", f.flag, f.path, want))
		}
	}
	// A file QEMU cannot boot would only show as an SSH wait that
	// times out minutes later.
	if _, err := kernelVersion(kernelSource{kernel: sourceFile{req.Kernel, filepath.Base(req.Kernel)}}); err != nil {
		return model.Image{}, errdefs.Invalid(fmt.Errorf("--kernel: %w", err))
	}
	id, err := model.NewID()
	if err != nil {
		return model.Image{}, err
	}
	now := model.Now()
	img := model.Image{
		ID:           id,
		Name:         req.Name,
		RootfsPath:   req.Rootfs,
		WorkSeedPath: req.WorkSeed,
		KernelPath:   req.Kernel,
		InitrdPath:   req.Initrd,
		ModulesDir:   req.Modules,
		KernelRef:    kern.Name,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if err := m.store.CreateImage(ctx, img); err != nil {
		return model.Image{}, err
	}
	return img, nil
}

// Delete removes an image no VM uses, with its artifacts when managed.
func (m *images) Delete(ctx context.Context, ref string) error {
	img, err := m.store.GetImage(ctx, ref)
	if err != nil {
		return err
	}
	if err := m.store.DeleteImage(ctx, img.ID); err != nil {
		return err
	}
	if img.Managed && img.ArtifactDir != "" && filepath.Dir(img.ArtifactDir) == m.layout.ImagesDir() {
		if err := os.RemoveAll(img.ArtifactDir); err != nil {
			return fmt.Errorf("remove image files: %w", err)
		}
	}
	return nil
}

func knownRecipe(name string) bool { return slices.Contains(image.Names(), name) }

// stepReporter prefixes build progress with its step name.
func stepReporter(report func(step, msg string)) func(step, msg string) {
	if report == nil {
		return nil
	}
	return func(step, msg string) {
		if msg != "" && step != "offline" {
			msg = step + ": " + msg
		}
		report(step, msg)
	}
}
