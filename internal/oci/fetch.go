package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"banger/internal/errdefs"
)

// Fetched is a resolved image whose layers are all in the cache.
type Fetched struct {
	Ref      string // the reference as parsed, e.g. "index.docker.io/library/debian:bookworm"
	Digest   string // manifest digest of the platform's image
	Platform string
	Config   ImageConfig
	Layers   []Layer // bottom first
}

// downloadJobs bounds the layers downloaded at once.
const downloadJobs = 3

// Fetch resolves opts.Ref (from an index, the opts.Platform image) and
// downloads the layers missing from the cache, verifying each against
// its digest; blobs land under their final name only once complete, so
// concurrent pulls of the same layers are safe. A bad reference is an
// errdefs.ErrInvalid error, an unreachable registry errdefs.ErrUnavailable
// and a missing image or platform errdefs.ErrNotFound, each on one line.
func Fetch(ctx context.Context, opts Options) (*Fetched, error) {
	f, dl, err := startFetch(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := dl.wait(); err != nil {
		return nil, err
	}
	return f, nil
}

// startFetch resolves the image and starts downloading its missing
// layers, in order, downloadJobs at a time; dl tells when each is in the
// cache, so unpacking can start with the first.
func startFetch(ctx context.Context, opts Options) (f *Fetched, dl *downloads, err error) {
	if opts.Platform == "" {
		opts.Platform = DefaultPlatform
	}
	if opts.CacheDir == "" || !filepath.IsAbs(opts.CacheDir) {
		return nil, nil, errdefs.Invalid(fmt.Errorf("pull %s: cache dir %q must be an absolute path", opts.Ref, opts.CacheDir))
	}
	ref, err := parseRef(opts.Ref, opts.Insecure)
	if err != nil {
		return nil, nil, err
	}
	plat, err := v1.ParsePlatform(opts.Platform)
	if err != nil {
		return nil, nil, errdefs.Invalid(fmt.Errorf("pull %s: platform %q: %w", opts.Ref, opts.Platform, err))
	}
	keychain := opts.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain), remote.WithPlatform(*plat)}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	p := &progress{fn: opts.Progress}
	p.send(Event{Stage: StageResolve, Detail: ref.String()})

	img, err := remote.Image(ref, ropts...)
	if err != nil {
		return nil, nil, registryError(ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, nil, registryError(ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, nil, registryError(ref, err)
	}
	if got := (v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}); cfg.OS != "" && !got.Satisfies(*plat) {
		return nil, nil, errdefs.NotFound(fmt.Errorf("pull %s: the image is for %s, not %s", ref, got, plat))
	}
	remoteLayers, err := img.Layers()
	if err != nil {
		return nil, nil, registryError(ref, err)
	}
	layers := make([]Layer, len(remoteLayers))
	for i, rl := range remoteLayers {
		d, err := rl.Digest()
		if err != nil {
			return nil, nil, registryError(ref, err)
		}
		size, err := rl.Size()
		if err != nil {
			return nil, nil, registryError(ref, err)
		}
		mt, err := rl.MediaType()
		if err != nil {
			return nil, nil, registryError(ref, err)
		}
		if !importableMediaType(mt) {
			return nil, nil, errdefs.Invalid(fmt.Errorf("pull %s: layer %d (%s) has media type %s, which banger does not import", ref, i+1, d, mt))
		}
		if d.Algorithm != "sha256" || len(d.Hex) != 64 {
			return nil, nil, errdefs.Invalid(fmt.Errorf("pull %s: layer %d has unsupported digest %s", ref, i+1, d))
		}
		layers[i] = Layer{Digest: d.String(), Size: size, MediaType: string(mt), Path: blobPath(opts.CacheDir, d.Hex)}
	}

	if err := os.MkdirAll(blobDir(opts.CacheDir), 0o755); err != nil {
		return nil, nil, fmt.Errorf("pull %s: create layer cache: %w", ref, err)
	}
	p.layers = len(layers)
	dl = &downloads{ref: ref.String(), layers: layers, ready: make([]chan struct{}, len(layers)), errs: make([]error, len(layers))}
	for i := range layers {
		dl.ready[i] = make(chan struct{})
	}
	dl.wg.Add(len(layers))
	go func() {
		sem := make(chan struct{}, downloadJobs)
		for i := range layers {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				dl.errs[i] = ctx.Err()
				close(dl.ready[i])
				dl.wg.Done()
				continue
			}
			go func() {
				defer dl.wg.Done()
				defer close(dl.ready[i])
				defer func() { <-sem }()
				dl.errs[i] = fetchLayer(ctx, remoteLayers[i], layers[i], i+1, p)
			}()
		}
	}()
	return &Fetched{
		Ref:      ref.String(),
		Digest:   digest.String(),
		Platform: plat.String(),
		Config: ImageConfig{
			Env:        cfg.Config.Env,
			Entrypoint: cfg.Config.Entrypoint,
			Cmd:        cfg.Config.Cmd,
			WorkingDir: cfg.Config.WorkingDir,
			User:       cfg.Config.User,
		},
		Layers: layers,
	}, dl, nil
}

