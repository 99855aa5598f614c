package oci

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/google/go-containerregistry/pkg/name"

	"banger/internal/errdefs"
)

func TestFetchCachesLayers(t *testing.T) {
	host := startRegistry(t)
	cfg := v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}, WorkingDir: "/srv", User: "1000"}
	ref := pushImage(t, host, "test/app:1", cfg,
		gzipBytes(t, tarBytes(t, []tentry{file("a", "1")})),
		gzipBytes(t, tarBytes(t, []tentry{file("b", "2")})))
	cache := t.TempDir()

	var events []Event
	f, err := Fetch(t.Context(), Options{Ref: ref, CacheDir: cache, Insecure: true, Progress: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(f.Layers) != 2 {
		t.Fatalf("got %d layers, want 2", len(f.Layers))
	}
	for _, l := range f.Layers {
		if want := filepath.Join(cache, "oci/blobs/sha256", strings.TrimPrefix(l.Digest, "sha256:")); l.Path != want {
			t.Errorf("layer path = %s, want %s", l.Path, want)
		}
		if st, err := os.Stat(l.Path); err != nil || st.Size() != l.Size {
			t.Errorf("cached blob %s: %v (size want %d)", l.Path, err, l.Size)
		}
	}
	if f.Platform != "linux/amd64" || !strings.HasPrefix(f.Digest, "sha256:") {
		t.Errorf("platform %q digest %q", f.Platform, f.Digest)
	}
	if got := f.Config; got.WorkingDir != "/srv" || got.User != "1000" || !slices.Equal(got.Cmd, []string{"/bin/sh"}) || !slices.Equal(got.Env, []string{"PATH=/bin"}) {
		t.Errorf("config = %+v", got)
	}
	if cached := countCached(events); cached != 0 {
		t.Errorf("cold fetch reported %d cached layers, want 0", cached)
	}
	root := t.TempDir()
	if err := Unpack(t.Context(), f.Layers, root, Limits{}, nil); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if !exists(filepath.Join(root, "a")) || !exists(filepath.Join(root, "b")) {
		t.Errorf("unpacked tree lacks a or b")
	}

	events = nil
	if _, err := Fetch(t.Context(), Options{Ref: ref, CacheDir: cache, Insecure: true, Progress: func(e Event) { events = append(events, e) }}); err != nil {
		t.Fatalf("warm Fetch: %v", err)
	}
	if cached := countCached(events); cached != 2 {
		t.Errorf("warm fetch reported %d cached layers, want 2", cached)
	}
}

func countCached(events []Event) int {
	n := 0
	for _, e := range events {
		if e.Stage == StageDownload && e.Cached {
			n++
		}
	}
	return n
}

func TestFetchConcurrentSharesCache(t *testing.T) {
	host := startRegistry(t)
	img, err := random.Image(1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(host+"/test/random:1", name.Insecure)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Fetch(t.Context(), Options{Ref: r.String(), CacheDir: cache, Insecure: true})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("fetch %d: %v", i, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(cache, "oci/blobs/sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("cache holds %v, want the 3 layer blobs and no temp files", names)
	}
}

func TestFetchErrors(t *testing.T) {
	host := startRegistry(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there now

	// An image for arm64 only.
	armCfg, _ := empty.Image.ConfigFile()
	armCfg = armCfg.DeepCopy()
	armCfg.OS, armCfg.Architecture = "linux", "arm64"
	arm, err := mutate.ConfigFile(empty.Image, armCfg)
	if err != nil {
		t.Fatal(err)
	}
	armRef, _ := name.ParseReference(host+"/test/arm:1", name.Insecure)
	if err := remote.Write(armRef, arm); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		ref  string
		kind error
		say  string
	}{
		{"bad reference", "UPPER/Case::tag", errdefs.ErrInvalid, "invalid image reference"},
		{"empty reference", "", errdefs.ErrInvalid, "reference is required"},
		{"unreachable registry", deadAddr + "/x/y:1", errdefs.ErrUnavailable, "unreachable"},
		{"missing image", host + "/no/such:1", errdefs.ErrNotFound, "not found"},
		{"wrong platform", armRef.String(), errdefs.ErrNotFound, "linux/arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Fetch(t.Context(), Options{Ref: tt.ref, CacheDir: t.TempDir(), Insecure: true})
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Fetch(%q) error = %v, want kind %v", tt.ref, err, tt.kind)
			}
			t.Logf("error: %v", err)
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.say) {
				t.Errorf("error %q: want one line saying %q", msg, tt.say)
			}
		})
	}
}

func TestKeychainFromDockerConfig(t *testing.T) {
	dir := t.TempDir()
	reg, _ := name.NewRegistry("registry.example:5000")
	auth, err := KeychainFromDockerConfig(dir).Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := auth.Authorization(); got.Username != "" {
		t.Errorf("no config: got user %q, want anonymous", got.Username)
	}
	// "dXNlcjpwYXNz" is base64 of user:pass.
	cfg := `{"auths":{"registry.example:5000":{"auth":"dXNlcjpwYXNz"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err = KeychainFromDockerConfig(dir).Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := auth.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "user" || got.Password != "pass" {
		t.Errorf("got %q:%q, want user:pass", got.Username, got.Password)
	}
}
