// Package errdefs defines the error kinds that cross package and process
// boundaries. Packages wrap these sentinels; the RPC layer maps them to
// codes and back so the CLI can tell "not found" from "invalid input"
// without matching strings.
package errdefs

import "errors"

// The error kinds.
var (
	ErrNotFound       = errors.New("not found")
	ErrAlreadyExists  = errors.New("already exists")
	ErrInvalid        = errors.New("invalid argument")
	ErrConflict       = errors.New("conflict")
	ErrUnavailable    = errors.New("unavailable")
	ErrNotImplemented = errors.New("not implemented")
)

// Is* report the kind of err.
func IsNotFound(err error) bool      { return errors.Is(err, ErrNotFound) }
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }
func IsInvalid(err error) bool       { return errors.Is(err, ErrInvalid) }
func IsConflict(err error) bool      { return errors.Is(err, ErrConflict) }

// kindError attaches a kind to a message without changing its text.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// WithKind marks err as being of kind without changing its message.
func WithKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// Invalid marks err as invalid input.
func Invalid(err error) error { return WithKind(ErrInvalid, err) }

// NotFound marks err as a missing thing.
func NotFound(err error) error { return WithKind(ErrNotFound, err) }
