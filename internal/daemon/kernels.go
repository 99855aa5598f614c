package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/kernel"
	"banger/internal/model"
	"banger/internal/paths"
	"banger/internal/rpc"
	"banger/internal/store"
)

// Names a kernel import directory may hold, in the order they are
// looked for; at most one of each group.
var (
	kernelNames  = []string{"vmlinuz", "vmlinux"}
	initrdNames  = []string{"initrd.img", "initrd"}
	modulesNames = []string{"modules"}
)

// kernelHeadSize is how much of a kernel file is read to check it and
// find its version: the boot sector and up to 255 setup sectors.
const kernelHeadSize = 256 * 512

// kernelsDir is where the catalog keeps managed kernels, one directory
// per kernel id. The Firecracker driver's cache of extracted kernels
// shares it (one directory per content hash).
func kernelsDir(l paths.Layout) string { return filepath.Join(l.StateDir, "kernels") }

// kernels manages the kernel catalog: imports, lookups and removal of
// kernels that images refer to by name.
type kernels struct {
	layout paths.Layout
	store  *store.Store
	logger *slog.Logger
}

// kernels returns the catalog that shares m's state and store.
func (m *images) kernels() *kernels {
	return &kernels{layout: m.layout, store: m.store, logger: m.logger}
}

// registerKernels wires the kernel catalog's RPC methods.
func (d *Daemon) registerKernels(srv *rpc.Server) {
	k := d.images.kernels()
	rpc.Register(srv, api.MethodKernelImport, func(ctx context.Context, req api.KernelImportRequest) (model.Kernel, error) {
		return k.Import(ctx, req)
	})
	rpc.Register(srv, api.MethodKernelList, func(ctx context.Context, _ api.Empty) ([]model.Kernel, error) {
		return k.store.ListKernels(ctx)
	})
	rpc.Register(srv, api.MethodKernelShow, func(ctx context.Context, r api.Ref) (model.Kernel, error) {
		return k.store.GetKernel(ctx, r.Ref)
	})
	rpc.Register(srv, api.MethodKernelRm, func(ctx context.Context, r api.Ref) (api.Empty, error) {
		return api.Empty{}, k.Delete(ctx, r.Ref)
	})
}

// sourceFile is a file or directory to enter into a kernel's directory
// as name.
type sourceFile struct {
	path, name string
}

// kernelSource is what a catalog kernel is made of; initrd and modules
// are optional (empty path).
type kernelSource struct {
	kernel, initrd, modules sourceFile
}

// Import copies the kernel in req.From into the catalog as req.Name. On
// any error nothing is left: no record, no directory.
func (k *kernels) Import(ctx context.Context, req api.KernelImportRequest) (model.Kernel, error) {
	if err := model.ValidateName(req.Name); err != nil {
		return model.Kernel{}, errdefs.Invalid(fmt.Errorf("kernel %w", err))
	}
	if req.From == "" {
		return model.Kernel{}, errdefs.Invalid(fmt.Errorf("kernel import %s: --from DIR is required", req.Name))
	}
	if !filepath.IsAbs(req.From) {
		return model.Kernel{}, errdefs.Invalid(fmt.Errorf("kernel import %s: --from %q must be an absolute path", req.Name, req.From))
	}
	src, err := findKernelSource(req.From)
	if err != nil {
		return model.Kernel{}, errdefs.Invalid(fmt.Errorf("kernel import %s: %w", req.Name, err))
	}
	version, err := kernelVersion(src)
	if err != nil {
		return model.Kernel{}, errdefs.Invalid(fmt.Errorf("kernel import %s: %w", req.Name, err))
	}
	if err := k.nameFree(ctx, req.Name); err != nil {
		return model.Kernel{}, err
	}
	kern, err := k.create(ctx, req.Name, src, version, false)
	if err != nil {
		return model.Kernel{}, err
	}
	k.logger.Info("kernel imported", "kernel", kern.Name, "version", kern.Version, "from", req.From)
	return kern, nil
}

// Delete removes a kernel no image uses, with its files when managed.
func (k *kernels) Delete(ctx context.Context, ref string) error {
	kern, err := k.store.GetKernel(ctx, ref)
	if err != nil {
		return err
	}
	if err := k.store.DeleteKernel(ctx, kern.ID); err != nil {
		return err
	}
	if dir := k.dirOf(kern); dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove kernel %s files: %w", kern.Name, err)
		}
	}
	k.logger.Info("kernel removed", "kernel", kern.Name)
	return nil
}

// dirOf returns the directory of a managed kernel's files, or "" when
// its files are not banger's own to remove.
func (k *kernels) dirOf(kern model.Kernel) string {
	if !kern.Managed || kern.ID == "" {
		return ""
	}
	dir := filepath.Join(kernelsDir(k.layout), kern.ID)
	if filepath.Dir(kern.KernelPath) != dir {
		return ""
	}
	return dir
}

