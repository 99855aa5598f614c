package aptrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestIndexStanza(t *testing.T) {
	got, err := indexStanza("Package: jq\nVersion: 1.6\n", "jq_1.6_amd64.deb", 1234, "ab12")
	if err != nil {
		t.Fatal(err)
	}
	want := "Package: jq\nVersion: 1.6\nFilename: ./jq_1.6_amd64.deb\nSize: 1234\nSHA256: ab12\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := indexStanza("garbage", "x.deb", 1, "00"); err == nil {
		t.Error("got no error for control data without Package:, want one")
	}
}

func TestWrite(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not in PATH; install dpkg to run this test")
	}
	t.Run("empty cache", func(t *testing.T) {
		if _, err := Write(t.Context(), t.TempDir(), "bookworm"); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("got %v, want an 'is empty' error", err)
		}
	})
	t.Run("one package", func(t *testing.T) {
		cache := t.TempDir()
		pkg := filepath.Join(t.TempDir(), "pkg")
		os.MkdirAll(filepath.Join(pkg, "DEBIAN"), 0o755)
		control := "Package: banger-test\nVersion: 1.0\nArchitecture: all\nMaintainer: banger <dev@banger.invalid>\nDescription: test\nPriority: required\n"
		os.WriteFile(filepath.Join(pkg, "DEBIAN", "control"), []byte(control), 0o644)
		deb := filepath.Join(cache, "banger-test_1.0_all.deb")
		if out, err := exec.Command("dpkg-deb", "--build", "--root-owner-group", pkg, deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb --build: %v: %s", err, out)
		}
		line, err := Write(t.Context(), cache, "bookworm")
		if err != nil {
			t.Fatal(err)
		}
		if want := "deb [trusted=yes] file://" + cache + " ./"; line != want {
			t.Errorf("got source %q, want %q", line, want)
		}
		packages, err := os.ReadFile(filepath.Join(cache, "Packages"))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(deb)
		debSum := sha256.Sum256(data)
		for _, want := range []string{"Package: banger-test", "Priority: required", "Filename: ./banger-test_1.0_all.deb", "SHA256: " + hex.EncodeToString(debSum[:])} {
			if !strings.Contains(string(packages), want) {
				t.Errorf("Packages lacks %q:\n%s", want, packages)
			}
		}
		release, err := os.ReadFile(filepath.Join(cache, "Release"))
		if err != nil {
			t.Fatal(err)
		}
		indexSum := sha256.Sum256(packages)
		for _, want := range []string{"Suite: bookworm", "Codename: bookworm", hex.EncodeToString(indexSum[:])} {
			if !strings.Contains(string(release), want) {
				t.Errorf("Release lacks %q:\n%s", want, release)
			}
		}
	})
}
