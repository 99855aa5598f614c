//go:build integration

package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// go test -tags integration -run '^$' -bench . ./internal/storage/

// BenchmarkCreateOverlay shows that the overlay's cost does not depend on
// the size of its base.
func BenchmarkCreateOverlay(b *testing.B) {
	requireTools(b, "qemu-img")
	for _, baseSize := range []int64{1 << 30, 8 << 30} {
		b.Run(fmt.Sprintf("base=%dG", baseSize>>30), func(b *testing.B) {
			dir := b.TempDir()
			base := filepath.Join(dir, "rootfs.ext4")
			if err := os.WriteFile(base, nil, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.Truncate(base, baseSize); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				overlay := filepath.Join(dir, fmt.Sprintf("o%d.qcow2", i))
				i++
				if err := CreateOverlay(b.Context(), base, overlay, 16<<30); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCreateWorkDisk measures an 8 GiB work disk from a 256 MiB seed
// (clone, grow, label) and from nothing (mkfs).
func BenchmarkCreateWorkDisk(b *testing.B) {
	requireTools(b, "mkfs.ext4", "resize2fs", "debugfs")
	seed := makeSeed(b, b.TempDir(), 256<<20)
	for _, tc := range []struct{ name, seed string }{{"seed=256M", seed}, {"empty", ""}} {
		b.Run(tc.name+"/size=8G", func(b *testing.B) {
			dir := b.TempDir()
			i := 0
			for b.Loop() {
				dst := filepath.Join(dir, fmt.Sprintf("w%d.ext4", i))
				i++
				if err := CreateWorkDisk(b.Context(), tc.seed, dst, 8<<30); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.Remove(dst)
				b.StartTimer()
			}
		})
	}
}