// nameFree fails with ErrAlreadyExists when a kernel is called name
// (exactly: an id prefix does not count).
func (k *kernels) nameFree(ctx context.Context, name string) error {
	got, err := k.store.GetKernel(ctx, name)
	switch {
	case err == nil && got.Name == name:
		return errdefs.WithKind(errdefs.ErrAlreadyExists,
			fmt.Errorf("kernel %q already exists; remove it with banger kernel rm or choose another name", name))
	case err != nil && !errdefs.IsNotFound(err) && !errdefs.IsInvalid(err):
		return err
	}
	return nil
}

// create enters src into the catalog as name: its files go to a new
// directory under the kernels dir, hard-linked when share allows it,
// else copied. On error the directory is removed.
func (k *kernels) create(ctx context.Context, name string, src kernelSource, version string, share bool) (_ model.Kernel, err error) {
	id, err := model.NewID()
	if err != nil {
		return model.Kernel{}, err
	}
	base := kernelsDir(k.layout)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return model.Kernel{}, fmt.Errorf("kernel %s: %w", name, err)
	}
	dir := filepath.Join(base, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return model.Kernel{}, fmt.Errorf("kernel %s: %w", name, err)
	}
	defer func() {
		if err == nil {
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove kernel dir %s: %w", dir, rerr))
		}
	}()
	kern := model.Kernel{ID: id, Name: name, Version: version, Managed: true, CreatedAt: model.Now()}
	for _, f := range []struct {
		src sourceFile
		to  *string
	}{
		{src.kernel, &kern.KernelPath},
		{src.initrd, &kern.InitrdPath},
		{src.modules, &kern.ModulesDir},
	} {
		if f.src.path == "" {
			continue
		}
		dst := filepath.Join(dir, f.src.name)
		if err := linkOrCopy(ctx, f.src.path, dst, share); err != nil {
			return model.Kernel{}, fmt.Errorf("kernel %s: %w", name, err)
		}
		*f.to = dst
	}
	if err := k.store.CreateKernel(ctx, kern); err != nil {
		return model.Kernel{}, err
	}
	return kern, nil
}

// findKernelSource finds the kernel, initrd and modules in dir.
func findKernelSource(dir string) (kernelSource, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return kernelSource{}, fmt.Errorf("--from %q: %v", dir, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return kernelSource{}, fmt.Errorf("--from %q: must be a directory", dir)
	}
	var src kernelSource
	if src.kernel, err = pickFile(dir, kernelNames, false); err != nil {
		return kernelSource{}, err
	}
	if src.kernel.path == "" {
		return kernelSource{}, fmt.Errorf("--from %q: no kernel: want a file named %s", dir, strings.Join(kernelNames, " or "))
	}
	if src.initrd, err = pickFile(dir, initrdNames, false); err != nil {
		return kernelSource{}, err
	}
	if src.modules, err = pickFile(dir, modulesNames, true); err != nil {
		return kernelSource{}, err
	}
	return src, nil
}

// pickFile returns the one entry of dir called one of names, symbolic
// links followed; none is no error, several are.
func pickFile(dir string, names []string, wantDir bool) (sourceFile, error) {
	var found []sourceFile
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return sourceFile{}, fmt.Errorf("%s: %v", p, errors.Unwrap(err))
		}
		st, err := os.Stat(real)
		if err != nil {
			return sourceFile{}, fmt.Errorf("%s: %v", p, errors.Unwrap(err))
		}
		switch {
		case wantDir && !st.IsDir():
			return sourceFile{}, fmt.Errorf("%s: must be a directory", p)
		case !wantDir && !st.Mode().IsRegular():
			return sourceFile{}, fmt.Errorf("%s: must be a regular file", p)
		}
		found = append(found, sourceFile{path: real, name: name})
	}
	switch len(found) {
	case 0:
		return sourceFile{}, nil
	case 1:
		return found[0], nil
	}
	return sourceFile{}, fmt.Errorf("--from %q holds both %s and %s; keep one", dir, found[0].name, found[1].name)
}

// kernelVersion checks that src's kernel is a bzImage or an ELF kernel
// and returns its release: from the bzImage header, else the name of the
// one release directory in its modules, else "".
func kernelVersion(src kernelSource) (string, error) {
	head, err := readHead(src.kernel.path, kernelHeadSize)
	if err != nil {
		return "", err
	}
	version := ""
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
	default:
		h, err := kernel.ParseHeader(head)
		if err != nil {
			return "", fmt.Errorf("%s is neither a bzImage nor an ELF kernel: %w", src.kernel.path, err)
		}
		version = headerVersion(head, h)
	}
	if version == "" && src.modules.path != "" {
		version = modulesVersion(src.modules.path)
	}
	return version, nil
}

