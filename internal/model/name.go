package model

import (
	"fmt"
)

// MaxNameLength is the longest VM or image name: one DNS label.
const MaxNameLength = 63

// ValidateName checks that name can be a VM's DNS label, hostname and
// path component: 1 to 63 characters of a-z, 0-9 and '-', not starting
// or ending with '-'.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("invalid name: empty; use 1-%d characters of a-z, 0-9 and '-'", MaxNameLength)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("invalid name %q: %d characters, at most %d allowed", truncate(name), len(name), MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("invalid name %q: character %q not allowed; use a-z, 0-9 and '-'", name, rune(c))
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("invalid name %q: must not start or end with '-'", name)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 70 {
		return s[:70] + "..."
	}
	return s
}
