package daemon

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/paths"
	"banger/internal/store"
)

// newTestImages returns an image catalog over a fresh state directory.
func newTestImages(t *testing.T) (*images, paths.Layout) {
	t.Helper()
	if _, err := os.Stat("/bin/cp"); err != nil {
		t.Skip("needs cp (coreutils)")
	}
	layout := paths.FromHome(t.TempDir())
	if err := layout.Ensure(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), layout.DBFile())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &images{layout: layout, store: st, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, layout
}

// fakeBzImage is the start of a bzImage: a setup header of boot protocol
// 2.15 whose kernel_version string says version, and some payload.
func fakeBzImage(version string) []byte {
	img := make([]byte, 8192)
	img[0x1f1] = 4 // setup sectors
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x020f)
	if version != "" {
		binary.LittleEndian.PutUint16(img[0x20e:], 0x200) // string at 0x400
		copy(img[0x400:], version+" (builder@example) #1 SMP\x00")
	}
	copy(img[4096:], "payload")
	return img
}

// writeTree creates files under dir; names ending in / are directories.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKernelImport(t *testing.T) {
	elf := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...)
	tests := []struct {
		name        string
		files       map[string][]byte
		want        model.Kernel // paths relative to the kernel's dir
		kind        error        // nil for success
		wantErr     string
		wantModules string // a file expected under the copied modules dir
	}{
		{
			name: "bzImage with initrd and modules",
			files: map[string][]byte{
				"vmlinuz": fakeBzImage("6.1.0-28-amd64"), "initrd.img": []byte("initrd"),
				"modules/6.1.0-28-amd64/modules.dep": []byte("dep"),
			},
			want:        model.Kernel{KernelPath: "vmlinuz", InitrdPath: "initrd.img", ModulesDir: "modules", Version: "6.1.0-28-amd64"},
			wantModules: "6.1.0-28-amd64/modules.dep",
		},
		{
			name:  "ELF kernel, version from modules",
			files: map[string][]byte{"vmlinux": elf, "initrd": []byte("i"), "modules/6.12.1-custom/": nil},
			want:  model.Kernel{KernelPath: "vmlinux", InitrdPath: "initrd", ModulesDir: "modules", Version: "6.12.1-custom"},
		},
		{
			name:  "bzImage alone without a version string",
			files: map[string][]byte{"vmlinuz": fakeBzImage("")},
			want:  model.Kernel{KernelPath: "vmlinuz"},
		},
		{"no kernel", map[string][]byte{"initrd.img": []byte("i")}, model.Kernel{}, errdefs.ErrInvalid, "no kernel: want a file named vmlinuz or vmlinux", ""},
		{"two kernels", map[string][]byte{"vmlinuz": fakeBzImage(""), "vmlinux": elf}, model.Kernel{}, errdefs.ErrInvalid, "holds both vmlinuz and vmlinux", ""},
		{"two initrds", map[string][]byte{"vmlinuz": fakeBzImage(""), "initrd": nil, "initrd.img": nil}, model.Kernel{}, errdefs.ErrInvalid, "holds both initrd.img and initrd", ""},
		{"not a kernel", map[string][]byte{"vmlinuz": []byte("#!/bin/sh\n")}, model.Kernel{}, errdefs.ErrInvalid, "neither a bzImage nor an ELF kernel", ""},
		{"kernel is a directory", map[string][]byte{"vmlinuz/": nil}, model.Kernel{}, errdefs.ErrInvalid, "must be a regular file", ""},
		{"modules is a file", map[string][]byte{"vmlinuz": fakeBzImage(""), "modules": []byte("x")}, model.Kernel{}, errdefs.ErrInvalid, "must be a directory", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, layout := newTestImages(t)
			from := t.TempDir()
			writeTree(t, from, tt.files)
			got, err := m.kernels().Import(t.Context(), api.KernelImportRequest{Name: "deb", From: from})
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("got %v, want one line of %v containing %q", err, tt.kind, tt.wantErr)
				}
				assertNoKernels(t, m, layout)
				return
			}
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			dir := filepath.Join(kernelsDir(layout), got.ID)
			rel := func(p string) string {
				if p == "" {
					return ""
				}
				r, err := filepath.Rel(dir, p)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			gotRel := model.Kernel{KernelPath: rel(got.KernelPath), InitrdPath: rel(got.InitrdPath), ModulesDir: rel(got.ModulesDir), Version: got.Version}
			if gotRel != tt.want {
				t.Errorf("got %+v, want %+v", gotRel, tt.want)
			}
			if got.Name != "deb" || !got.Managed {
				t.Errorf("got name %q managed %v, want deb, true", got.Name, got.Managed)
			}
			if data, err := os.ReadFile(got.KernelPath); err != nil || string(data) != string(tt.files[tt.want.KernelPath]) {
				t.Errorf("kernel copy differs from the source (%v)", err)
			}
			if tt.wantModules != "" {
				if _, err := os.Stat(filepath.Join(got.ModulesDir, tt.wantModules)); err != nil {
					t.Errorf("modules not copied: %v", err)
				}
			}
			stored, err := m.store.GetKernel(t.Context(), "deb")
			if err != nil || stored != got {
				t.Errorf("stored %+v (%v), want %+v", stored, err, got)
			}
		})
	}
}

