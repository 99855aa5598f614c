package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tentry is one entry of a tar built by a test.
type tentry struct {
	name     string
	typ      byte // tar.TypeReg when 0
	body     string
	link     string
	mode     int64 // 0644 (files) or 0755 (dirs) when 0
	uid, gid int
	xattrs   map[string]string
	major    int64
	minor    int64
}

// file, dir, symlink, hardlink and whiteout shorten table entries.
func file(name, body string) tentry { return tentry{name: name, body: body} }
func dir(name string) tentry        { return tentry{name: name, typ: tar.TypeDir} }
func symlink(name, target string) tentry {
	return tentry{name: name, typ: tar.TypeSymlink, link: target}
}
func hardlink(name, target string) tentry {
	return tentry{name: name, typ: tar.TypeLink, link: target}
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// tarBytes builds an uncompressed tar of entries.
func tarBytes(t testing.TB, entries []tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, ModTime: testTime, Devmajor: e.major, Devminor: e.minor,
			Format: tar.FormatPAX,
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatalf("tar body %q: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("close tar: %v", err)
	}
	return buf.Bytes()
}

// gzipBytes compresses b.
func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blobLayer stores blob in dir as a cached layer named by its digest.
func blobLayer(t testing.TB, dir string, blob []byte) Layer {
	t.Helper()
	sum := sha256.Sum256(blob)
	h := hex.EncodeToString(sum[:])
	p := filepath.Join(dir, h)
	if err := os.WriteFile(p, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	return Layer{Digest: "sha256:" + h, Size: int64(len(blob)), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Path: p}
}

// layersOf turns each entry list into a gzipped cached layer.
func layersOf(t testing.TB, lists ...[]tentry) []Layer {
	t.Helper()
	dir := t.TempDir()
	var out []Layer
	for _, l := range lists {
		out = append(out, blobLayer(t, dir, gzipBytes(t, tarBytes(t, l))))
	}
	return out
}

// startRegistry runs an in-memory registry on 127.0.0.1 for the test
// and returns its host:port.
func startRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushImage pushes an image with the given gzipped tar layers and config
// to host/repo:tag and returns the reference.
func pushImage(t testing.TB, host, repo string, cfg v1.Config, layers ...[]byte) string {
	t.Helper()
	var ls []v1.Layer
	for _, blob := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(blob)), nil
		})
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		ls = append(ls, l)
	}
	return pushLayers(t, host, repo, cfg, ls...)
}

// rawLayer is blob as a layer pushed byte for byte, even when it is no
// valid (compressed) tar: a gzip layer when it starts with gzip's magic,
// else an uncompressed one. Its diff ID is its digest (banger reads
// neither).
func rawLayer(blob []byte) v1.Layer {
	mt := types.OCIUncompressedLayer
	if bytes.HasPrefix(blob, []byte{0x1f, 0x8b}) {
		mt = types.OCILayer
	}
	return static.NewLayer(blob, mt)
}

// pushLayers pushes an image of layers with config cfg to
// host/repo:tag and returns the reference.
func pushLayers(t testing.TB, host, repo string, cfg v1.Config, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatalf("append layers: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := host + "/" + repo
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}