// downloads tracks the layer downloads of one fetch.
type downloads struct {
	ref    string
	layers []Layer
	ready  []chan struct{} // closed once errs[i] is set
	errs   []error
	wg     sync.WaitGroup
}

// layer waits for layer i and returns its error.
func (d *downloads) layer(i int) error {
	<-d.ready[i]
	if err := d.errs[i]; err != nil {
		return fmt.Errorf("pull %s: layer %d (%s): %w", d.ref, i+1, d.layers[i].Digest, err)
	}
	return nil
}

// wait waits for every download and returns the first layer's error.
func (d *downloads) wait() error {
	d.wg.Wait()
	for i := range d.layers {
		if err := d.layer(i); err != nil {
			return err
		}
	}
	return nil
}

// parseRef parses an image reference; insecure allows plain HTTP.
func parseRef(s string, insecure bool) (name.Reference, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errdefs.Invalid(errors.New("pull: an image reference is required"))
	}
	ref, err := name.ParseReference(s, nopts...)
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("pull %q: invalid image reference: %s", s, errdefs.OneLine(err.Error())))
	}
	return ref, nil
}

// importableMediaType accepts tar layers, plain or compressed.
func importableMediaType(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return true
	}
	return false
}

// registryError turns an error talking to the registry into one line
// with a kind: unreachable, not found, unauthorized, or as it came.
func registryError(ref name.Reference, err error) error {
	reg := ref.Context().RegistryStr()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) {
		return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("pull %s: registry %s is unreachable: %s", ref, reg, errdefs.OneLine(opErr.Error())))
	}
	if errors.As(err, &dnsErr) {
		return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("pull %s: registry %s is unreachable: %s", ref, reg, errdefs.OneLine(dnsErr.Error())))
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case 404:
			return errdefs.NotFound(fmt.Errorf("pull %s: not found in registry %s: %s", ref, reg, errdefs.OneLine(terr.Error())))
		case 401, 403:
			return errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("pull %s: registry %s refused access (log in with docker login, or check the name): %s", ref, reg, errdefs.OneLine(terr.Error())))
		}
	}
	if strings.Contains(err.Error(), "no child with platform") {
		return errdefs.NotFound(fmt.Errorf("pull %s: %s", ref, errdefs.OneLine(err.Error())))
	}
	return fmt.Errorf("pull %s: %s", ref, errdefs.OneLine(err.Error()))
}

func blobDir(cacheDir string) string {
	return filepath.Join(cacheDir, "oci", "blobs", "sha256")
}

func blobPath(cacheDir, hex string) string {
	return filepath.Join(blobDir(cacheDir), hex)
}

// fetchLayer makes sure l's blob is in the cache.
func fetchLayer(ctx context.Context, rl v1.Layer, l Layer, index int, p *progress) error {
	if st, err := os.Stat(l.Path); err == nil && st.Mode().IsRegular() && st.Size() == l.Size {
		p.done(Event{Stage: StageDownload, Layer: index, Digest: l.Digest, Bytes: l.Size, Total: l.Size, Cached: true})
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	rc, err := rl.Compressed()
	if err != nil {
		return fmt.Errorf("download: %s", errdefs.OneLine(err.Error()))
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(l.Path), ".download-"+filepath.Base(l.Path)[:12]+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	h := sha256.New()
	w := &countingWriter{w: io.MultiWriter(tmp, h), report: func(n int64) {
		p.send(Event{Stage: StageDownload, Layer: index, Digest: l.Digest, Bytes: n, Total: l.Size})
	}}
	_, err = io.CopyBuffer(w, ctxReader{ctx, rc}, make([]byte, 1<<20))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download: %s", errdefs.OneLine(err.Error()))
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.Digest {
		return hostile(ErrMalformed, "downloaded blob has digest %s", got)
	}
	if w.n != l.Size {
		return hostile(ErrMalformed, "downloaded blob has %d bytes, the manifest says %d", w.n, l.Size)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), l.Path); err != nil {
		return err
	}
	p.done(Event{Stage: StageDownload, Layer: index, Digest: l.Digest, Bytes: l.Size, Total: l.Size})
	return nil
}

// countingWriter counts bytes and reports every reportEvery of them.
type countingWriter struct {
	w      io.Writer
	n      int64
	last   int64
	report func(int64)
}

const reportEvery = 8 << 20

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if c.n-c.last >= reportEvery {
		c.last = c.n
		c.report(c.n)
	}
	return n, err
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// progress serialises Progress calls and counts finished layers.
type progress struct {
	fn       func(Event)
	mu       sync.Mutex
	layers   int
	finished int
}

func (p *progress) send(e Event) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e.Layers, e.LayersDone = p.layers, p.finished
	p.fn(e)
}

// done reports a layer finished with its stage.
func (p *progress) done(e Event) {
	p.mu.Lock()
	p.finished++
	p.mu.Unlock()
	p.send(e)
}

// firstError returns the first failed download's error among those
// finished, nil if none failed.
func (d *downloads) firstError() error {
	for i := range d.layers {
		select {
		case <-d.ready[i]:
			if err := d.layer(i); err != nil {
				return err
			}
		default:
		}
	}
	return nil
}
