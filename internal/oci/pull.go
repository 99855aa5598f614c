package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"banger/internal/errdefs"
)

// PullOptions says what to import and where the rootfs goes.
type PullOptions struct {
	Options
	// Output is the rootfs ext4 file to make; it must not exist.
	Output string
	// Size of the rootfs in bytes; 0 for DefaultSize of the content.
	Size int64
	// AgentPath is the static banger-agent to install (image.FindAgent
	// finds the installed one).
	AgentPath string
	// Limits bound what the layers may unpack to.
	Limits Limits
}

// Pulled is an imported image.
type Pulled struct {
	Fetched
	RootfsPath   string
	RootfsSize   int64 // bytes, the file's apparent size
	ContentBytes int64 // what the tree occupied, banger's files included
	Guest        Guest
}

// Pull imports opts.Ref as a rootfs at opts.Output: Fetch, Unpack into
// a staging directory under CacheDir/oci/staging, AddGuest, MakeExt4. It
// needs root. On any error, ctx's end included, it removes the staging
// directory and the output; the layer cache stays (it is checked by
// digest on every use).
func Pull(ctx context.Context, opts PullOptions) (res *Pulled, err error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf(
			"pull %s: must run as root: the image's files need their owners and device nodes (run bangerd as root)", opts.Ref))
	}
	if _, err := os.Lstat(opts.Output); err == nil {
		return nil, errdefs.WithKind(errdefs.ErrAlreadyExists, fmt.Errorf("pull %s: %s already exists", opts.Ref, opts.Output))
	}
	// Layers are unpacked as soon as each is in the cache, while the
	// next ones download.
	dctx, cancel := context.WithCancel(ctx)
	f, dl, err := startFetch(dctx, opts.Options)
	if err != nil {
		cancel()
		return nil, err
	}
	defer func() {
		cancel()
		dl.wg.Wait() // no download outlives Pull (nor its temp file)
	}()
	fail := func(step string, err error) error {
		return fmt.Errorf("pull %s: %s: %w", f.Ref, step, err)
	}

	stagingRoot := filepath.Join(opts.CacheDir, "oci", "staging")
	if err := os.MkdirAll(stagingRoot, 0o700); err != nil {
		return nil, fail("staging", err)
	}
	stage, err := os.MkdirTemp(stagingRoot, "pull-")
	if err != nil {
		return nil, fail("staging", err)
	}
	defer func() {
		if rerr := os.RemoveAll(stage); rerr != nil {
			err = errors.Join(err, fail("remove staging", rerr))
		}
		if err != nil {
			res = nil
			if rerr := os.Remove(opts.Output); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fail("remove output", rerr))
			}
		}
	}()
	tree := filepath.Join(stage, "rootfs")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return nil, fail("staging", err)
	}
	if err := os.Chmod(tree, 0o755); err != nil {
		return nil, fail("staging", err)
	}

	if err := unpack(ctx, f.Layers, tree, opts.Limits, opts.Progress, dl.layer); err != nil {
		if ferr := dl.firstError(); ferr != nil {
			return nil, ferr // the download's error, not its cancellation
		}
		return nil, fail("unpack", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fail("guest files", err)
	}
	p := progress{fn: opts.Progress, layers: len(f.Layers), finished: len(f.Layers)}
	p.send(Event{Stage: StageGuest, Detail: "banger-agent, guest units, network setup"})
	g, err := AddGuest(tree, opts.AgentPath)
	if err != nil {
		return nil, fail("guest files", err)
	}
	p.send(Event{Stage: StageRootfs, Detail: opts.Output})
	size, content, err := makeExt4(ctx, tree, opts.Output, opts.Size)
	if err != nil {
		return nil, fail("rootfs", err)
	}
	return &Pulled{Fetched: *f, RootfsPath: opts.Output, RootfsSize: size, ContentBytes: content, Guest: g}, nil
}

// check validates opts before anything is fetched.
func (o *PullOptions) check() error {
	var errs []error
	if o.Output == "" || !filepath.IsAbs(o.Output) {
		errs = append(errs, fmt.Errorf("output %q must be an absolute path", o.Output))
	}
	if o.CacheDir == "" || !filepath.IsAbs(o.CacheDir) {
		errs = append(errs, fmt.Errorf("cache dir %q must be an absolute path", o.CacheDir))
	}
	if o.Size < 0 {
		errs = append(errs, fmt.Errorf("size %d must not be negative", o.Size))
	}
	if o.AgentPath == "" {
		errs = append(errs, errNoGuest)
	}
	if len(errs) > 0 {
		return errdefs.Invalid(fmt.Errorf("pull %s: %w", o.Ref, errors.Join(errs...)))
	}
	return nil
}
