package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Limits bound what Unpack writes. Zero fields take the defaults.
type Limits struct {
	// MaxBytes bounds the regular-file bytes of all layers together
	// (files a later layer replaces still count).
	MaxBytes int64
	// MaxEntries bounds the tar entries of all layers together.
	MaxEntries int64
}

// Default limits.
const (
	DefaultMaxBytes   = int64(64) << 30
	DefaultMaxEntries = int64(4) << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// Whiteout names (OCI image spec, "Representing Changes").
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Unpack applies layers, bottom first, into dir, which must exist: each
// layer's entries in order, its whiteouts removing what lower layers
// made, an opaque directory hiding their contents. Owners (when running
// as root), modes with setuid, setgid and sticky bits, symlinks, hard
// links, device nodes, fifos, modification times and xattrs (security.*
// included) are kept. Each blob is checked against its digest as it is
// read. Hostile or broken layers fail with the errors of this package
// (ErrPathEscape, ErrSymlinkEscape, ErrHardlinkEscape, ErrBadName,
// ErrTooLarge, ErrMalformed), naming the layer and entry; dir is then
// left as it is for the caller to remove.
func Unpack(ctx context.Context, layers []Layer, dir string, limits Limits, onProgress func(Event)) error {
	return unpack(ctx, layers, dir, limits, onProgress, nil)
}

// unpack is Unpack; wait, if set, is called before layer i is read and
// returns once it is in the cache (downloads running alongside).
func unpack(ctx context.Context, layers []Layer, dir string, limits Limits, onProgress func(Event), wait func(i int) error) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("unpack into %s: not a directory", dir)
	}
	a := newApplier(dir, limits)
	p := progress{fn: onProgress, layers: len(layers)}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("unpack layer %d (%s): %w", i+1, l.Digest, err)
		}
		if wait != nil {
			if err := wait(i); err != nil {
				return err
			}
		}
		p.send(Event{Stage: StageUnpack, Layer: i + 1, Digest: l.Digest, Total: l.Size})
		if err := a.applyBlob(ctx, l); err != nil {
			return fmt.Errorf("unpack layer %d (%s): %w", i+1, l.Digest, err)
		}
		p.done(Event{Stage: StageUnpack, Layer: i + 1, Digest: l.Digest, Bytes: l.Size, Total: l.Size})
	}
	return nil
}

// newApplier returns an applier into the tree root; it chowns when
// running as root.
func newApplier(root string, limits Limits) *applier {
	return &applier{
		res:    newResolver(root),
		owners: os.Geteuid() == 0,
		limits: limits.withDefaults(),
		buf:    make([]byte, 1<<20),
	}
}

// applyBlob decompresses one cached blob, hashing what it reads, and
// applies its tar.
func (a *applier) applyBlob(ctx context.Context, l Layer) error {
	f, err := os.Open(l.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	raw := bufio.NewReaderSize(io.TeeReader(f, h), 1<<20)
	tr, closeFn, err := decompress(raw)
	if err != nil {
		return hostile(ErrMalformed, "%s", err)
	}
	defer closeFn()
	if err := a.applyTar(ctx, tar.NewReader(tr)); err != nil {
		return err
	}
	// Hash the rest: a trailer after the tar's end counts for the digest.
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.Digest {
		return hostile(ErrMalformed, "the cached blob %s has digest %s (remove it and pull again)", l.Path, got)
	}
	return nil
}

// decompress picks the decompressor by the stream's magic bytes.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(r)
		if err != nil {
			// The reader's own errors already say "gzip: ".
			return nil, nil, fmt.Errorf("gzip: %s", strings.TrimPrefix(err.Error(), "gzip: "))
		}
		zr.Multistream(true)
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// applyTar applies one layer's tar.
func (a *applier) applyTar(ctx context.Context, tr *tar.Reader) error {
	a.layerPaths = map[string]bool{}
	a.dirTimes = a.dirTimes[:0]
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return hostile(ErrMalformed, "tar: %s", err)
		}
		a.entries++
		if a.entries > a.limits.MaxEntries {
			return hostile(ErrTooLarge, "more than %d entries", a.limits.MaxEntries)
		}
		if err := a.apply(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// Directory times last: making their entries changed them.
	for _, d := range a.dirTimes {
		host, err := a.res.dir(d.path, false)
		if err != nil {
			continue // removed or replaced later in the layer
		}
		_ = setTimes(host, d.hdr)
	}
	return nil
}

// dirTime is a directory whose times are set at the end of its layer.
type dirTime struct {
	path string
	hdr  *tar.Header
}

// copyFile writes the entry's content to a new file at host.
func (a *applier) copyFile(host string, r io.Reader, size int64) error {
	f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(f, readErrors{io.LimitReader(r, size)}, a.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = hostile(ErrMalformed, "content ends after %d of %d bytes", n, size)
	}
	if err != nil {
		os.Remove(host)
	}
	return err
}

// readErrors marks errors reading a layer as ErrMalformed: a truncated
// or corrupt stream, not a problem of the host.
type readErrors struct{ r io.Reader }

func (r readErrors) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		err = hostile(ErrMalformed, "read content: %s", err)
	}
	return n, err
}

// hostPath is the host path of name inside the resolved directory.
func hostPath(dir, name string) string { return filepath.Join(dir, name) }
