package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
	"banger/internal/model"
)

// CreateOverlay creates overlay, a qcow2 file of virtual size size whose
// backing file is the raw image base (recorded as an absolute path). size
// must be at least base's size. The cost does not depend on base's size:
// qemu-img opens base but reads none of it. overlay must not exist; on
// error nothing is left behind.
func CreateOverlay(ctx context.Context, base, overlay string, size int64) (err error) {
	if err := validateSize(size); err != nil {
		return fmt.Errorf("create overlay %q: %w", overlay, err)
	}
	absBase, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("create overlay %q: %w", overlay, err)
	}
	st, err := os.Stat(absBase)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("create overlay %q: base image: %w", overlay, err))
		}
		return fmt.Errorf("create overlay %q: base image: %w", overlay, err)
	}
	if !st.Mode().IsRegular() {
		return errdefs.Invalid(fmt.Errorf("create overlay %q: base image %s is not a regular file", overlay, absBase))
	}
	if size < st.Size() {
		return errdefs.Invalid(fmt.Errorf("create overlay %q: size %s is smaller than the image rootfs (%s)",
			overlay, model.FormatSizeBytes(size), model.FormatSizeBytes(st.Size())))
	}
	if err := checkAbsent(overlay); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(overlay)
		}
	}()
	if _, err := hostexec.Run(ctx, "qemu-img", qemuImgOverlayArgs(absBase, overlay, size)...); err != nil {
		return fmt.Errorf("create overlay %q: %w", overlay, err)
	}
	return nil
}
