package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/oci"
	"banger/internal/storage"
)

// cacheTree builds a cache and kernel dir in a temp dir; files get
// mtimes relative to now.
type cacheTree struct {
	t         *testing.T
	root      string
	cacheDir  string
	kernelDir string
	now       time.Time
}

func newCacheTree(t *testing.T) *cacheTree {
	root := t.TempDir()
	return &cacheTree{t: t, root: root, cacheDir: filepath.Join(root, "cache"), kernelDir: filepath.Join(root, "state", "kernels"), now: time.Now()}
}

// file writes rel (under root) aged age; a rel ending in "/" is a dir.
func (c *cacheTree) file(rel string, age time.Duration) string {
	c.t.Helper()
	p := filepath.Join(c.root, rel)
	if strings.HasSuffix(rel, "/") {
		if err := os.MkdirAll(p, 0o755); err != nil {
			c.t.Fatal(err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", 5000)), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	when := c.now.Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		c.t.Fatal(err)
	}
	return filepath.Clean(p)
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestPrunePlan(t *testing.T) {
	const hour = time.Hour
	used, unused, young := digest("used"), digest("unused"), digest("young")
	kernUsed, kernUnused, catalogID := digest("kernel-used"), digest("kernel-unused"), digest("catalog")

	type built struct {
		in   pruneInputs
		want map[string]string // path -> kind
	}
	setup := func(t *testing.T, tweak func(*cacheTree, *pruneInputs, map[string]string)) built {
		c := newCacheTree(t)
		want := map[string]string{}
		blobs := "cache/oci/blobs/sha256/"
		c.file(blobs+used, 2*hour)
		want[c.file(blobs+unused, 2*hour)] = api.CacheLayer
		c.file(blobs+young, 10*time.Second)
		want[c.file(blobs+".download-0123456789ab-1", 2*hour)] = api.CacheDownload // a dead daemon's
		c.file(blobs+".download-0123456789ab-2", 2*time.Minute)                    // this daemon's pull
		c.file(blobs+"not-a-digest", 2*hour)
		want[c.file("cache/oci/staging/pull-dead/rootfs/etc/passwd", 2*hour)] = "" // inside a pruned dir
		c.file("cache/oci/staging/pull-dead/rootfs/etc/", 2*hour)
		c.file("cache/oci/staging/pull-dead/rootfs/", 2*hour)
		want[c.file("cache/oci/staging/pull-dead/", 2*hour)] = api.CachePullStaging
		want[c.file("cache/build-debian-bookworm-123/tree/x", 2*hour)] = ""
		want[c.file("cache/build-debian-bookworm-123/", 2*hour)] = api.CacheBuildStage
		want[c.file("cache/debian-bookworm-build.log", 2*hour)] = api.CacheBuildLog
		c.file("cache/other-file", 2*hour)
		c.file("cache/debs/bookworm/a.deb", 2*hour) // packages only with --packages
		// Kernels: an unused extraction goes, a used one stays, a catalog
		// entry and a directory holding more than a vmlinux stay.
		want[c.file("state/kernels/"+kernUnused+"/vmlinux", 2*hour)] = ""
		want[c.file("state/kernels/"+kernUnused+"/", 2*hour)] = api.CacheKernel
		c.file("state/kernels/"+kernUsed+"/vmlinux", 2*hour)
		want[c.file("state/kernels/"+kernUsed+"/.vmlinux-123", 2*hour)] = api.CacheKernelTemp
		c.file("state/kernels/"+catalogID+"/vmlinux", 2*hour)
		c.file("state/kernels/"+catalogID+"/", 2*hour)
		// Modules disks: the unused kernel's goes, the used one stays, a
		// dead daemon's partial disk goes, a young one stays.
		want[c.file("cache/modules/"+kernUnused+".ext4", 2*hour)] = api.CacheModules
		c.file("cache/modules/"+kernUsed+".ext4", 2*hour)
		c.file("cache/modules/"+young+".ext4", 10*time.Second)
		want[c.file("cache/modules/.modules-op-0123456789ab.ext4", 2*hour)] = api.CacheModulesTemp
		c.file("cache/modules/.modules-op-ba9876543210.ext4", 2*time.Minute) // this daemon's pull
		c.file("cache/modules/notes.txt", 2*hour)
		other := digest("imported-not-recorded")
		c.file("state/kernels/"+other+"/vmlinuz", 2*hour)
		c.file("state/kernels/"+other+"/initrd.img", 2*hour)
		in := pruneInputs{
			cacheDir:    c.cacheDir,
			kernelDir:   c.kernelDir,
			usedLayers:  map[string]bool{used: true},
			usedKernels: map[string]bool{kernUsed: true},
			catalog:     map[string]bool{catalogID: true},
			now:         c.now,
			started:     c.now.Add(-hour),
		}
		if tweak != nil {
			tweak(c, &in, want)
		}
		for p, kind := range want {
			if kind == "" {
				delete(want, p)
			}
		}
		return built{in: in, want: want}
	}

	tests := []struct {
		name      string
		tweak     func(*cacheTree, *pruneInputs, map[string]string)
		wantNotes []string
	}{
		{name: "idle daemon"},
		{
			name: "pull running",
			tweak: func(c *cacheTree, in *pruneInputs, want map[string]string) {
				c.file("cache/oci/staging/pull-live/", 2*time.Minute) // made since the daemon started
				for p, kind := range want {
					if kind == api.CacheLayer || kind == api.CacheDownload {
						delete(want, p)
					}
				}
			},
			wantNotes: []string{"layers kept: an image pull is running"},
		},
		{
			name: "layers unknown",
			tweak: func(c *cacheTree, in *pruneInputs, want map[string]string) {
				in.usedLayers = nil
				for p, kind := range want {
					if kind == api.CacheLayer || kind == api.CacheDownload {
						delete(want, p)
					}
				}
			},
			wantNotes: []string{"layers kept: which layers the pulled images need is unknown"},
		},
		{
			name: "build running",
			tweak: func(c *cacheTree, in *pruneInputs, want map[string]string) {
				in.buildRunning = true
				in.packageDirs = []string{filepath.Join(c.cacheDir, "debs")}
				for p, kind := range want {
					if kind == api.CacheBuildStage || kind == api.CacheBuildLog {
						delete(want, p)
					}
				}
			},
			wantNotes: []string{"build caches kept: an image build is running", "package cache kept: an image build is running"},
		},
		{
			name: "mount inside a build dir",
			tweak: func(c *cacheTree, in *pruneInputs, want map[string]string) {
				stage := filepath.Join(c.cacheDir, "build-debian-bookworm-123")
				in.mounts = []string{"/", filepath.Join(stage, "tree", "proc")}
				delete(want, stage)
			},
		},
		{
			name: "packages",
			tweak: func(c *cacheTree, in *pruneInputs, want map[string]string) {
				shared := filepath.Join(c.root, "shared-packages")
				in.packageDirs = []string{filepath.Join(c.cacheDir, "debs"), shared}
				want[filepath.Join(c.cacheDir, "debs", "bookworm")] = api.CachePackages
				c.file("shared-packages/bookworm/b.deb", 2*hour)
				c.file("shared-packages/bookworm/Packages", 2*hour)
				c.file("shared-packages/bookworm/young.deb", time.Second)
				c.file("shared-packages/bookworm/lock", 2*hour)
				want[filepath.Join(shared, "bookworm")] = api.CachePackages
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, tc.tweak)
			items, notes := b.in.plan()
			got := map[string]string{}
			for _, it := range items {
				if _, dup := got[it.entry.Path]; dup {
					t.Errorf("entry %s listed twice", it.entry.Path)
				}
				got[it.entry.Path] = it.entry.Kind
				if it.entry.Bytes <= 0 {
					t.Errorf("entry %s: got %d bytes, want its size", it.entry.Path, it.entry.Bytes)
				}
			}
			for p, kind := range b.want {
				if got[p] != kind {
					t.Errorf("%s: got kind %q, want %q", p, got[p], kind)
				}
			}
			for p, kind := range got {
				if _, ok := b.want[p]; !ok {
					t.Errorf("%s (%s) would be pruned; want it kept", p, kind)
				}
			}
			if !slices.Equal(notes, tc.wantNotes) {
				t.Errorf("got notes %q, want %q", notes, tc.wantNotes)
			}
		})
	}
}

func TestPrunePackagesKeepsOtherFiles(t *testing.T) {
	c := newCacheTree(t)
	deb := c.file("pk/bookworm/a.deb", time.Hour)
	young := c.file("pk/bookworm/b.deb", time.Second)
	lock := c.file("pk/bookworm/lock", time.Hour)
	index := c.file("pk/bookworm/Packages", time.Hour)
	in := pruneInputs{cacheDir: c.cacheDir, kernelDir: c.kernelDir, usedLayers: map[string]bool{}, now: c.now, started: c.now,
		packageDirs: []string{filepath.Join(c.root, "pk")}}
	items, _ := in.plan()
	if len(items) != 1 || items[0].entry.Files != 2 {
		t.Fatalf("got %+v, want one packages entry of 2 files", items)
	}
	res := prune(items, false)
	if res.Bytes != items[0].entry.Bytes || res.Entries[0].Error != "" {
		t.Errorf("got %+v, want %d bytes freed without error", res, items[0].entry.Bytes)
	}
	for _, p := range []string{deb, index} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s: got %v, want it removed", p, err)
		}
	}
	for _, p := range []string{young, lock, filepath.Dir(deb)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: got %v, want it kept", p, err)
		}
	}
}

