package daemon

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/image"
	"banger/internal/model"
	"banger/internal/oci"
)

// What image cache prune looks at. The layer cache and the pull staging
// directories are internal/oci's (CacheDir/oci/...), build scratch
// directories and logs internal/image's (CacheDir/build-NAME-*,
// CacheDir/NAME-build.log), extracted kernels internal/kernel's
// (StateDir/kernels/<sha256 of the boot image>/vmlinux), modules disks
// the daemon's (CacheDir/modules/<sha256 of the kernel>.ext4). A pull or build
// in progress is recognised by files younger than pruneMinAge and by
// directories made since this daemon started: one daemon serves a
// banger home, so what an earlier daemon left half-made is an orphan.

// layerListFile is the file in a pulled image's directory that lists the
// layers it was made of: they stay in the cache while the image exists.
const layerListFile = "layers.json"

// kernelCacheFile is an extracted kernel's name in its cache directory
// (internal/kernel.Cache).
const kernelCacheFile = "vmlinux"

// pruneMinAge: files younger than this are never pruned.
const pruneMinAge = time.Minute

// layerList is layers.json.
type layerList struct {
	Ref    string   `json:"ref"`
	Digest string   `json:"digest"`
	Layers []string `json:"layers"` // "sha256:<hex>", bottom first
}

// writeLayerList records the layers of a pull in the new image's dir.
func writeLayerList(dir string, res *oci.Pulled) error {
	l := layerList{Ref: res.Ref, Digest: res.Digest, Layers: make([]string, len(res.Layers))}
	for i, layer := range res.Layers {
		l.Layers[i] = layer.Digest
	}
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, layerListFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record layers: %w", err)
	}
	return nil
}

// readLayerList returns the layer digests (hex) an image's dir lists;
// none when it has no list.
func readLayerList(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, layerListFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l layerList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", layerListFile, err)
	}
	out := make([]string, 0, len(l.Layers))
	for _, d := range l.Layers {
		h, ok := strings.CutPrefix(d, "sha256:")
		if !ok || !isSHA256Hex(h) {
			return nil, fmt.Errorf("%s: bad digest %q", layerListFile, d)
		}
		out = append(out, h)
	}
	return out, nil
}

// pruneInputs is what decides what a prune removes.
type pruneInputs struct {
	cacheDir  string
	kernelDir string
	// packageDirs are package caches to empty (--packages).
	packageDirs []string
	// usedLayers and usedKernels are the hex digests images need; nil
	// usedLayers means unknown: every layer is kept.
	usedLayers  map[string]bool
	usedKernels map[string]bool
	// catalog holds the ids of the kernel catalog's entries, whose
	// directories share kernelDir and are never pruned.
	catalog map[string]bool
	// now and started (the daemon's start) date files.
	now, started time.Time
	// buildRunning: an image build runs; its scratch dir, log and the
	// package cache are left alone.
	buildRunning bool
	// mounts are the host's mount points; no directory holding one is
	// removed.
	mounts []string
}

// pruneItem is one entry and the paths whose removal frees it.
type pruneItem struct {
	entry api.CacheEntry
	paths []string
}

