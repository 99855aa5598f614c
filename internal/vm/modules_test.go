package vm

import (
	"os"
	"path/filepath"
	"testing"

	"banger/internal/image"
	"banger/internal/vmm"
)

// A VM of an image with a modules disk gets it as a third, read-only
// disk; one without gets two disks.
func TestModulesDiskAttached(t *testing.T) {
	drv := &testDriver{t: t, name: "qemu"}
	f := newLifecycleFixture(t, drv)
	f.create(t, "plain", false)
	if disks := drv.lastSpec(t).Disks; len(disks) != 2 {
		t.Errorf("got %d disks without a modules disk, want 2: %+v", len(disks), disks)
	}

	img := f.img
	img.ArtifactDir = filepath.Dir(img.RootfsPath)
	modules := filepath.Join(img.ArtifactDir, image.ModulesDiskName)
	if err := os.WriteFile(modules, []byte("ext4"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.s.store.UpdateImage(t.Context(), img); err != nil {
		t.Fatal(err)
	}
	f.s.images = testImages{img}
	f.create(t, "with-modules", false)
	disks := drv.lastSpec(t).Disks
	want := vmm.Disk{ID: "modules", Path: modules, Format: "raw", ReadOnly: true}
	if len(disks) != 3 || disks[2] != want {
		t.Errorf("got disks %+v, want a third %+v", disks, want)
	}
}