func TestPrune(t *testing.T) {
	c := newCacheTree(t)
	a := c.file("cache/a", time.Hour)
	b := c.file("cache/dir/b", time.Hour)
	items := []pruneItem{
		{entry: api.CacheEntry{Kind: api.CacheLayer, Path: a, Bytes: 10}, paths: []string{a}},
		{entry: api.CacheEntry{Kind: api.CacheBuildStage, Path: filepath.Dir(b), Bytes: 20}, paths: []string{filepath.Dir(b)}},
	}
	t.Run("dry run", func(t *testing.T) {
		res := prune(items, true)
		if !res.DryRun || res.Bytes != 30 || len(res.Entries) != 2 {
			t.Errorf("got %+v, want a dry run of 2 entries and 30 bytes", res)
		}
		for _, p := range []string{a, b} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("dry run removed %s: %v", p, err)
			}
		}
	})
	t.Run("removes", func(t *testing.T) {
		res := prune(items, false)
		if res.DryRun || res.Bytes != 30 {
			t.Errorf("got %+v, want 30 bytes freed", res)
		}
		for _, p := range []string{a, filepath.Dir(b)} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s: got %v, want it removed", p, err)
			}
		}
	})
}

func TestLayerList(t *testing.T) {
	dir := t.TempDir()
	if got, err := readLayerList(dir); err != nil || got != nil {
		t.Errorf("no list: got %v, %v; want nothing", got, err)
	}
	d1, d2 := digest("one"), digest("two")
	res := &oci.Pulled{Fetched: oci.Fetched{Ref: "reg/x:1", Digest: "sha256:" + digest("manifest"),
		Layers: []oci.Layer{{Digest: "sha256:" + d1}, {Digest: "sha256:" + d2}}}}
	if err := writeLayerList(dir, res); err != nil {
		t.Fatal(err)
	}
	got, err := readLayerList(dir)
	if err != nil || !slices.Equal(got, []string{d1, d2}) {
		t.Errorf("got %v, %v; want %v", got, err, []string{d1, d2})
	}
	imgs := []model.Image{{Name: "pulled", Managed: true, ArtifactDir: dir}, {Name: "registered", ArtifactDir: ""}}
	used, why := usedLayers(imgs)
	if why != "" || !used[d1] || !used[d2] || len(used) != 2 {
		t.Errorf("usedLayers: got %v %q, want both layers", used, why)
	}
	if err := os.WriteFile(filepath.Join(dir, layerListFile), []byte(`{"layers":["md5:x"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if used, why := usedLayers(imgs); used != nil || !strings.Contains(why, "pulled") {
		t.Errorf("bad list: got %v %q, want unknown naming the image", used, why)
	}
}

func TestUsedKernels(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(k, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := usedKernels([]model.Image{{KernelPath: k}, {KernelPath: k}, {KernelPath: filepath.Join(dir, "gone")}})
	if len(got) != 1 || !got[digest("kernel")] {
		t.Errorf("got %v, want only the sha256 of the one readable kernel", got)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:             "/plain",
		`/with\040space`:     "/with space",
		`/back\134slash`:     `/back\slash`,
		`/trailing\04`:       `/trailing\04`,
		`/not\999octal\011x`: "/not\\999octal\tx",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestArtifactName(t *testing.T) {
	taken := map[string]bool{"rootfs.ext4": true}
	steps := []struct{ role, path, want string }{
		{"kernel", "/a/vmlinuz", "vmlinuz"},
		{"initrd", "/a/initrd.img", "initrd.img"},
		{"work-seed", "/b/rootfs.ext4", "work-seed-rootfs.ext4"},
		{"modules", "/c/vmlinuz", "modules-vmlinuz"},
		{"modules", "/d/vmlinuz", "modules-2-vmlinuz"},
	}
	for _, s := range steps {
		if got := artifactName(s.role, s.path, taken); got != s.want {
			t.Errorf("artifactName(%s, %s) = %q, want %q", s.role, s.path, got, s.want)
		}
	}
}

func TestPromotable(t *testing.T) {
	tests := []struct {
		name    string
		rec     model.VMRecord
		wantErr error
	}{
		{"stopped", model.VMRecord{Name: "a", State: model.VMStateStopped}, nil},
		{"created", model.VMRecord{Name: "a", State: model.VMStateCreated}, nil},
		{"error", model.VMRecord{Name: "a", State: model.VMStateError}, nil},
		{"running", model.VMRecord{Name: "a", State: model.VMStateRunning}, errdefs.ErrConflict},
		{"being deleted", model.VMRecord{Name: "a", State: model.VMStateStopped, Runtime: model.VMRuntime{Intent: model.IntentDeleting}}, errdefs.ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := promotable(tc.rec)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestSystemDiskOf(t *testing.T) {
	tests := []struct {
		backend    string
		wantFormat string
		wantErr    error
	}{
		{"", storage.FormatQCOW2, nil},
		{string(storage.RootfsReflink), storage.FormatRaw, nil},
		{string(storage.RootfsSparse), storage.FormatRaw, nil},
		{string(storage.RootfsDMSnapshot), "", errdefs.ErrNotImplemented},
	}
	for _, tc := range tests {
		t.Run("backend "+tc.backend, func(t *testing.T) {
			rec := model.VMRecord{Name: "a", Runtime: model.VMRuntime{SystemOverlay: "/v/disk", RootfsBackend: tc.backend}}
			path, format, err := systemDiskOf(rec)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || path != "/v/disk" || format != tc.wantFormat {
				t.Errorf("got %q %q %v, want /v/disk %q", path, format, err, tc.wantFormat)
			}
		})
	}
}
