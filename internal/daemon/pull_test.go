package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/oci"
)

func TestPullProgress(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name     string
		event    oci.Event
		wantStep string
		wantMsg  string
		wantOK   bool
	}{
		{"resolve", oci.Event{Stage: oci.StageResolve, Detail: "127.0.0.1:5000/debian:test"}, "resolve", "resolve 127.0.0.1:5000/debian:test", true},
		{"download running", oci.Event{Stage: oci.StageDownload, Layer: 1, Layers: 2, Digest: digest, Bytes: 8 << 20, Total: 32 << 20},
			api.PullStepDownload, "download layer 1/2 0123456789ab: 8.0 MiB of 32.0 MiB (25%)", true},
		{"download done", oci.Event{Stage: oci.StageDownload, Layer: 2, Layers: 2, Digest: digest, Bytes: 32 << 20, Total: 32 << 20},
			api.PullStepLayer, "layer 2/2 0123456789ab downloaded (32.0 MiB)", true},
		{"cached", oci.Event{Stage: oci.StageDownload, Layer: 1, Layers: 1, Digest: digest, Bytes: 2048, Total: 2048, Cached: true},
			api.PullStepLayer, "layer 1/1 0123456789ab cached (2.0 KiB)", true},
		{"unpack start", oci.Event{Stage: oci.StageUnpack, Layer: 1, Layers: 2, Digest: digest, Total: 10},
			"unpack", "unpack layer 1/2 0123456789ab", true},
		{"unpack done is silent", oci.Event{Stage: oci.StageUnpack, Layer: 1, Layers: 2, Digest: digest, Bytes: 10, Total: 10}, "", "", false},
		{"guest", oci.Event{Stage: oci.StageGuest, Detail: "banger-agent"}, "guest", "add banger-agent", true},
		{"rootfs", oci.Event{Stage: oci.StageRootfs, Detail: "/x/rootfs.ext4"}, "rootfs", "make the root filesystem", true},
		{"unknown stage", oci.Event{Stage: "other"}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, msg, ok := pullProgress(tt.event)
			if step != tt.wantStep || msg != tt.wantMsg || ok != tt.wantOK {
				t.Errorf("pullProgress = %q, %q, %v; want %q, %q, %v", step, msg, ok, tt.wantStep, tt.wantMsg, tt.wantOK)
			}
		})
	}
}