// assertNoKernels fails when a kernel record or directory exists.
func assertNoKernels(t *testing.T, m *images, layout paths.Layout) {
	t.Helper()
	if ks, err := m.store.ListKernels(t.Context()); err != nil || len(ks) != 0 {
		t.Errorf("got %d kernel records (%v), want none", len(ks), err)
	}
	if entries, _ := os.ReadDir(kernelsDir(layout)); len(entries) != 0 {
		t.Errorf("kernels dir holds %v, want nothing", entries)
	}
}

func TestKernelImportRefusals(t *testing.T) {
	m, layout := newTestImages(t)
	from := t.TempDir()
	writeTree(t, from, map[string][]byte{"vmlinuz": fakeBzImage("6.1.0")})
	if _, err := m.kernels().Import(t.Context(), api.KernelImportRequest{Name: "taken", From: from}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  api.KernelImportRequest
		kind error
		want string
	}{
		{"bad name", api.KernelImportRequest{Name: "Bad_Name", From: from}, errdefs.ErrInvalid, "kernel invalid name"},
		{"no from", api.KernelImportRequest{Name: "x"}, errdefs.ErrInvalid, "--from DIR is required"},
		{"relative from", api.KernelImportRequest{Name: "x", From: "kernel"}, errdefs.ErrInvalid, "must be an absolute path"},
		{"missing from", api.KernelImportRequest{Name: "x", From: filepath.Join(from, "nope")}, errdefs.ErrInvalid, "no such file or directory"},
		{"from is a file", api.KernelImportRequest{Name: "x", From: filepath.Join(from, "vmlinuz")}, errdefs.ErrInvalid, "must be a directory"},
		{"duplicate", api.KernelImportRequest{Name: "taken", From: from}, errdefs.ErrAlreadyExists, `kernel "taken" already exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.kernels().Import(t.Context(), tt.req)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line of %v containing %q", err, tt.kind, tt.want)
			}
			if ks, _ := m.store.ListKernels(t.Context()); len(ks) != 1 {
				t.Errorf("got %d kernels, want only the first import", len(ks))
			}
			if entries, _ := os.ReadDir(kernelsDir(layout)); len(entries) != 1 {
				t.Errorf("kernels dir holds %d entries, want 1", len(entries))
			}
		})
	}
}

func TestKernelDeleteAndRegister(t *testing.T) {
	m, layout := newTestImages(t)
	ctx := t.Context()
	from := t.TempDir()
	writeTree(t, from, map[string][]byte{"vmlinuz": fakeBzImage("6.1.0"), "initrd.img": []byte("i"), "modules/6.1.0/": nil})
	kern, err := m.kernels().Import(ctx, api.KernelImportRequest{Name: "deb", From: from})
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs.ext4")
	if err := os.WriteFile(rootfs, []byte("fs"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("register refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			req  api.ImageRegisterRequest
			kind error
			want string
		}{
			{"unknown kernel", api.ImageRegisterRequest{Name: "x", Rootfs: rootfs, KernelRef: "nosuch"}, errdefs.ErrNotFound, `--kernel-ref: kernel "nosuch" not found`},
			{"kernel and ref", api.ImageRegisterRequest{Name: "x", Rootfs: rootfs, Kernel: rootfs, KernelRef: "deb"}, errdefs.ErrInvalid, "exclude each other"},
			{"neither", api.ImageRegisterRequest{Name: "x", Rootfs: rootfs}, errdefs.ErrInvalid, "--kernel is required"},
			{"not a kernel", api.ImageRegisterRequest{Name: "x", Rootfs: rootfs, Kernel: rootfs}, errdefs.ErrInvalid, "--kernel: " + rootfs + " is neither a bzImage nor an ELF kernel"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := m.Register(ctx, tt.req)
				if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("got %v, want one line of %v containing %q", err, tt.kind, tt.want)
				}
			})
		}
	})

	if imgs, err := m.store.ListImages(ctx); err != nil || len(imgs) != 0 {
		t.Fatalf("images after refused registers: got %v, %v; want none", imgs, err)
	}

	var users []model.Image
	for _, name := range []string{"web", "app"} {
		img, err := m.Register(ctx, api.ImageRegisterRequest{Name: name, Rootfs: rootfs, KernelRef: kern.ID[:8]})
		if err != nil {
			t.Fatalf("Register with --kernel-ref: %v", err)
		}
		want := model.Image{KernelRef: "deb", KernelPath: kern.KernelPath, InitrdPath: kern.InitrdPath, ModulesDir: kern.ModulesDir}
		gotRefs := model.Image{KernelRef: img.KernelRef, KernelPath: img.KernelPath, InitrdPath: img.InitrdPath, ModulesDir: img.ModulesDir}
		if gotRefs != want {
			t.Errorf("registered %+v, want %+v", gotRefs, want)
		}
		users = append(users, img)
	}

	err = m.kernels().Delete(ctx, "deb")
	if !errors.Is(err, errdefs.ErrConflict) || err.Error() != `kernel "deb" is used by images app, web; delete them first` {
		t.Fatalf("Delete in use: got %v, want a conflict naming app, web", err)
	}
	if _, err := os.Stat(kern.KernelPath); err != nil {
		t.Errorf("refused delete removed files: %v", err)
	}
	if err := m.kernels().Delete(ctx, "nosuch"); !errors.Is(err, errdefs.ErrNotFound) || err.Error() != `kernel "nosuch" not found` {
		t.Errorf("Delete unknown: got %v, want kernel \"nosuch\" not found", err)
	}
	for _, img := range users {
		if err := m.Delete(ctx, img.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.kernels().Delete(ctx, "deb"); err != nil {
		t.Fatalf("Delete unused: %v", err)
	}
	assertNoKernels(t, m, layout)
	if _, err := os.Stat(from); err != nil {
		t.Errorf("the import source is gone: %v", err)
	}
}

func TestCatalogKernel(t *testing.T) {
	m, layout := newTestImages(t)
	ctx := t.Context()
	newImage := func(name string, kernel []byte) model.Image {
		t.Helper()
		id, err := model.NewID()
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(layout.ImagesDir(), id)
		writeTree(t, dir, map[string][]byte{"vmlinuz": kernel, "initrd.img": []byte("initrd"), "rootfs.ext4": []byte("fs")})
		img := model.Image{ID: id, Name: name, Managed: true, ArtifactDir: dir, RootfsPath: filepath.Join(dir, "rootfs.ext4"),
			KernelPath: filepath.Join(dir, "vmlinuz"), InitrdPath: filepath.Join(dir, "initrd.img")}
		if err := m.store.CreateImage(ctx, img); err != nil {
			t.Fatal(err)
		}
		return img
	}
	links := func(p string) uint64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(st.Sys().(*syscall.Stat_t).Nlink)
	}

	img := m.catalogKernel(ctx, newImage("debian-bookworm", fakeBzImage("6.1.0-28-amd64")))
	if img.KernelRef != "debian-bookworm-kernel" {
		t.Fatalf("got KernelRef %q, want debian-bookworm-kernel", img.KernelRef)
	}
	stored, err := m.store.GetImage(ctx, img.ID)
	if err != nil || stored.KernelRef != img.KernelRef {
		t.Errorf("stored KernelRef %q (%v), want %q", stored.KernelRef, err, img.KernelRef)
	}
	kern, err := m.store.GetKernel(ctx, "debian-bookworm-kernel")
	if err != nil {
		t.Fatal(err)
	}
	if kern.Version != "6.1.0-28-amd64" || filepath.Base(kern.KernelPath) != "vmlinuz" || filepath.Base(kern.InitrdPath) != "initrd.img" {
		t.Errorf("got %+v, want version 6.1.0-28-amd64 with vmlinuz and initrd.img", kern)
	}
	if n := links(kern.KernelPath); n != 2 {
		t.Errorf("kernel has %d links, want 2 (hard-linked with the image's)", n)
	}

	t.Run("a rebuild with the same kernel reuses the entry", func(t *testing.T) {
		if err := m.Delete(ctx, img.ID); err != nil {
			t.Fatal(err)
		}
		again := m.catalogKernel(ctx, newImage("debian-bookworm", fakeBzImage("6.1.0-28-amd64")))
		got, err := m.store.GetKernel(ctx, again.KernelRef)
		if err != nil || got.ID != kern.ID {
			t.Errorf("got kernel %+v (%v), want the first entry %s", got, err, kern.ID)
		}
		img = again
	})

	t.Run("a rebuild with a new kernel replaces the entry", func(t *testing.T) {
		if err := m.Delete(ctx, img.ID); err != nil {
			t.Fatal(err)
		}
		again := m.catalogKernel(ctx, newImage("debian-bookworm", fakeBzImage("6.1.0-29-amd64")))
		got, err := m.store.GetKernel(ctx, again.KernelRef)
		if err != nil || got.ID == kern.ID || got.Version != "6.1.0-29-amd64" {
			t.Errorf("got kernel %+v (%v), want a new entry of 6.1.0-29-amd64", got, err)
		}
		if _, err := os.Stat(filepath.Dir(kern.KernelPath)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the old entry's dir is still there (%v)", err)
		}
		img = again
	})

	t.Run("an entry other images use is kept", func(t *testing.T) {
		if _, err := m.Register(ctx, api.ImageRegisterRequest{Name: "user", Rootfs: img.RootfsPath, KernelRef: img.KernelRef}); err != nil {
			t.Fatal(err)
		}
		if err := m.Delete(ctx, img.ID); err != nil {
			t.Fatal(err)
		}
		again := m.catalogKernel(ctx, newImage("debian-bookworm", fakeBzImage("6.2.0")))
		if again.KernelRef != "" {
			t.Errorf("got KernelRef %q, want none: the entry holds another kernel", again.KernelRef)
		}
		if got, err := m.store.GetKernel(ctx, "debian-bookworm-kernel"); err != nil || got.Version != "6.1.0-29-amd64" {
			t.Errorf("got %+v (%v), want the entry the user image needs", got, err)
		}
	})
}

func TestPullUnknownKernelRef(t *testing.T) {
	m, layout := newTestImages(t)
	_, err := m.Pull(t.Context(), api.ImagePullRequest{Ref: "debian:12", Name: "x", KernelRef: "nosuch"}, nil, nil)
	want := `pull debian:12: kernel "nosuch" not found; banger kernel list shows the catalog`
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if entries, _ := os.ReadDir(layout.ImagesDir()); len(entries) != 0 {
		t.Errorf("images dir holds %v, want nothing", entries)
	}
}
