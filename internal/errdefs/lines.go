package errdefs

import (
	"fmt"
	"strings"
)

// OneLine folds s onto one line: every run of white space, newlines
// included, becomes one space. Errors shown to users and recorded on
// VMs are one line.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// JoinLines joins errs into one single-line error, "2 problems: a; b",
// or returns the only one as it is.
func JoinLines(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%d problems: %s", len(errs), strings.Join(msgs, "; "))
}