// headerVersion reads the kernel_version string a bzImage's setup header
// points at (boot protocol 2.00+): its first word, e.g.
// "6.1.0-28-amd64".
func headerVersion(head []byte, h kernel.Header) string {
	const offKernelVersion = 0x20e
	ptr := int(binary.LittleEndian.Uint16(head[offKernelVersion:]))
	if ptr == 0 {
		return ""
	}
	off := ptr + 0x200
	if off >= len(head) || off >= (h.SetupSects+1)*512 {
		return ""
	}
	s := head[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	fields := strings.Fields(string(s))
	if len(fields) == 0 || !validRelease(fields[0]) {
		return ""
	}
	return fields[0]
}

// modulesVersion returns the name of dir's only release directory (a
// modules tree as under /lib/modules), or "".
func modulesVersion(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var releases []string
	for _, e := range entries {
		if e.IsDir() && validRelease(e.Name()) {
			releases = append(releases, e.Name())
		}
	}
	if len(releases) != 1 {
		return ""
	}
	return releases[0]
}

// validRelease reports whether s looks like a kernel release: a digit,
// then printable characters without '/'.
func validRelease(s string) bool {
	if s == "" || len(s) > 64 || s[0] < '0' || s[0] > '9' {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' || c == '/' {
			return false
		}
	}
	return true
}

// readHead returns up to n bytes from the start of path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf[:got], nil
}

// catalogKernel enters the kernel of img, an image just built, into the
// catalog as "<image>-kernel" (its files hard-linked) and records it as
// the image's KernelRef. An entry of that name with the same kernel and
// initrd is reused; one with other files that no image uses is replaced.
// Failures are logged: the image is usable without the entry.
func (m *images) catalogKernel(ctx context.Context, img model.Image) model.Image {
	name := img.Name + "-kernel"
	kern, err := m.kernels().ensureImageKernel(ctx, name, img)
	if err == nil {
		img.KernelRef = kern.Name
		if err = m.store.UpdateImage(ctx, img); err == nil {
			if stored, gerr := m.store.GetImage(ctx, img.ID); gerr == nil {
				return stored
			}
			return img
		}
		img.KernelRef = ""
	}
	m.logger.Warn("enter the image's kernel in the kernel catalog", "image", img.Name, "kernel", name, "error", err)
	return img
}

// ensureImageKernel returns the catalog kernel name holding img's
// kernel and initrd, making it when missing.
func (k *kernels) ensureImageKernel(ctx context.Context, name string, img model.Image) (model.Kernel, error) {
	if err := model.ValidateName(name); err != nil {
		return model.Kernel{}, errdefs.Invalid(fmt.Errorf("kernel %w", err))
	}
	src := kernelSource{kernel: sourceFile{img.KernelPath, filepath.Base(img.KernelPath)}}
	if img.InitrdPath != "" {
		src.initrd = sourceFile{img.InitrdPath, filepath.Base(img.InitrdPath)}
	}
	if img.ModulesDir != "" {
		src.modules = sourceFile{img.ModulesDir, "modules"}
	}
	existing, err := k.store.GetKernel(ctx, name)
	switch {
	case err == nil && existing.Name == name:
		same, err := sameFiles(existing.KernelPath, img.KernelPath)
		if err == nil && same {
			same, err = sameFiles(existing.InitrdPath, img.InitrdPath)
		}
		if err != nil {
			return model.Kernel{}, err
		}
		if same {
			return existing, nil
		}
		// Delete refuses while images use the old entry.
		if err := k.Delete(ctx, existing.ID); err != nil {
			return model.Kernel{}, fmt.Errorf("replace kernel %s: %w", name, err)
		}
	case err != nil && !errdefs.IsNotFound(err) && !errdefs.IsInvalid(err):
		return model.Kernel{}, err
	}
	version, err := kernelVersion(src)
	if err != nil {
		return model.Kernel{}, err
	}
	kern, err := k.create(ctx, name, src, version, true)
	if err != nil {
		return model.Kernel{}, err
	}
	k.logger.Info("kernel entered in the catalog", "kernel", kern.Name, "version", kern.Version, "image", img.Name)
	return kern, nil
}

// sameFiles reports whether a and b (either may be "" for none) hold the
// same content.
func sameFiles(a, b string) (bool, error) {
	if a == "" || b == "" {
		return a == b, nil
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	if os.SameFile(sa, sb) {
		return true, nil
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	ha, err := fileSHA256(a)
	if err != nil {
		return false, err
	}
	hb, err := fileSHA256(b)
	if err != nil {
		return false, err
	}
	return ha == hb, nil
}
