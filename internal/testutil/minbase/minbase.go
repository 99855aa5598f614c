// Package minbase makes Debian bookworm minbase roots with apt and
// without systemd or sshd, as Debian's container images are, for the
// first-boot tests. Test code only; it needs root and mmdebstrap.
package minbase

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"banger/internal/aptrepo"
	"banger/internal/config"
)

// Suite is the Debian suite of the roots Make makes.
const Suite = "bookworm"

// PackageCache is the suite directory of the package cache image builds
// fill: BANGER_PACKAGE_CACHE_DIR, else bangerd's default.
func PackageCache() string {
	dir := os.Getenv("BANGER_PACKAGE_CACHE_DIR")
	if dir == "" {
		dir = config.DefaultPackageCacheDir
	}
	return filepath.Join(dir, Suite)
}

// Repo makes a flat apt repository of the package cache's .debs (linked
// into a directory of the test) with its own index, and returns its
// directory; "" when the cache holds no packages.
func Repo(t testing.TB) string {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(PackageCache(), "*.deb"))
	if len(debs) == 0 {
		return ""
	}
	dir := t.TempDir()
	for _, deb := range debs {
		if err := os.Symlink(deb, filepath.Join(dir, filepath.Base(deb))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := aptrepo.Write(context.Background(), dir, Suite); err != nil {
		t.Fatalf("index the package cache: %v", err)
	}
	return dir
}

// Make writes a minbase root with apt to out: a directory, or a tar
// archive when out ends in .tar. Its packages come from repo (see Repo)
// or, when repo is "", from the Debian mirror.
func Make(t testing.TB, repo, out string) {
	t.Helper()
	source := "http://deb.debian.org/debian"
	if repo != "" {
		source = "deb [trusted=yes] copy://" + repo + " ./"
	}
	args := []string{"--variant=minbase", "--include=apt", "--mode=root", "--quiet"}
	if filepath.Ext(out) == ".tar" {
		args = append(args, "--format=tar")
	}
	cmd := exec.Command("mmdebstrap", append(args, Suite, out, source)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v: %s", err, b)
	}
}
