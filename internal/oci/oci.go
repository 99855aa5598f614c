// Package oci imports OCI and Docker images from registries as banger
// images: the core of `banger image pull`. Fetch resolves a reference
// (an index gives its linux/amd64 image) and keeps the layer blobs in a
// cache shared between pulls, keyed and verified by digest. Unpack
// applies layers in order into a directory (whiteouts and opaque
// directories honoured; owners, modes, links, device nodes and xattrs
// kept) and refuses hostile layers. AddGuest puts banger's agent, guest
// units and network setup into the tree, reusing internal/image's
// files, and MakeExt4 makes the rootfs with mkfs.ext4 -d: nothing is
// ever mounted. Pull does all of it and leaves nothing behind on error.
//
// Unpacking needs root to give files their owners and to make device
// nodes. The daemon's image service imports this package.
package oci

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"

	"banger/internal/errdefs"
)

// DefaultPlatform is the platform picked from an index.
const DefaultPlatform = "linux/amd64"

// Errors for hostile or broken layers. Each comes wrapped with the layer
// and entry it was found in, and also matches errdefs.ErrInvalid.
var (
	// ErrPathEscape: an entry's name is absolute or climbs out with "..".
	ErrPathEscape = errors.New("path escapes the image root")
	// ErrSymlinkEscape: an entry would be written through a symlink that
	// leads out of the image root.
	ErrSymlinkEscape = errors.New("path goes through a symlink that leads out of the image root")
	// ErrHardlinkEscape: a hard link's target is outside the image root,
	// missing, or a directory.
	ErrHardlinkEscape = errors.New("hard link target is outside the image root")
	// ErrBadName: a name ext4 and its tools cannot store safely (control
	// characters, a name over 255 bytes, a path over 4095 bytes).
	ErrBadName = errors.New("name cannot be stored in ext4")
	// ErrTooLarge: the layers unpack to more bytes or entries than the
	// limits allow.
	ErrTooLarge = errors.New("image too large")
	// ErrMalformed: a layer is not a well-formed (compressed) tar, holds
	// an entry type banger does not import, or does not match its digest.
	ErrMalformed = errors.New("malformed layer")
)

// Options says which image to fetch and how.
type Options struct {
	// Ref is the image reference, e.g. "debian:bookworm" or
	// "registry.example:5000/team/app@sha256:...".
	Ref string
	// CacheDir holds the layer cache (CacheDir/oci/blobs/sha256/<hex>)
	// and, for Pull, the staging directory. It must be absolute.
	CacheDir string
	// Platform picked from an index; "" means DefaultPlatform.
	Platform string
	// Keychain gives registry credentials; nil means
	// authn.DefaultKeychain (the caller's ~/.docker/config.json). A
	// daemon running for a user passes KeychainFromDockerConfig of that
	// user's ~/.docker.
	Keychain authn.Keychain
	// Insecure allows plain HTTP to the registry (test registries on
	// 127.0.0.1).
	Insecure bool
	// Transport replaces the HTTP transport; nil for the default.
	Transport http.RoundTripper
	// Progress, if set, hears each step; it may be called from several
	// goroutines, one call at a time.
	Progress func(Event)
}

// Stage names in Event.Stage.
const (
	StageResolve  = "resolve"
	StageDownload = "download"
	StageUnpack   = "unpack"
	StageGuest    = "guest"
	StageRootfs   = "rootfs"
)

// Event reports progress.
type Event struct {
	Stage  string
	Layer  int // 1-based layer index for download and unpack, else 0
	Layers int // number of layers
	// LayersDone counts the layers through this stage so far.
	LayersDone int
	Digest     string // the layer's, for download and unpack
	Bytes      int64  // bytes of this layer done (download: compressed)
	Total      int64  // bytes of this layer in all (download: compressed size)
	Cached     bool   // the layer was already in the cache
	Detail     string
}

// ImageConfig is what the image's config says about running it, kept
// for later use (a default command, environment, working directory).
type ImageConfig struct {
	Env        []string
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	User       string
}

// Layer is one layer blob in the cache.
type Layer struct {
	Digest    string // "sha256:<hex>" of the compressed blob
	Size      int64  // compressed size
	MediaType string
	Path      string // the cached blob
}

// hostile wraps one of the layer errors above with what was found; it
// also matches errdefs.ErrInvalid.
func hostile(kind error, format string, args ...any) error {
	return errdefs.Invalid(fmt.Errorf("%w: "+format, append([]any{kind}, args...)...))
}
