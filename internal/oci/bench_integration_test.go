//go:build integration

package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"banger/internal/hostexec"
)

// Shape of the benchmark image: benchLayers layers of benchFiles files
// of benchFileSize bytes each (~300 MB), half random and half text-like
// so gzip has some work.
const (
	benchLayers   = 4
	benchFiles    = 300
	benchFileSize = 256 << 10
)

// benchLayer makes one gzipped layer of pseudo-random files.
func benchLayer(b *testing.B, layer int) []byte {
	rng := rand.New(rand.NewPCG(uint64(layer), 42))
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	dirName := fmt.Sprintf("layer%d/", layer)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(tw.WriteHeader(&tar.Header{Name: dirName, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: testTime}))
	data := make([]byte, benchFileSize)
	for i := range benchFiles {
		for j := 0; j < len(data); j += 8 {
			v := rng.Uint64()
			if j >= len(data)/2 {
				v &= 0x0f0f0f0f0f0f0f0f // compressible half
				v |= 0x4040404040404040
			}
			for k := 0; k < 8; k++ {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		must(tw.WriteHeader(&tar.Header{Name: dirName + "f" + strconv.Itoa(i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: testTime}))
		_, err := tw.Write(data)
		must(err)
	}
	must(tw.Close())
	must(zw.Close())
	return buf.Bytes()
}

// BenchmarkPullConvert pulls a ~300 MB image from an in-process registry
// into an ext4 rootfs, with a cold and a warm layer cache, against the
// baseline crane export + tar -xpf + mkfs.ext4 -d measured in the same
// run. Run as root:
//
//	go test -tags integration -run '^$' -bench BenchmarkPullConvert -benchtime 3x ./internal/oci/
func BenchmarkPullConvert(b *testing.B) {
	requireRoot(b)
	host := startRegistry(b)
	var blobs [][]byte
	for i := range benchLayers {
		blobs = append(blobs, benchLayer(b, i))
	}
	ref := pushImage(b, host, "bench/big:1", v1.Config{}, blobs...)
	agent := testAgent(b)
	work := b.TempDir()

	var cold, warm, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		iter := filepath.Join(work, strconv.Itoa(i))
		if err := os.Mkdir(iter, 0o755); err != nil {
			b.Fatal(err)
		}

		// Baseline: crane export, tar -xpf, mkfs.ext4 -d.
		start := time.Now()
		size := baseline(b, ref, iter)
		base += time.Since(start)

		cache := filepath.Join(iter, "cache")
		for _, run := range []struct {
			name string
			d    *time.Duration
		}{{"cold", &cold}, {"warm", &warm}} {
			start := time.Now()
			res, err := Pull(b.Context(), PullOptions{
				Options: Options{Ref: ref, CacheDir: cache, Insecure: true},
				Output:  filepath.Join(iter, run.name+".ext4"), AgentPath: agent, Size: size,
			})
			if err != nil {
				b.Fatalf("%s pull: %v", run.name, err)
			}
			*run.d += time.Since(start)
			if res.RootfsSize != size {
				b.Fatalf("rootfs size %d, want %d", res.RootfsSize, size)
			}
		}
		b.StopTimer()
		if err := os.RemoveAll(iter); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()/n, "cold-s")
	b.ReportMetric(warm.Seconds()/n, "warm-s")
	b.ReportMetric(base.Seconds()/n, "baseline-s")
	b.ReportMetric(cold.Seconds()/base.Seconds(), "cold-ratio")
	b.ReportMetric(warm.Seconds()/base.Seconds(), "warm-ratio")
}

// baseline exports ref's filesystem with crane, extracts it with tar and
// makes an ext4 of it with mkfs.ext4 -d; it returns the size it used
// (the pull's default size for the same content) for Pull to match.
func baseline(b *testing.B, ref, dir string) int64 {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		b.Fatal(err)
	}
	tarPath := filepath.Join(dir, "out.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	if err := crane.Export(img, f); err != nil {
		b.Fatalf("crane export: %v", err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	tree := filepath.Join(dir, "baseline")
	if err := os.Mkdir(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	if _, err := hostexec.Run(b.Context(), "tar", "-xpf", tarPath, "-C", tree); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(tarPath)
	if err != nil {
		b.Fatal(err)
	}
	size := DefaultSize(st.Size() + 64<<20)
	img4 := filepath.Join(dir, "baseline.ext4")
	if err := os.WriteFile(img4, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(img4, size); err != nil {
		b.Fatal(err)
	}
	if _, err := hostexec.Run(b.Context(), "mkfs.ext4", "-q", "-F", "-L", "baseline", "-E", "root_owner=0:0", "-d", tree, img4); err != nil {
		b.Fatal(err)
	}
	return size
}
