package oci

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"banger/internal/errdefs"
)

func TestEntryPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		err  error
	}{
		{"dot slash dir", "./usr/bin/", "usr/bin", nil},
		{"plain", "etc/passwd", "etc/passwd", nil},
		{"root", "./", "", nil},
		{"double slash", "a//b", "a/b", nil},
		{"absolute", "/etc/passwd", "", ErrPathEscape},
		{"dot dot", "a/../../etc", "", ErrPathEscape},
		{"dot dot inside", "a/../b", "", ErrPathEscape},
		{"newline", "a\nb", "", ErrBadName},
		{"tab", "a\tb", "", ErrBadName},
		{"delete char", "a\x7fb", "", ErrBadName},
		{"long name", "d/" + strings.Repeat("x", 256), "", ErrBadName},
		{"longest name", "d/" + strings.Repeat("x", 255), "d/" + strings.Repeat("x", 255), nil},
		{"long path", strings.Repeat("abcdefgh/", 500), "", ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := entryPath(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !errdefs.IsInvalid(err) {
					t.Fatalf("entryPath(%q) error = %v, want %v (and invalid)", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("entryPath(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func unpackInto(t *testing.T, limits Limits, lists ...[]tentry) (string, error) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, Unpack(t.Context(), layersOf(t, lists...), root, limits, nil)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestUnpackWhiteouts(t *testing.T) {
	lower := []tentry{
		dir("a/"), file("a/x", "x"), file("a/y", "y"),
		dir("b/"), file("b/old", "old"), dir("b/sub/"), file("b/sub/deep", "deep"),
		file("c", "c"), dir("d/"), file("d/gone", "g"),
	}
	upper := []tentry{
		file("a/.wh.x", ""),
		dir("b/"), file("b/new", "new"), file("b/.wh..wh..opq", ""), dir("b/made/"), file("b/made/f", "f"),
		file(".wh.c", ""),
		file(".wh.d", ""),
		file("nowhere/.wh.thing", ""), // a whiteout under a missing dir hides nothing
		file("a/.wh..wh.plnk", ""),    // aufs metadata: ignored
	}
	root, err := unpackInto(t, Limits{}, lower, upper)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"a/x", false}, {"a/y", true}, {"a/.wh.x", false}, {"a/.wh..wh.plnk", false},
		{"b/old", false}, {"b/sub", false}, {"b/new", true}, {"b/made/f", true}, {"b/.wh..wh..opq", false},
		{"c", false}, {".wh.c", false}, {"d", false},
		{"nowhere", false},
	} {
		t.Run(tt.path, func(t *testing.T) {
			if got := exists(filepath.Join(root, tt.path)); got != tt.want {
				t.Errorf("%s exists = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestUnpackReplacements(t *testing.T) {
	lower := []tentry{
		dir("usr/"), dir("usr/lib/"), symlink("lib", "usr/lib"), symlink("abs", "/usr"),
		file("f", "old"), dir("d/"), file("d/inner", "i"), symlink("s", "f"),
	}
	upper := []tentry{
		file("lib/viasym", "through an in-root symlink"),
		file("abs/viaabs", "through an absolute symlink, inside the root"),
		symlink("f", "elsewhere"),        // file replaced by symlink
		file("d", "a file now"),          // directory replaced by a file
		file("s", "a file, not through"), // writing over a symlink replaces it
	}
	root, err := unpackInto(t, Limits{}, lower, upper)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(b)
	}
	if got := read("usr/lib/viasym"); got != "through an in-root symlink" {
		t.Errorf("usr/lib/viasym = %q", got)
	}
	if got := read("usr/viaabs"); got != "through an absolute symlink, inside the root" {
		t.Errorf("usr/viaabs = %q", got)
	}
	if got, err := os.Readlink(filepath.Join(root, "f")); err != nil || got != "elsewhere" {
		t.Errorf("readlink f = %q, %v, want elsewhere", got, err)
	}
	if got := read("d"); got != "a file now" {
		t.Errorf("d = %q, want a file now", got)
	}
	st, err := os.Lstat(filepath.Join(root, "s"))
	if err != nil || !st.Mode().IsRegular() {
		t.Errorf("s: got %v, %v, want a regular file", st, err)
	}
}

func TestUnpackLinksModesTimes(t *testing.T) {
	layer := []tentry{
		dir("bin/"),
		{name: "bin/su", body: "setuid", mode: 0o4755},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		hardlink("bin/su-link", "bin/su"),
		symlink("bin/sh", "busybox"),
		hardlink("bin/sh-link", "bin/sh"), // a hard link to a symlink links the symlink
	}
	root, err := unpackInto(t, Limits{}, layer)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	st, err := os.Stat(filepath.Join(root, "bin/su"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Mode()&(os.ModeSetuid|os.ModePerm), os.ModeSetuid|0o755; got != want {
		t.Errorf("bin/su mode = %v, want %v", got, want)
	}
	if !st.ModTime().Equal(testTime) {
		t.Errorf("bin/su mtime = %v, want %v", st.ModTime(), testTime)
	}
	link, err := os.Stat(filepath.Join(root, "bin/su-link"))
	if err != nil || !os.SameFile(st, link) {
		t.Errorf("bin/su-link is not a hard link of bin/su (%v)", err)
	}
	if nlink := st.Sys().(*syscall.Stat_t).Nlink; nlink != 2 {
		t.Errorf("bin/su nlink = %d, want 2", nlink)
	}
	tmp, err := os.Stat(filepath.Join(root, "tmp"))
	if err != nil || tmp.Mode()&os.ModeSticky == 0 || !tmp.ModTime().Equal(testTime) {
		t.Errorf("tmp = %v %v, want sticky with mtime %v (%v)", tmp.Mode(), tmp.ModTime(), testTime, err)
	}
	if got, err := os.Readlink(filepath.Join(root, "bin/sh-link")); err != nil || got != "busybox" {
		t.Errorf("readlink bin/sh-link = %q, %v, want busybox", got, err)
	}
}

func TestUnpackHostile(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]tentry
		limits Limits
		want   error
	}{
		{"absolute path", [][]tentry{{file("/etc/evil", "x")}}, Limits{}, ErrPathEscape},
		{"dot dot path", [][]tentry{{file("../evil", "x")}}, Limits{}, ErrPathEscape},
		{"dot dot deep", [][]tentry{{dir("a/"), file("a/../../evil", "x")}}, Limits{}, ErrPathEscape},
		{"write through escaping symlink", [][]tentry{{symlink("esc", "../outside"), file("esc/evil", "x")}}, Limits{}, ErrSymlinkEscape},
		{"write through escaping symlink in a later layer", [][]tentry{
			{dir("a/"), symlink("a/esc", "../../outside")},
			{file("a/esc/evil", "x")},
		}, Limits{}, ErrSymlinkEscape},
		{"chained symlinks escaping", [][]tentry{{symlink("one", "two"), symlink("two", "../.."), file("one/outside/evil", "x")}}, Limits{}, ErrSymlinkEscape},
		{"symlink loop", [][]tentry{{symlink("loop", "loop"), file("loop/evil", "x")}}, Limits{}, ErrSymlinkEscape},
		{"hard link out", [][]tentry{{hardlink("hl", "../outside/secret")}}, Limits{}, ErrHardlinkEscape},
		{"hard link absolute", [][]tentry{{hardlink("hl", "/etc/passwd")}}, Limits{}, ErrHardlinkEscape},
		{"hard link through escaping symlink", [][]tentry{{symlink("esc", "../outside"), hardlink("hl", "esc/secret")}}, Limits{}, ErrHardlinkEscape},
		{"hard link to missing", [][]tentry{{hardlink("hl", "nothing")}}, Limits{}, ErrHardlinkEscape},
		{"hard link to directory", [][]tentry{{dir("d/"), hardlink("hl", "d")}}, Limits{}, ErrHardlinkEscape},
		{"newline in name", [][]tentry{{file("evil\nname", "x")}}, Limits{}, ErrBadName},
		{"name too long", [][]tentry{{file(strings.Repeat("n", 256), "x")}}, Limits{}, ErrBadName},
		{"whiteout of dot dot", [][]tentry{{file(".wh...", "")}}, Limits{}, ErrPathEscape},
		{"too many bytes", [][]tentry{{file("a", strings.Repeat("x", 600))}, {file("b", strings.Repeat("x", 600))}}, Limits{MaxBytes: 1000}, ErrTooLarge},
		{"too many entries", [][]tentry{{file("a", ""), file("b", ""), file("c", "")}}, Limits{MaxEntries: 2}, ErrTooLarge},
		{"huge xattr", [][]tentry{{{name: "x", xattrs: map[string]string{"user.big": strings.Repeat("v", 4000)}}}}, Limits{}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "rootfs")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{root, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Unpack(t.Context(), layersOf(t, tt.layers...), root, tt.limits, nil)
			if !errors.Is(err, tt.want) || !errdefs.IsInvalid(err) {
				t.Fatalf("Unpack error = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 1 {
				t.Errorf("outside holds %d entries, want only secret", len(entries))
			}
			if exists(filepath.Join(base, "evil")) {
				t.Errorf("%s was written outside the root", filepath.Join(base, "evil"))
			}
		})
	}
}

func TestUnpackMalformed(t *testing.T) {
	good := gzipBytes(t, tarBytes(t, []tentry{file("a", strings.Repeat("content", 1000))}))
	plain := tarBytes(t, []tentry{file("a", strings.Repeat("content", 1000))})
	tests := []struct {
		name  string
		blob  []byte
		wrong bool // store under a digest that does not match
	}{
		{"truncated gzip", good[:len(good)/2], false},
		{"truncated tar", plain[:700], false},
		{"garbage", []byte(strings.Repeat("not a tar at all ", 64)), false},
		{"corrupt gzip header", append([]byte{0x1f, 0x8b, 0xff}, good[3:]...), false},
		{"gzip magic only", []byte{0x1f, 0x8b}, false},
		{"digest mismatch", good, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			l := blobLayer(t, t.TempDir(), tt.blob)
			if tt.wrong {
				l.Digest = "sha256:" + strings.Repeat("0", 64)
			}
			err := Unpack(t.Context(), []Layer{l}, root, Limits{}, nil)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unpack error = %v, want %v", err, ErrMalformed)
			}
			if msg := err.Error(); strings.Contains(msg, "gzip: gzip:") || strings.Contains(msg, "\n") {
				t.Errorf("Unpack error = %q, want one line that names gzip once", msg)
			}
		})
	}
}

func TestUnpackProgress(t *testing.T) {
	root := t.TempDir()
	var events []Event
	layers := layersOf(t, []tentry{file("a", "1")}, []tentry{file("b", "2")})
	if err := Unpack(t.Context(), layers, root, Limits{}, func(e Event) { events = append(events, e) }); err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Stage != StageUnpack || last.LayersDone != 2 || last.Layers != 2 {
		t.Errorf("last event = %+v, want unpack 2 of 2 done", last)
	}
}
