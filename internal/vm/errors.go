package vm

import "banger/internal/errdefs"

var (
	errConflict = errdefs.ErrConflict
	errInvalid  = errdefs.ErrInvalid
	errNotFound = errdefs.ErrNotFound
)
