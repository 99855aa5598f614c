package api

// MethodImagePromote makes a stopped VM's root filesystem a new managed
// image (params ImagePromoteRequest, result model.Image). Progress
// arrives as NotifyProgress notifications.
const MethodImagePromote = "image.promote"

// MethodImageCachePrune removes cached files no image needs (params
// CachePruneRequest, result CachePruneResult).
const MethodImageCachePrune = "image.cache_prune"

// ImagePromoteRequest promotes the VM VM (id, id prefix or name) to the
// new image Name. The VM must not be running.
type ImagePromoteRequest struct {
	VM   string `json:"vm"`
	Name string `json:"name"`
}

// CachePruneRequest asks what the caches hold that no image needs, and
// unless DryRun, removes it.
type CachePruneRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Packages also empties the Debian package cache image builds share
	// (package_cache_dir, shared by every banger home on the host).
	Packages bool `json:"packages,omitempty"`
}

// Kinds of CacheEntry.
const (
	CacheLayer       = "layer"        // an OCI layer blob no pulled image lists
	CacheDownload    = "download"     // a partial layer download of a daemon that is gone
	CachePullStaging = "pull-staging" // an unpack directory of a pull that died
	CacheBuildStage  = "build-stage"  // a scratch directory of a build that died
	CacheBuildLog    = "build-log"    // the log of an earlier image build
	CacheKernel      = "kernel"       // an extracted kernel no image boots
	CachePackages    = "packages"     // the .deb files of one Debian suite
	CacheKernelTemp  = "kernel-temp"  // a partial kernel extraction of a daemon that is gone
	CacheModules     = "modules"      // a modules disk no image's kernel needs
	CacheModulesTemp = "modules-temp" // a partial modules disk of a daemon that is gone
)

// CachePruneResult lists what was removed, or with DryRun what would be.
type CachePruneResult struct {
	DryRun  bool         `json:"dry_run,omitempty"`
	Entries []CacheEntry `json:"entries"`
	// Bytes is what the entries free (with DryRun, would free); entries
	// that failed are left out.
	Bytes int64 `json:"bytes"`
	// Notes say what was kept on purpose, and why (a pull or build is
	// running).
	Notes []string `json:"notes,omitempty"`
}

// CacheEntry is one file or directory of a cache.
type CacheEntry struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
	// Bytes the entry occupies on disk.
	Bytes int64 `json:"bytes"`
	// Files counts the files of a packages entry.
	Files int `json:"files,omitempty"`
	// Error says why the entry could not be removed.
	Error string `json:"error,omitempty"`
}
