package errdefs

import (
	"errors"
	"testing"
)

func TestOneLine(t *testing.T) {
	if got := OneLine("  a\n\tb  c\r\n"); got != "a b c" {
		t.Errorf("OneLine: got %q, want %q", got, "a b c")
	}
}

func TestJoinLines(t *testing.T) {
	one := errors.New("only")
	if got := JoinLines([]error{one}); got != one {
		t.Errorf("JoinLines of one error: got %v, want it unchanged", got)
	}
	if got := JoinLines([]error{errors.New("a"), errors.New("b")}).Error(); got != "2 problems: a; b" {
		t.Errorf("JoinLines: got %q, want %q", got, "2 problems: a; b")
	}
}