// plan lists what a prune removes, and notes on what it keeps.
func (in pruneInputs) plan() ([]pruneItem, []string) {
	var items []pruneItem
	var notes []string
	add := func(kind, path string) {
		items = append(items, pruneItem{entry: api.CacheEntry{Kind: kind, Path: path, Bytes: diskUsage(path)}, paths: []string{path}})
	}
	old := func(t time.Time) bool { return in.now.Sub(t) >= pruneMinAge }
	orphan := func(t time.Time) bool { return old(t) && t.Before(in.started) }

	// OCI: staging dirs first, they tell whether a pull runs.
	pulling := false
	staging := filepath.Join(in.cacheDir, "oci", "staging")
	for _, e := range readDir(staging) {
		p := filepath.Join(staging, e.Name())
		info, err := e.Info()
		switch {
		case err != nil:
		case orphan(info.ModTime()) && in.removable(p):
			add(api.CachePullStaging, p)
		default:
			pulling = true
		}
	}
	blobs := filepath.Join(in.cacheDir, "oci", "blobs", "sha256")
	switch {
	case pulling:
		notes = append(notes, "layers kept: an image pull is running")
	case in.usedLayers == nil:
		notes = append(notes, "layers kept: which layers the pulled images need is unknown")
	default:
		for _, e := range readDir(blobs) {
			p := filepath.Join(blobs, e.Name())
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			switch name := e.Name(); {
			case strings.HasPrefix(name, ".download-"):
				if orphan(info.ModTime()) {
					add(api.CacheDownload, p)
				}
			case isSHA256Hex(name) && !in.usedLayers[name] && old(info.ModTime()):
				add(api.CacheLayer, p)
			}
		}
	}

	// Image builds.
	if in.buildRunning {
		notes = append(notes, "build caches kept: an image build is running")
	} else {
		for _, e := range readDir(in.cacheDir) {
			p := filepath.Join(in.cacheDir, e.Name())
			info, err := e.Info()
			if err != nil || !old(info.ModTime()) {
				continue
			}
			switch name := e.Name(); {
			case e.IsDir() && strings.HasPrefix(name, "build-") && in.removable(p):
				add(api.CacheBuildStage, p)
			case info.Mode().IsRegular() && strings.HasSuffix(name, "-build.log"):
				add(api.CacheBuildLog, p)
			}
		}
	}

	// Extracted kernels. The kernel catalog keeps its entries in the same
	// directory, named by id (64 hex digits as well): a directory is an
	// extraction only when it is no catalog entry and holds nothing but
	// a vmlinux and partial extractions.
	for _, e := range readDir(in.kernelDir) {
		if !e.IsDir() || !isSHA256Hex(e.Name()) || in.catalog[e.Name()] {
			continue
		}
		dir := filepath.Join(in.kernelDir, e.Name())
		newest, extraction := time.Time{}, true
		var temps []string
		for _, f := range readDir(dir) {
			info, err := f.Info()
			if err != nil || !info.Mode().IsRegular() {
				extraction = false
				break
			}
			newest = latest(newest, info.ModTime())
			switch {
			case f.Name() == kernelCacheFile:
			case strings.HasPrefix(f.Name(), ".vmlinux-"):
				if orphan(info.ModTime()) {
					temps = append(temps, filepath.Join(dir, f.Name()))
				}
			default:
				extraction = false
			}
		}
		info, err := e.Info()
		if !extraction || err != nil {
			continue
		}
		newest = latest(newest, info.ModTime())
		if !in.usedKernels[e.Name()] && old(newest) && in.removable(dir) {
			add(api.CacheKernel, dir)
			continue
		}
		for _, t := range temps {
			add(api.CacheKernelTemp, t)
		}
	}

	// Modules disks, by the kernel they go with; images hold their own
	// hard links, so only the cache's copy goes.
	modules := filepath.Join(in.cacheDir, "modules")
	for _, e := range readDir(modules) {
		p := filepath.Join(modules, e.Name())
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		switch name := e.Name(); {
		case strings.HasPrefix(name, modulesTempPrefix):
			if orphan(info.ModTime()) {
				add(api.CacheModulesTemp, p)
			}
		case isSHA256Hex(strings.TrimSuffix(name, ".ext4")) && strings.HasSuffix(name, ".ext4") &&
			!in.usedKernels[strings.TrimSuffix(name, ".ext4")] && old(info.ModTime()):
			add(api.CacheModules, p)
		}
	}

	// Debian packages, only when asked.
	if len(in.packageDirs) > 0 && in.buildRunning {
		notes = append(notes, "package cache kept: an image build is running")
	} else {
		for _, dir := range in.packageDirs {
			items = append(items, in.packageItems(dir)...)
		}
	}
	return items, notes
}

