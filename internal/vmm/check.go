package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"banger/internal/errdefs"
)

// SpecCheck collects every problem of a Spec a driver is about to start,
// so that one error reports them all: missing files as not-found errors,
// everything else as invalid input.
type SpecCheck struct {
	errs []error
}

// Invalid records a problem with the input.
func (c *SpecCheck) Invalid(format string, a ...any) {
	c.errs = append(c.errs, errdefs.Invalid(fmt.Errorf(format, a...)))
}

// Add records err as it is.
func (c *SpecCheck) Add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

// File checks that path is set, absolute and exists.
func (c *SpecCheck) File(what, path string) {
	switch {
	case path == "":
		c.Invalid("%s: not set", what)
	case !filepath.IsAbs(path):
		c.Invalid("%s %q: not an absolute path", what, path)
	default:
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			c.errs = append(c.errs, errdefs.NotFound(fmt.Errorf("%s %q: no such file", what, path)))
		} else if err != nil {
			c.errs = append(c.errs, fmt.Errorf("%s %q: %w", what, path, err))
		}
	}
}

// Common checks what every driver needs: memory, kernel, initrd, disks
// in one of formats (a driver that accepts "" lists it), a MAC with a
// TAP, and the VM directory. It reports whether the directory exists.
func (c *SpecCheck) Common(spec Spec, formats ...string) (dirOK bool) {
	if spec.MemoryMiB < 64 {
		c.Invalid("memory %d MiB: must be at least 64 MiB", spec.MemoryMiB)
	}
	c.File("kernel", spec.Kernel)
	if spec.Initrd != "" {
		c.File("initrd", spec.Initrd)
	}
	if len(spec.Disks) == 0 {
		c.Invalid("disks: none given, the machine needs a system disk")
	}
	for i, d := range spec.Disks {
		what := fmt.Sprintf("disk %d (%s)", i, d.ID)
		c.File(what, d.Path)
		if !slices.Contains(formats, d.Format) {
			want := slices.DeleteFunc(slices.Clone(formats), func(f string) bool { return f == "" })
			c.Invalid("%s: format %q, want %s", what, d.Format, strings.Join(want, " or "))
		}
	}
	if spec.TapDevice != "" && spec.MAC == "" {
		c.Invalid("tap %q: no guest mac given", spec.TapDevice)
	}
	if spec.Dir == "" || !filepath.IsAbs(spec.Dir) {
		c.Invalid("vm directory %q: not an absolute path", spec.Dir)
		return false
	}
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		c.errs = append(c.errs, errdefs.NotFound(fmt.Errorf("vm directory %q: no such directory", spec.Dir)))
		return false
	}
	return true
}

// Err is every problem found, joined, or nil.
func (c *SpecCheck) Err() error { return errors.Join(c.errs...) }

// DiskIDs names a machine's drives after the disks' IDs where those
// match valid and are distinct, else disk0, disk1, ...
func DiskIDs(disks []Disk, valid *regexp.Regexp) []string {
	ids := make([]string, len(disks))
	seen := make(map[string]bool)
	for i, d := range disks {
		id := d.ID
		if !valid.MatchString(id) || seen[id] {
			id = fmt.Sprintf("disk%d", i)
		}
		for seen[id] {
			id += "_"
		}
		seen[id] = true
		ids[i] = id
	}
	return ids
}
