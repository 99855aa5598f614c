package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"banger/internal/api"
	"banger/internal/image"
	"banger/internal/model"
)

func TestImageDetails(t *testing.T) {
	m, _ := newTestImages(t)
	plainDir, pulledDir := t.TempDir(), t.TempDir()
	if err := image.WriteFirstBoot(pulledDir, image.FirstBoot{PackageManager: "dnf", Installs: []string{"sshd"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pulledDir, image.ModulesDiskName), []byte("ext4"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, img := range []model.Image{
		{ID: "aaaa000000000000000000000000000000000000000000000000000000000000", Name: "plain", ArtifactDir: plainDir, RootfsPath: "/r", KernelPath: "/k"},
		{ID: "bbbb000000000000000000000000000000000000000000000000000000000000", Name: "pulled", ArtifactDir: pulledDir, RootfsPath: "/r", KernelPath: "/k"},
	} {
		if err := m.store.CreateImage(t.Context(), img); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ref         string
		wantFirst   *api.FirstBoot
		wantModules string
	}{
		{"plain", nil, ""},
		{"pulled", &api.FirstBoot{PackageManager: "dnf", Installs: []string{"sshd"}}, filepath.Join(pulledDir, image.ModulesDiskName)},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			d, err := m.Details(t.Context(), tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != tt.ref {
				t.Errorf("got image %q, want %q", d.Name, tt.ref)
			}
			if !reflect.DeepEqual(d.FirstBoot, tt.wantFirst) || d.ModulesDisk != tt.wantModules {
				t.Errorf("got first boot %+v, modules disk %q; want %+v, %q", d.FirstBoot, d.ModulesDisk, tt.wantFirst, tt.wantModules)
			}
		})
	}
	if _, err := m.Details(t.Context(), "nosuch"); err == nil {
		t.Error("details of an unknown image: got no error")
	}
}