// packageItems lists the package files of each suite directory under a
// package cache dir, one item per suite: .deb files and the offline
// index written beside them; anything else stays.
func (in pruneInputs) packageItems(dir string) []pruneItem {
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return nil // missing, or a symlink: not followed
	}
	var items []pruneItem
	for _, e := range readDir(dir) {
		if !e.IsDir() {
			continue
		}
		suite := filepath.Join(dir, e.Name())
		item := pruneItem{entry: api.CacheEntry{Kind: api.CachePackages, Path: suite}}
		for _, f := range readDir(suite) {
			info, err := f.Info()
			if err != nil || !info.Mode().IsRegular() || in.now.Sub(info.ModTime()) < pruneMinAge || !packageFile(f.Name()) {
				continue
			}
			p := filepath.Join(suite, f.Name())
			item.paths = append(item.paths, p)
			item.entry.Bytes += diskUsage(p)
			item.entry.Files++
		}
		if len(item.paths) > 0 {
			items = append(items, item)
		}
	}
	return items
}

// packageFile reports whether name is a file a package cache holds.
func packageFile(name string) bool {
	switch name {
	case "Packages", "Release", "Packages.tmp", "Release.tmp":
		return true
	}
	return strings.HasSuffix(name, ".deb")
}

// removable reports whether dir holds no mount point: a directory an
// unpack or build left mounts in is not removed.
func (in pruneInputs) removable(dir string) bool {
	for _, m := range in.mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			return false
		}
	}
	return true
}

// prune removes items (unless dryRun) and reports them.
func prune(items []pruneItem, dryRun bool) api.CachePruneResult {
	res := api.CachePruneResult{DryRun: dryRun, Entries: []api.CacheEntry{}}
	for _, it := range items {
		e := it.entry
		if !dryRun {
			var errs []error
			for _, p := range it.paths {
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, err)
				}
			}
			if err := errors.Join(errs...); err != nil {
				e.Error = errdefs.OneLine(err.Error())
			}
		}
		if e.Error == "" {
			res.Bytes += e.Bytes
		}
		res.Entries = append(res.Entries, e)
	}
	return res
}

// usedLayers returns the layers the images' layer lists name, or nil and
// a reason when a list cannot be read.
func usedLayers(imgs []model.Image) (map[string]bool, string) {
	used := map[string]bool{}
	for _, img := range imgs {
		if !img.Managed || img.ArtifactDir == "" {
			continue
		}
		layers, err := readLayerList(img.ArtifactDir)
		if err != nil {
			return nil, fmt.Sprintf("the layer list of image %s is unreadable (%v)", img.Name, err)
		}
		for _, l := range layers {
			used[l] = true
		}
	}
	return used, ""
}

// usedKernels returns the sha256 (hex) of every image's kernel, the key
// of its extraction in the kernel cache. Kernels that cannot be read
// have no extraction to keep.
func usedKernels(imgs []model.Image) map[string]bool {
	used := map[string]bool{}
	seen := map[string]bool{}
	for _, img := range imgs {
		if img.KernelPath == "" || seen[img.KernelPath] {
			continue
		}
		seen[img.KernelPath] = true
		if sum, err := fileSHA256(img.KernelPath); err == nil {
			used[sum] = true
		}
	}
	return used
}

// fileSHA256 is the hex sha256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hostMounts lists the mount points of the daemon's mount namespace.
func hostMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			mounts = append(mounts, unescapeOctal(fields[4]))
		}
	}
	return mounts
}

// unescapeOctal undoes mountinfo's \ooo escapes (space, tab, newline,
// backslash).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctalDigits(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctalDigits(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// diskUsage is what path occupies on disk (image.TreeBytes: blocks,
// hard links once); what cannot be read counts as nothing.
func diskUsage(path string) int64 {
	n, _ := image.TreeBytes(path)
	return n
}

// readDir lists dir, sorted; nothing when it cannot be read.
func readDir(dir string) []os.DirEntry {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	return entries
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	return !slices.ContainsFunc([]byte(s), func(c byte) bool {
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f')
	})
}