func TestFirstBoot(t *testing.T) {
	tests := []struct {
		name    string
		guest   oci.Guest
		want    image.FirstBoot // zero: none needed
		wantErr []string        // substrings of the error; nil for no error
	}{
		{"both", oci.Guest{HasSystemd: true, HasSSHD: true, HasShell: true, PackageManager: "apt-get"}, image.FirstBoot{}, nil},
		{"no sshd, apt", oci.Guest{HasSystemd: true, HasShell: true, PackageManager: "apt-get"},
			image.FirstBoot{PackageManager: "apt-get", Installs: []string{"sshd"}}, nil},
		{"neither, dnf", oci.Guest{HasShell: true, PackageManager: "dnf"},
			image.FirstBoot{PackageManager: "dnf", Installs: []string{"systemd", "sshd"}}, nil},
		{"no package manager", oci.Guest{HasSSHD: true, HasShell: true}, image.FirstBoot{},
			[]string{"has no systemd,", "package manager (apt-get, dnf, microdnf, yum)"}},
		{"no shell", oci.Guest{PackageManager: "apt-get"}, image.FirstBoot{},
			[]string{"has no systemd and sshd, and no /bin/sh to install"}},
		{"alpine", oci.Guest{HasShell: true, PackageManager: "apk"}, image.FirstBoot{},
			[]string{"has no systemd and sshd, and its package manager, apk (Alpine), cannot install systemd"}},
		{"nothing", oci.Guest{}, image.FirstBoot{},
			[]string{"has no systemd and sshd, and no /bin/sh and no package manager (apt-get, dnf, microdnf, yum) to install"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := firstBoot("r/x:1", tt.guest)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if ok != (tt.want.PackageManager != "") || !reflect.DeepEqual(got, tt.want) {
					t.Errorf("firstBoot = %+v, %v; want %+v", got, ok, tt.want)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrNotImplemented) {
				t.Fatalf("got %v, want ErrNotImplemented", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestCopyArgs(t *testing.T) {
	got := copyArgs("/a/vmlinuz", "/b/vmlinuz")
	want := []string{"-a", "--reflink=auto", "--sparse=always", "--", "/a/vmlinuz", "/b/vmlinuz"}
	if !slices.Equal(got, want) {
		t.Errorf("copyArgs = %q, want %q", got, want)
	}
}

func TestLinkOrCopy(t *testing.T) {
	if _, err := os.Stat("/bin/cp"); err != nil {
		t.Skip("needs cp (coreutils)")
	}
	tests := []struct {
		name     string
		share    bool
		wantLink bool
	}{
		{"shared file is linked", true, true},
		{"foreign file is copied", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			if err := os.WriteFile(src, []byte("kernel"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := linkOrCopy(t.Context(), src, dst, tt.share); err != nil {
				t.Fatalf("linkOrCopy: %v", err)
			}
			if got, err := os.ReadFile(dst); err != nil || string(got) != "kernel" {
				t.Fatalf("dst holds %q, %v; want kernel", got, err)
			}
			st, _ := os.Stat(src)
			if links := st.Sys().(*syscall.Stat_t).Nlink; (links == 2) != tt.wantLink {
				t.Errorf("src has %d links; want linked %v", links, tt.wantLink)
			}
			if err := os.Remove(src); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(dst); err != nil || string(got) != "kernel" {
				t.Errorf("after removing src, dst holds %q, %v; want kernel", got, err)
			}
		})
	}
}

// TestPullRefusesEarly checks the requests refused before anything is
// fetched or made: each is one line of the right kind and leaves no
// image record or directory.
func TestPullRefusesEarly(t *testing.T) {
	m, layout := newTestImages(t)
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, fakeBzImage("6.1.0-28-amd64"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Register(t.Context(), api.ImageRegisterRequest{Name: "taken", Rootfs: kernel, Kernel: kernel}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  api.ImagePullRequest
		kind error
		want string
	}{
		{"empty ref", api.ImagePullRequest{Name: "x"}, errdefs.ErrInvalid, "an image reference is required"},
		{"bad ref", api.ImagePullRequest{Ref: "not a ref!", Name: "x"}, errdefs.ErrInvalid, "invalid image reference"},
		{"bad name", api.ImagePullRequest{Ref: "debian:12", Name: "Bad_Name"}, errdefs.ErrInvalid, "invalid name"},
		{"bad size", api.ImagePullRequest{Ref: "debian:12", Name: "x", Size: "lots"}, errdefs.ErrInvalid, "rootfs size"},
		{"name taken", api.ImagePullRequest{Ref: "debian:12", Name: "taken"}, errdefs.ErrAlreadyExists, `image "taken" already exists`},
		{"unknown kernel image", api.ImagePullRequest{Ref: "debian:12", Name: "x", KernelFrom: "nosuch"}, errdefs.ErrNotFound, `image "nosuch" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Pull(t.Context(), tt.req, nil, nil)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Pull error = %v, want %v containing %q", err, tt.kind, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			imgs, err := m.store.ListImages(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != 1 {
				t.Errorf("got %d image records, want only the registered one", len(imgs))
			}
			if entries, _ := os.ReadDir(layout.ImagesDir()); len(entries) != 0 {
				t.Errorf("images dir holds %v, want nothing", entries)
			}
		})
	}
}

func TestOwnerKeychain(t *testing.T) {
	withCreds := t.TempDir()
	if err := os.MkdirAll(filepath.Join(withCreds, ".docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := `{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpzZWNyZXQ="}}}` // user:secret
	if err := os.WriteFile(filepath.Join(withCreds, ".docker", "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		home     string
		wantUser string // "" for anonymous
	}{
		{"no home", "", ""},
		{"home without docker config", t.TempDir(), ""},
		{"home with credentials", withCreds, "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := name.ParseReference("127.0.0.1:5000/team/app:1")
			if err != nil {
				t.Fatal(err)
			}
			auth, err := ownerKeychain(tt.home).Resolve(ref.Context())
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			got, err := auth.Authorization()
			if err != nil {
				t.Fatalf("Authorization: %v", err)
			}
			if got.Username != tt.wantUser {
				t.Errorf("got user %q, want %q", got.Username, tt.wantUser)
			}
		})
	}
}
