package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Limits of names ext4 and its tools store safely.
const (
	maxNameBytes   = 255  // one path component
	maxPathBytes   = 4095 // a whole path or symlink target
	maxSymlinkHops = 40   // as the kernel allows
)

// entryPath validates a tar entry name and returns it clean and relative
// ("" for the root): "./usr/bin/" -> "usr/bin". Absolute names and ".."
// components are ErrPathEscape; control characters, over-long names and
// paths are ErrBadName.
func entryPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", hostile(ErrPathEscape, "%q is absolute", name)
	}
	if len(name) > maxPathBytes {
		return "", hostile(ErrBadName, "%.40q... is longer than %d bytes", name, maxPathBytes)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return "", hostile(ErrBadName, "%q contains a control character", name)
		}
	}
	var parts []string
	for _, part := range strings.Split(name, "/") {
		switch {
		case part == "" || part == ".":
			continue
		case part == "..":
			return "", hostile(ErrPathEscape, "%q contains ..", name)
		case len(part) > maxNameBytes:
			return "", hostile(ErrBadName, "%q: name %.20q... is longer than %d bytes", name, part, maxNameBytes)
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "/"), nil
}

// splitPath splits a clean relative path into its directory and name:
// "a/b/c" -> "a/b", "c"; "c" -> "", "c".
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// joinPath joins clean relative paths, "" being the root.
func joinPath(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// resolver finds where a path of the image lands in the host tree
// root, following the image's symlinks as the guest would see them
// (absolute targets start again at the image root) and refusing any that
// climb above the root. The host paths it returns have only real
// directories as components, so nothing written there escapes the
// tree; the unpacker is the tree's only writer.
type resolver struct {
	root  string
	cache map[string]string // image dir -> host dir, dropped on removals
}

func newResolver(root string) *resolver {
	return &resolver{root: root, cache: map[string]string{}}
}

// forget drops cached resolutions after something was removed.
func (r *resolver) forget() {
	if len(r.cache) > 0 {
		clear(r.cache)
	}
}

// errMissing reports a path component that does not exist.
var errMissing = errors.New("no such directory")

// dir returns the host path of the image directory dir (clean,
// relative). With create, missing directories are made (0755, owned by
// the caller); otherwise a missing one is errMissing. A component that
// exists but is not a directory is an ErrMalformed error; a symlink that
// leads out of the root an ErrSymlinkEscape one.
func (r *resolver) dir(dir string, create bool) (string, error) {
	if dir == "" {
		return r.root, nil
	}
	if host, ok := r.cache[dir]; ok {
		return host, nil
	}
	pending := strings.Split(dir, "/")
	var stack []string // real image path so far
	hops := 0
	for len(pending) > 0 {
		part := pending[0]
		pending = pending[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "", hostile(ErrSymlinkEscape, "%q", dir)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		host := filepath.Join(r.root, filepath.Join(stack...), part)
		st, err := os.Lstat(host)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !create {
				return "", fmt.Errorf("%q: %w", dir, errMissing)
			}
			if err := os.Mkdir(host, 0o755); err != nil {
				return "", err
			}
			if err := os.Chmod(host, 0o755); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case st.Mode()&fs.ModeSymlink != 0:
			hops++
			if hops > maxSymlinkHops {
				return "", hostile(ErrSymlinkEscape, "%q: too many levels of symlinks", dir)
			}
			target, err := os.Readlink(host)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				stack = nil
			}
			pending = append(strings.Split(target, "/"), pending...)
			continue
		case !st.IsDir():
			return "", hostile(ErrMalformed, "%q: /%s is not a directory", dir, strings.Join(append(stack, part), "/"))
		}
		stack = append(stack, part)
	}
	host := filepath.Join(r.root, filepath.Join(stack...))
	r.cache[dir] = host
	return host, nil
}
