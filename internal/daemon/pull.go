package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/image"
	"banger/internal/model"
	"banger/internal/oci"
)

// pulledRootfs is the root filesystem's name in a pulled image's dir.
const pulledRootfs = "rootfs.ext4"

// pullImage serves image.pull. The daemon's configuration supplies what
// the request does not: the owner's Docker credentials (the daemon runs
// as root; the owner's ~/.docker is read, not root's) and the image
// whose kernel the pulled image boots by default.
func (d *Daemon) pullImage(ctx context.Context, req api.ImagePullRequest) (model.Image, error) {
	if req.KernelFrom == "" {
		req.KernelFrom = d.cfg.DefaultImageName
	}
	return d.images.Pull(ctx, req, ownerKeychain(d.cfg.HostHomeDir), reporter(ctx, req.Name))
}

// ownerKeychain reads registry credentials from home/.docker; with no
// home every registry is accessed anonymously.
func ownerKeychain(home string) authn.Keychain {
	if home == "" {
		return authn.NewMultiKeychain() // anonymous for every registry
	}
	return oci.KeychainFromDockerConfig(filepath.Join(home, ".docker"))
}

// Pull imports an OCI or Docker image from a registry as the managed
// image req.Name: oci.Pull makes its root filesystem (banger's agent and
// guest units added), and the kernel, initrd and work seed come from the
// image req.KernelFrom (default: the default image, built when missing),
// linked or copied so that deleting that image leaves this one whole.
// When req.KernelRef names a catalog kernel, the kernel, initrd and
// modules come from it instead; an unknown one is refused before any
// download. The image records the kernel it boots as its KernelRef.
// An image without systemd or sshd gets image.FirstBootFile: its VMs
// install them at their first boot; one that has no package manager
// to do that with is refused. On any error nothing is
// left: no record, no directory.
func (m *images) Pull(ctx context.Context, req api.ImagePullRequest, keychain authn.Keychain, report func(step, msg string)) (_ model.Image, err error) {
	if err := checkRef(req.Ref, req.Insecure); err != nil {
		return model.Image{}, err
	}
	if err := model.ValidateName(req.Name); err != nil {
		return model.Image{}, errdefs.Invalid(fmt.Errorf("pull %s: %w", req.Ref, err))
	}
	var size int64
	if req.Size != "" {
		if size, err = model.ParseSize(req.Size); err != nil {
			return model.Image{}, errdefs.Invalid(fmt.Errorf("pull %s: rootfs size: %w", req.Ref, err))
		}
	}
	if err := m.nameFree(ctx, req.Name); err != nil {
		return model.Image{}, err
	}
	var kern model.Kernel
	if req.KernelRef != "" {
		if kern, err = m.store.GetKernel(ctx, req.KernelRef); err != nil {
			return model.Image{}, fmt.Errorf("pull %s: %w; banger kernel list shows the catalog", req.Ref, err)
		}
	}
	if req.KernelFrom == "" {
		req.KernelFrom = model.DefaultImageName
	}
	src, err := m.Resolve(ctx, req.KernelFrom, report)
	if err != nil {
		return model.Image{}, fmt.Errorf("pull %s: kernel source: %w", req.Ref, err)
	}
	agentPath, err := image.FindAgent()
	if err != nil {
		return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	id, err := model.NewID()
	if err != nil {
		return model.Image{}, err
	}
	dir := filepath.Join(m.layout.ImagesDir(), id)
	if err := os.MkdirAll(m.layout.ImagesDir(), 0o755); err != nil {
		return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	defer func() {
		if err == nil {
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove image dir %s: %w", dir, rerr))
		}
	}()

	var progress func(oci.Event)
	if report != nil {
		progress = func(e oci.Event) {
			if step, msg, ok := pullProgress(e); ok {
				report(step, msg)
			}
		}
	}
	res, err := oci.Pull(ctx, oci.PullOptions{
		Options: oci.Options{
			Ref:      req.Ref,
			CacheDir: m.layout.CacheDir,
			Keychain: keychain,
			Insecure: req.Insecure,
			Progress: progress,
		},
		Output:    filepath.Join(dir, pulledRootfs),
		Size:      size,
		AgentPath: agentPath,
	})
	if err != nil {
		return model.Image{}, err
	}
	fb, needsFirstBoot, err := firstBoot(res.Ref, res.Guest)
	if err != nil {
		return model.Image{}, err
	}
	if err := writeLayerList(dir, res); err != nil { // kept in the cache while the image exists
		return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	if needsFirstBoot {
		if err := image.WriteFirstBoot(dir, fb); err != nil {
			return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
		}
		if report != nil {
			report("first-boot", fmt.Sprintf("the image has no %s: each VM %s, which needs NAT (banger vm run --nat)",
				strings.Join(fb.Installs, " and "), fb.Describe()))
		}
	} else if len(res.Guest.MissingTools) > 0 && report != nil {
		report("warning", fmt.Sprintf("the image lacks %s, which banger's guest units run; the VM may boot without an SSH host key or a grown root filesystem",
			strings.Join(res.Guest.MissingTools, ", ")))
	}

	// The kernel, initrd and modules come from the catalog kernel when one
	// is named, else from src; the work seed always from src.
	boot, bootOf, bootShare := src.KernelPath, "image "+src.Name, m.owns(src)
	initrd, modules, kernelRef := src.InitrdPath, src.ModulesDir, src.KernelRef
	if kern.ID != "" {
		boot, bootOf, bootShare = kern.KernelPath, "kernel "+kern.Name, kern.Managed
		initrd, modules, kernelRef = kern.InitrdPath, kern.ModulesDir, kern.Name
	}
	if report != nil {
		msg := fmt.Sprintf("kernel, initrd and work seed from image %s", src.Name)
		if kern.ID != "" {
			msg = fmt.Sprintf("kernel and initrd from kernel %s, work seed from image %s", kern.Name, src.Name)
		}
		report("kernel", msg)
	}
	img := model.Image{
		ID:                            id,
		Name:                          req.Name,
		Managed:                       true,
		ArtifactDir:                   dir,
		RootfsPath:                    res.RootfsPath,
		BuildSize:                     model.FormatSizeBytes(res.RootfsSize),
		SeededSSHPublicKeyFingerprint: src.SeededSSHPublicKeyFingerprint,
		KernelRef:                     kernelRef,
	}
	for _, a := range []struct {
		from  string
		to    *string
		of    string
		share bool
	}{
		{boot, &img.KernelPath, bootOf, bootShare},
		{initrd, &img.InitrdPath, bootOf, bootShare},
		{src.WorkSeedPath, &img.WorkSeedPath, "image " + src.Name, m.owns(src)},
		{modules, &img.ModulesDir, bootOf, bootShare},
	} {
		if a.from == "" {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(a.from))
		if err := linkOrCopy(ctx, a.from, dst, a.share); err != nil {
			return model.Image{}, fmt.Errorf("pull %s: artifacts of %s: %w", req.Ref, a.of, err)
		}
		*a.to = dst
	}
	if img.WorkSeedPath == "" {
		img.SeededSSHPublicKeyFingerprint = ""
	}
	// The kernel's modules, which the image lacks: from the catalog
	// kernel's modules tree, else from the modules tree or the rootfs of
	// the image the kernel comes from.
	rootfs := src.RootfsPath
	if kern.ID != "" {
		rootfs = ""
	}
	if err := m.addModulesDisk(ctx, dir, img.KernelPath, modules, rootfs, bootOf, report); err != nil {
		return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	now := model.Now()
	img.CreatedAt, img.UpdatedAt = now, now
	if err := m.store.CreateImage(ctx, img); err != nil {
		return model.Image{}, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	m.logger.Info("image pulled", "image", img.Name, "ref", res.Ref, "digest", res.Digest, "size", img.BuildSize, "kernel_from", src.Name, "kernel", img.KernelRef)
	return img, nil
}

// checkRef refuses a bad reference before anything is built or fetched.
func checkRef(ref string, insecure bool) error {
	if strings.TrimSpace(ref) == "" {
		return errdefs.Invalid(errors.New("pull: an image reference is required, e.g. debian:bookworm"))
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if _, err := name.ParseReference(ref, opts...); err != nil {
		return errdefs.Invalid(fmt.Errorf("pull %q: invalid image reference: %s", ref, strings.Join(strings.Fields(err.Error()), " ")))
	}
	return nil
}

// nameFree fails with ErrAlreadyExists when an image is called imgName
// (exactly: an id prefix does not count).
func (m *images) nameFree(ctx context.Context, imgName string) error {
	imgs, err := m.store.ListImages(ctx)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if img.Name == imgName {
			return errdefs.WithKind(errdefs.ErrAlreadyExists,
				fmt.Errorf("image %q already exists; delete it or choose another --name", imgName))
		}
	}
	return nil
}

// owns reports whether img's artifacts are banger's own (a managed image
// under the images dir), which may be hard-linked: the files of an
// image registered from elsewhere stay the user's and are copied.
func (m *images) owns(img model.Image) bool {
	return img.Managed && img.ArtifactDir != "" && filepath.Dir(img.ArtifactDir) == m.layout.ImagesDir()
}

// firstBoot says how a VM of an image boots to SSH: ok is false when the
// image has systemd and sshd; otherwise f says what its first boot
// installs with which package manager. An image that lacks them and has
// no shell or package manager to install them with is refused.
func firstBoot(ref string, g oci.Guest) (f image.FirstBoot, ok bool, err error) {
	if !g.HasSystemd {
		f.Installs = append(f.Installs, "systemd")
	}
	if !g.HasSSHD {
		f.Installs = append(f.Installs, "sshd")
	}
	if len(f.Installs) == 0 {
		return image.FirstBoot{}, false, nil
	}
	lacks := strings.Join(f.Installs, " and ")
	if g.PackageManager == "apk" {
		return image.FirstBoot{}, false, errdefs.WithKind(errdefs.ErrNotImplemented, fmt.Errorf(
			"pull %s: the image has no %s, and its package manager, apk (Alpine), cannot install systemd, which banger's guest units run on; use an image based on Debian, Ubuntu or Fedora, or one with systemd and sshd",
			ref, lacks))
	}
	var without []string
	if !g.HasShell {
		without = append(without, "/bin/sh")
	}
	if g.PackageManager == "" {
		without = append(without, "package manager ("+strings.Join(image.FirstBootManagers, ", ")+")")
	}
	if len(without) > 0 {
		return image.FirstBoot{}, false, errdefs.WithKind(errdefs.ErrNotImplemented, fmt.Errorf(
			"pull %s: the image has no %s, and no %s to install them with at first boot; install them in the image (e.g. apt-get install systemd-sysv openssh-server)",
			ref, lacks, strings.Join(without, " and no ")))
	}
	f.PackageManager = g.PackageManager
	return f, true, nil
}

// linkOrCopy gives dst the content of src (a file or directory): a hard
// link when share allows it and both are on one filesystem, else a copy
// that keeps holes and shares blocks where the filesystem can.
func linkOrCopy(ctx context.Context, src, dst string, share bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if share && st.Mode().IsRegular() {
		if err := os.Link(src, dst); err == nil {
			return nil
		}
	}
	if _, err := hostexec.Run(ctx, "cp", copyArgs(src, dst)...); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// copyArgs are cp's arguments to copy src (file or tree) to dst with
// owners, modes and holes kept.
func copyArgs(src, dst string) []string {
	return []string{"-a", "--reflink=auto", "--sparse=always", "--", src, dst}
}

// pullProgress turns an import event into a progress step and message;
// ok is false for events not worth a line.
func pullProgress(e oci.Event) (step, msg string, ok bool) {
	layer := fmt.Sprintf("layer %d/%d %s", e.Layer, e.Layers, shortDigest(e.Digest))
	switch e.Stage {
	case oci.StageResolve:
		return "resolve", "resolve " + e.Detail, true
	case oci.StageDownload:
		switch {
		case e.Cached:
			return api.PullStepLayer, fmt.Sprintf("%s cached (%s)", layer, model.HumanBytes(e.Total)), true
		case e.Bytes >= e.Total:
			return api.PullStepLayer, fmt.Sprintf("%s downloaded (%s)", layer, model.HumanBytes(e.Total)), true
		}
		pct := 0
		if e.Total > 0 {
			pct = int(e.Bytes * 100 / e.Total)
		}
		return api.PullStepDownload, fmt.Sprintf("download %s: %s of %s (%d%%)", layer, model.HumanBytes(e.Bytes), model.HumanBytes(e.Total), pct), true
	case oci.StageUnpack:
		if e.Bytes > 0 {
			return "", "", false // the layer is done; the next step says so
		}
		return "unpack", fmt.Sprintf("unpack %s", layer), true
	case oci.StageGuest:
		return "guest", "add " + e.Detail, true
	case oci.StageRootfs:
		return "rootfs", "make the root filesystem", true
	}
	return "", "", false
}

// shortDigest shortens "sha256:<64 hex>" to its first 12 hex digits.
func shortDigest(d string) string {
	if hex, ok := strings.CutPrefix(d, "sha256:"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return d
}
