package image

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

const (
	testKeyEd25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICQ+aDIZnu50Svkps+qNRiIO3L8a3mU6wK7PgtB5riUl user@host"
	testKeyRSA     = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCtwBXcqorXL9RKoHKs0Lgpz53SE7o1DwTuLX3q/2tnuU03pJ7CCoR7gx3vjH1N3o22P1N1cjOadZFiyaS+uOmwi1WDVZADfwujzFhZc098S2K6FigKE2AnAFl3gX+vbm7riugTBqJk3iG1rhH9fBO2B4zJjUX6SQd0HCHLmy+q6clOVVJ9TpJgE48SVaKU420qDD4n6tMcv8ejV5HHlrrlUGOiUvO4SMF+FXiq1Nr2UQFAuoaJ+hxFNkIBmNjycFraaYx0aIbkQEJwed1sxCTDgNgmnb1jCldG7ceBiJ9BC7pJ+HNl35sWrBID6ANP6TAeUq3pjvwDgCTaucinv84H"
)

func TestFingerprintSSHPublicKey(t *testing.T) {
	// Expected values printed by ssh-keygen -lf.
	tests := []struct {
		name    string
		line    string
		want    string
		wantErr bool
	}{
		{"ed25519 with comment", testKeyEd25519, "SHA256:vbIYg0kcYm4WVteUQEawyEmbmjRlg/CADJN4j6uVUwc", false},
		{"rsa without comment", testKeyRSA, "SHA256:5Okqe6z6ZxPqpG1kcwyirZ0ASwIjbyUDfK9zICFRXaI", false},
		{"surrounding whitespace", "  " + testKeyEd25519 + "\n", "SHA256:vbIYg0kcYm4WVteUQEawyEmbmjRlg/CADJN4j6uVUwc", false},
		{"options prefix", `no-pty,from="10.0.0.1" ` + testKeyEd25519, "SHA256:vbIYg0kcYm4WVteUQEawyEmbmjRlg/CADJN4j6uVUwc", false},
		{"empty", "", "", true},
		{"garbage", "ssh-ed25519 notbase64!", "", true},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "", true},
		{"two lines", testKeyEd25519 + "\n" + testKeyRSA, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FingerprintSSHPublicKey(tt.line)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Errorf("got %q, %v, want an ErrInvalid error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestNamesAndLookup(t *testing.T) {
	if got, want := Names(), []string{"debian-bookworm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := lookupRecipe("debian-bookworm"); err != nil {
		t.Errorf("got %v for debian-bookworm, want nil", err)
	}
	_, err := lookupRecipe("x")
	if !errors.Is(err, errdefs.ErrInvalid) || err.Error() != `unknown image recipe "x"; known: debian-bookworm` {
		t.Errorf("got %v, want ErrInvalid %q", err, `unknown image recipe "x"; known: debian-bookworm`)
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	good := BuildOptions{
		Name:         "debian-bookworm",
		ArtifactDir:  filepath.Join(dir, "art"),
		CacheDir:     filepath.Join(dir, "cache"),
		SSHPublicKey: testKeyEd25519,
		AgentPath:    writeTestAgent(t, dir, false),
	}
	tests := []struct {
		name     string
		mutate   func(*BuildOptions)
		contains []string
	}{
		{"unknown recipe", func(o *BuildOptions) { o.Name = "x" }, []string{`unknown image recipe "x"; known: debian-bookworm`}},
		{"relative dirs", func(o *BuildOptions) { o.ArtifactDir = "art"; o.CacheDir = "" }, []string{`artifact dir "art"`, `cache dir ""`}},
		{"no key", func(o *BuildOptions) { o.SSHPublicKey = "" }, []string{"SSH public key for root is required"}},
		{"bad key", func(o *BuildOptions) { o.SSHPublicKey = "ssh-ed25519 nope" }, []string{"parse ssh public key"}},
		{"bad mirror", func(o *BuildOptions) { o.Mirror = "ftp://x" }, []string{`invalid mirror "ftp://x"`}},
		{"bad suite", func(o *BuildOptions) { o.Suite = "Bookworm;rm" }, []string{`invalid Debian suite "Bookworm;rm"`}},
		{"no agent", func(o *BuildOptions) { o.AgentPath = "" }, []string{"no banger-agent binary given", "/usr/local/lib/banger"}},
		{"missing agent", func(o *BuildOptions) { o.AgentPath = "/nonexistent/banger-agent" }, []string{"banger-agent expected at /nonexistent/banger-agent"}},
		{"dynamic agent", func(o *BuildOptions) { o.AgentPath = writeTestAgent(t, t.TempDir(), true) }, []string{"dynamically linked", "CGO_ENABLED=0"}},
		{"recipe with a bad image name", func(o *BuildOptions) { r := DefaultRecipe(); o.Recipe = &r; o.Name = "../x" }, []string{`image invalid name "../x"`}},
		{"invalid recipe", func(o *BuildOptions) {
			r := DefaultRecipe()
			r.Packages = append(r.Packages, "Bad_Name")
			o.Recipe, o.Name = &r, "mine"
		}, []string{`recipe debian-bookworm: packages[23] "Bad_Name": not a Debian package name`}},
		{"agent not elf", func(o *BuildOptions) {
			o.AgentPath = filepath.Join(dir, "script")
			os.WriteFile(o.AgentPath, []byte("#!/bin/sh\n"), 0o755)
		}, []string{"not an ELF executable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := good
			tt.mutate(&opts)
			_, err := Build(t.Context(), opts)
			if !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("got %v, want an ErrInvalid or ErrNotFound error", err)
			}
			for _, c := range tt.contains {
				if !strings.Contains(err.Error(), c) {
					t.Errorf("got %q, want it to contain %q", err, c)
				}
			}
		})
	}
	if _, err := os.Stat(good.ArtifactDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got artifact dir created by a rejected build (stat: %v), want none", err)
	}
}

func TestBuildNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as root; this test checks the error a non-root user gets")
	}
	dir := t.TempDir()
	_, err := Build(t.Context(), BuildOptions{
		Name: "debian-bookworm", ArtifactDir: filepath.Join(dir, "a"), CacheDir: filepath.Join(dir, "c"), SSHPublicKey: testKeyEd25519,
		AgentPath: writeTestAgent(t, dir, false),
	})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "must run as root") {
		t.Errorf("got %v, want ErrUnavailable saying it must run as root", err)
	}
}

func TestBuildRefusesExistingArtifacts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Build checks for root before it looks at the artifact dir; run as root to test this")
	}
	for _, tool := range []string{"mmdebstrap", "unshare", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH: install mmdebstrap, util-linux and e2fsprogs to run this test", tool)
		}
	}
	dir := t.TempDir()
	art := filepath.Join(dir, "art")
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(art, KernelFile), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(t.Context(), BuildOptions{
		Name: "debian-bookworm", ArtifactDir: art, CacheDir: filepath.Join(dir, "cache"), SSHPublicKey: testKeyEd25519,
		AgentPath: writeTestAgent(t, t.TempDir(), false),
	})
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("got %v, want ErrAlreadyExists", err)
	}
	if b, err := os.ReadFile(filepath.Join(art, KernelFile)); err != nil || string(b) != "keep" {
		t.Errorf("got %q, %v, want the existing artifact untouched", b, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "cache")); len(entries) != 0 {
		t.Errorf("got %d entries in the cache dir, want no scratch left", len(entries))
	}
}
