package vmm

import "strings"

// WithKernelArg returns cmdline with key=value appended, unless cmdline
// already sets key: what the spec's maker chose wins.
func WithKernelArg(cmdline, key, value string) string {
	for _, f := range strings.Fields(cmdline) {
		if f == key || strings.HasPrefix(f, key+"=") {
			return cmdline
		}
	}
	return strings.TrimSpace(cmdline + " " + key + "=" + value)
}
