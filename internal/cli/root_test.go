package cli

import (
	"errors"
	"fmt"
	"testing"

	"banger/internal/api"
	"banger/internal/rpc"
)

func TestErrorLine(t *testing.T) {
	withOp := &rpc.Error{Code: rpc.CodeNotFound, Message: `vm "web" not found`, Data: &rpc.Data{OpID: "op-0123456789ab"}}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("ssh not found in PATH"), "ssh not found in PATH"},
		{"multi-line", errors.New("2 problems:\n  a\n  b"), "2 problems: a b"},
		{"rpc error with op id", withOp, `vm "web" not found [op-0123456789ab]`},
		{"wrapped rpc error", fmt.Errorf("start web: %w", withOp), `start web: vm "web" not found [op-0123456789ab]`},
		{"rpc error without op id", &rpc.Error{Code: rpc.CodeInternal, Message: "boom"}, "boom"},
		{"rpc error with empty data", &rpc.Error{Code: rpc.CodeInternal, Message: "boom", Data: &rpc.Data{}}, "boom"},
		{"multi-line rpc error", &rpc.Error{Code: rpc.CodeInvalid, Message: "bad\nconfig", Data: &rpc.Data{OpID: "op-aaaaaaaaaaaa"}}, "bad config [op-aaaaaaaaaaaa]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorLine(tt.err); got != tt.want {
				t.Errorf("errorLine: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResultLine(t *testing.T) {
	tests := []struct {
		name string
		r    api.VMResult
		want string
	}{
		{"with op id", api.VMResult{Ref: "web", Error: `vm "web" not found`, OpID: "op-0123456789ab"}, `web: vm "web" not found [op-0123456789ab]`},
		{"without op id", api.VMResult{Ref: "db", Error: "boom"}, "db: boom"},
		{"multi-line", api.VMResult{Ref: "db", Error: "stop db:\n  a\n  b", OpID: "op-aaaaaaaaaaaa"}, "db: stop db: a b [op-aaaaaaaaaaaa]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resultLine(tt.r); got != tt.want {
				t.Errorf("resultLine: got %q, want %q", got, tt.want)
			}
		})
	}
}
