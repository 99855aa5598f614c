//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"banger/internal/model"
)

// TestKernelCatalog imports the default image's kernel into the catalog,
// boots an image registered with --kernel-ref on it, and checks that a
// kernel in use cannot be removed, an unused one can, and unknown or
// bad kernels each fail with one line.
func TestKernelCatalog(t *testing.T) {
	e := newEnv(t)
	e.ensureImage()
	cache := imageCacheDir(t)
	var def model.Image
	if err := json.Unmarshal([]byte(e.ok("image", "show", "--json", model.DefaultImageName).stdout), &def); err != nil {
		t.Fatalf("decode image: %v", err)
	}

	// A built default image (not one registered from the suite's cache)
	// has its kernel entered in the catalog, files hard-linked.
	builtKernel := model.DefaultImageName + "-kernel"
	if def.Managed {
		if def.KernelRef != builtKernel {
			t.Errorf("built image has kernel ref %q, want %q", def.KernelRef, builtKernel)
		}
		var bk model.Kernel
		decode(t, e.ok("kernel", "show", "--json", builtKernel).stdout, &bk)
		if same, err := sameInode(bk.KernelPath, def.KernelPath); err != nil || !same {
			t.Errorf("catalog kernel %s is not a hard link of %s (%v)", bk.KernelPath, def.KernelPath, err)
		}
		e.fails(`kernel "`+builtKernel+`" is used by images `+model.DefaultImageName, "kernel", "rm", builtKernel)
	}

	// The import directory links to the image's files: import follows
	// the links and copies the files.
	src := t.TempDir()
	for _, f := range []struct{ from, name string }{{def.KernelPath, "vmlinuz"}, {def.InitrdPath, "initrd.img"}} {
		if err := os.Symlink(f.from, filepath.Join(src, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	var ks []model.Kernel
	decode(t, e.ok("kernel", "list", "--json").stdout, &ks)
	kernelsBefore := len(ks)
	var imported model.Kernel
	decode(t, e.ok("kernel", "import", "deb", "--from", src, "--json").stdout, &imported)

	decode(t, e.ok("kernel", "list", "--json").stdout, &ks)
	if !slices.Contains(ks, imported) || len(ks) != kernelsBefore+1 {
		t.Fatalf("kernel list: got %+v, want %+v added to %d", ks, imported, kernelsBefore)
	}
	var k model.Kernel
	decode(t, e.ok("kernel", "show", "--json", "deb").stdout, &k)
	if k != imported {
		t.Errorf("kernel show: got %+v, want %+v", k, imported)
	}
	if !strings.HasPrefix(k.Version, "6.") || !k.Managed {
		t.Errorf("got version %q managed %v, want a Debian 6.x release, managed", k.Version, k.Managed)
	}
	wantDir := filepath.Join(e.home, "state", "kernels", k.ID)
	for _, p := range []string{k.KernelPath, k.InitrdPath} {
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() || filepath.Dir(p) != wantDir {
			t.Errorf("%s: want a regular file in %s (%v)", p, wantDir, err)
		}
	}
	table := e.ok("kernel", "list").stdout
	if !strings.Contains(table, "deb") || !strings.Contains(table, k.Version) {
		t.Errorf("kernel list table lacks deb %s:\n%s", k.Version, table)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "vmlinuz"), []byte("not a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(cache, "rootfs.ext4")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"show unknown", []string{"kernel", "show", "nope"}, `kernel "nope" not found`},
		{"rm unknown", []string{"kernel", "rm", "nope"}, `kernel "nope" not found`},
		{"register unknown", []string{"image", "register", "--name", "x", "--rootfs", rootfs, "--kernel-ref", "nope"}, `kernel "nope" not found`},
		{"pull unknown", []string{"image", "pull", "debian:bookworm", "--name", "x", "--kernel-ref", "nope"}, `kernel "nope" not found`},
		{"import duplicate", []string{"kernel", "import", "deb", "--from", src}, `kernel "deb" already exists`},
		{"import no kernel", []string{"kernel", "import", "empty", "--from", t.TempDir()}, "no kernel: want a file named vmlinuz or vmlinux"},
		{"import not a kernel", []string{"kernel", "import", "bad", "--from", bad}, "neither a bzImage nor an ELF kernel"},
		{"import bad name", []string{"kernel", "import", "Bad_Name", "--from", src}, "invalid name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.fails(tc.want, tc.args...)
		})
	}
	decode(t, e.ok("kernel", "list", "--json").stdout, &ks)
	if len(ks) != kernelsBefore+1 {
		t.Errorf("got %d kernels after the refusals, want %d", len(ks), kernelsBefore+1)
	}

	// An image on the catalog kernel boots it and keeps it from removal.
	e.ok("image", "register", "--name", "kref", "--rootfs", rootfs,
		"--work-seed", filepath.Join(cache, "work-seed.ext4"), "--kernel-ref", "deb")
	var img model.Image
	decode(t, e.ok("image", "show", "--json", "kref").stdout, &img)
	if img.KernelRef != "deb" || img.KernelPath != k.KernelPath || img.InitrdPath != k.InitrdPath {
		t.Errorf("image kref: got kernel ref %q, kernel %q, initrd %q; want deb, %q, %q",
			img.KernelRef, img.KernelPath, img.InitrdPath, k.KernelPath, k.InitrdPath)
	}
	e.ok("vm", "run", "-d", "--image", "kref", "--name", "kboot")
	if got := strings.TrimSpace(e.ok("vm", "exec", "kboot", "--", "uname", "-r").stdout); got != k.Version {
		t.Errorf("guest runs kernel %q, want %q", got, k.Version)
	}
	e.ok("vm", "delete", "kboot")
	e.fails(`kernel "deb" is used by images kref; delete them first`, "kernel", "rm", "deb")
	if _, err := os.Stat(k.KernelPath); err != nil {
		t.Errorf("refused rm removed the kernel: %v", err)
	}

	// An unused kernel goes, files and all.
	e.ok("image", "delete", "kref")
	e.ok("kernel", "rm", "deb")
	decode(t, e.ok("kernel", "list", "--json").stdout, &ks)
	if len(ks) != kernelsBefore || slices.Contains(ks, imported) {
		t.Errorf("got kernels %+v after rm, want %d without deb", ks, kernelsBefore)
	}
	if _, err := os.Stat(wantDir); !os.IsNotExist(err) {
		t.Errorf("kernel dir %s left after rm (%v)", wantDir, err)
	}
	for _, p := range []string{def.KernelPath, def.InitrdPath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the default image lost %s: %v", p, err)
		}
	}
	e.assertClean("kernel catalog")
}

// sameInode reports whether a and b are links of one file.
func sameInode(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
