package rpc

import (
	"context"
	"errors"
	"fmt"

	"banger/internal/errdefs"
)

// JSON-RPC error codes: the standard ones and banger's kinds.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603

	CodeNotFound       = -32001
	CodeAlreadyExists  = -32002
	CodeInvalid        = -32003
	CodeConflict       = -32004
	CodeUnavailable    = -32005
	CodeNotImplemented = -32006
	CodeCanceled       = -32007
)

// Error is an RPC error as it travels on the wire and as the client
// returns it. Errors.Is matches it against the errdefs sentinel of its
// code, so callers never match strings.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    *Data  `json:"data,omitempty"`
}

// Data carries the operation id of the failed request.
type Data struct {
	OpID string `json:"op_id,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// OpID returns the operation id the daemon gave the request.
func (e *Error) OpID() string {
	if e.Data == nil {
		return ""
	}
	return e.Data.OpID
}

// Unwrap maps the code back to its errdefs kind.
func (e *Error) Unwrap() error {
	for kind, code := range kindCodes {
		if code == e.Code {
			return kind
		}
	}
	switch e.Code {
	case CodeInvalidParams:
		return errdefs.ErrInvalid
	case CodeCanceled:
		return context.Canceled
	}
	return nil
}

var kindCodes = map[error]int{
	errdefs.ErrNotFound:       CodeNotFound,
	errdefs.ErrAlreadyExists:  CodeAlreadyExists,
	errdefs.ErrInvalid:        CodeInvalid,
	errdefs.ErrConflict:       CodeConflict,
	errdefs.ErrUnavailable:    CodeUnavailable,
	errdefs.ErrNotImplemented: CodeNotImplemented,
}

// toError turns a handler's error into a wire error: the one place where
// error kinds become codes.
func toError(err error, opID string) *Error {
	var rpcErr *Error
	if errors.As(err, &rpcErr) {
		out := *rpcErr
		out.Message = err.Error() // keep the context wrapped around it
		if out.Data == nil {
			out.Data = &Data{OpID: opID}
		}
		return &out
	}
	code := CodeInternal
	for _, kind := range []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalid, errdefs.ErrConflict, errdefs.ErrUnavailable, errdefs.ErrNotImplemented} {
		if errors.Is(err, kind) {
			code = kindCodes[kind]
			break
		}
	}
	if code == CodeInternal && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		code = CodeCanceled
	}
	return &Error{Code: code, Message: err.Error(), Data: &Data{OpID: opID}}
}

func newError(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
