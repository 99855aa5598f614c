package storage

import (
	"reflect"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

func TestCheckTree(t *testing.T) {
	dir := func(p string) TreeEntry { return TreeEntry{Path: p, Kind: TreeDir, Mode: 0o755} }
	file := func(p string) TreeEntry { return TreeEntry{Path: p, Kind: TreeFile, Mode: 0o600, Source: "/stage/1"} }
	link := func(p, target string) TreeEntry { return TreeEntry{Path: p, Kind: TreeSymlink, Target: target} }
	tests := []struct {
		name    string
		entries []TreeEntry
		wantErr string
	}{
		{"empty", nil, ""},
		{"root dir", []TreeEntry{dir("/")}, ""},
		{"nested", []TreeEntry{dir("/a"), dir("/a/b"), file("/a/b/c"), link("/a/l", "../x")}, ""},
		{"spaces and unicode", []TreeEntry{dir("/a b"), file("/a b/héllo ☃"), file("/a b/-rf"), file(`/a b/back\slash`)}, ""},
		{"parent not listed", []TreeEntry{file("/a/b")}, "parent /a is not an earlier directory entry"},
		{"parent listed later", []TreeEntry{file("/a/b"), dir("/a")}, "parent /a is not an earlier"},
		{"parent is a file", []TreeEntry{file("/a"), file("/a/b")}, "parent /a is not an earlier"},
		{"twice", []TreeEntry{dir("/a"), dir("/a")}, "listed twice"},
		{"relative", []TreeEntry{dir("a")}, "not absolute"},
		{"not clean", []TreeEntry{dir("/a/")}, "not clean"},
		{"double slash", []TreeEntry{dir("/a//b")}, "not clean"},
		{"dotdot", []TreeEntry{dir("/a"), dir("/a/..")}, `contains ".."`},
		{"dot", []TreeEntry{dir("/.")}, `contains "."`},
		{"quote", []TreeEntry{file(`/a"b`)}, "double quote or control character"},
		{"newline", []TreeEntry{file("/a\nrm /b")}, "double quote or control character"},
		{"carriage return", []TreeEntry{file("/a\rb")}, "double quote or control character"},
		{"tab", []TreeEntry{file("/a\tb")}, "double quote or control character"},
		{"delete char", []TreeEntry{file("/a\x7fb")}, "double quote or control character"},
		{"long name", []TreeEntry{file("/" + strings.Repeat("n", 256))}, "longer than 255 bytes"},
		{"long path", []TreeEntry{file(strings.Repeat("/n", 2000))}, "longer than 3584 bytes"},
		{"file at root", []TreeEntry{file("/")}, "/ cannot be a file"},
		{"symlink at root", []TreeEntry{link("/", "x")}, "/ cannot be a symlink"},
		{"relative source", []TreeEntry{{Path: "/a", Kind: TreeFile, Source: "stage/1"}}, "not an absolute path"},
		{"quote in source", []TreeEntry{{Path: "/a", Kind: TreeFile, Source: `/st"age/1`}}, "source"},
		{"empty target", []TreeEntry{link("/l", "")}, "empty symlink target"},
		{"quote in target", []TreeEntry{link("/l", `a"b`)}, "symlink target"},
		{"newline in target", []TreeEntry{link("/l", "a\nb")}, "symlink target"},
		{"long target", []TreeEntry{link("/l", strings.Repeat("t", 4000))}, "longer than 3584 bytes"},
		{"negative owner", []TreeEntry{{Path: "/a", Kind: TreeDir, UID: -1}}, "negative owner"},
		{"unknown kind", []TreeEntry{{Path: "/a"}}, "unknown kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTree(tt.entries)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("CheckTree: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckTree: got nil, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckTree: got %q, want it to contain %q", err, tt.wantErr)
			}
			if !errdefs.IsInvalid(err) {
				t.Errorf("CheckTree: got %v, want an ErrInvalid error", err)
			}
		})
	}
}

func TestTreeScript(t *testing.T) {
	none := inodeInfo{}
	dirInfo := inodeInfo{Exists: true, Type: "directory", Mode: 0o700, UID: 0, GID: 0, Size: 4096}
	regInfo := inodeInfo{Exists: true, Type: "regular", Mode: 0o644, Size: 3}
	linkInfo := inodeInfo{Exists: true, Type: "symlink", Mode: 0o777, Size: 2}
	tests := []struct {
		name       string
		entries    []TreeEntry
		existing   []inodeInfo
		sizes      []int64
		wantScript []string
		wantWant   []inodeInfo
		wantErr    string
	}{
		{
			name: "new tree",
			entries: []TreeEntry{
				{Path: "/a b", Kind: TreeDir, Mode: 0o755, KeepExisting: true},
				{Path: "/a b/f", Kind: TreeFile, Mode: 0o600, Source: "/stage/1"},
				{Path: "/a b/l", Kind: TreeSymlink, Mode: 0o644, Target: "f"},
				{Path: "/top", Kind: TreeFile, Mode: 0o640, UID: 1, GID: 2, Source: "/stage/2"},
			},
			existing: []inodeInfo{none, none, none, none},
			sizes:    []int64{0, 5, 0, 7},
			wantScript: []string{
				`cd "/"`, `mkdir "a b"`,
				`set_inode_field "/a b" mode 040755`, `set_inode_field "/a b" uid 0`, `set_inode_field "/a b" gid 0`,
				`cd "/a b"`, `write "/stage/1" "f"`,
				`set_inode_field "/a b/f" mode 0100600`, `set_inode_field "/a b/f" uid 0`, `set_inode_field "/a b/f" gid 0`,
				`symlink "l" "f"`,
				`set_inode_field "/a b/l" mode 0120777`, `set_inode_field "/a b/l" uid 0`, `set_inode_field "/a b/l" gid 0`,
				`cd "/"`, `write "/stage/2" "top"`,
				`set_inode_field "/top" mode 0100640`, `set_inode_field "/top" uid 1`, `set_inode_field "/top" gid 2`,
			},
			wantWant: []inodeInfo{
				{Exists: true, Type: "directory", Mode: 0o755, Size: -1},
				{Exists: true, Type: "regular", Mode: 0o600, Size: 5},
				{Exists: true, Type: "symlink", Mode: 0o777, Size: 1},
				{Exists: true, Type: "regular", Mode: 0o640, UID: 1, GID: 2, Size: 7},
			},
		},
		{
			name: "existing kept and replaced",
			entries: []TreeEntry{
				{Path: "/", Kind: TreeDir, Mode: 0o755, KeepExisting: true},
				{Path: "/d", Kind: TreeDir, Mode: 0o750},
				{Path: "/d/f", Kind: TreeFile, Mode: 0o600, Source: "/s"},
				{Path: "/d/l", Kind: TreeFile, Mode: 0o600, Source: "/s"},
			},
			existing: []inodeInfo{dirInfo, dirInfo, regInfo, linkInfo},
			sizes:    []int64{0, 0, 9, 9},
			wantScript: []string{
				`set_inode_field "/d" mode 040750`, `set_inode_field "/d" uid 0`, `set_inode_field "/d" gid 0`,
				`rm "/d/f"`, `cd "/d"`, `write "/s" "f"`,
				`set_inode_field "/d/f" mode 0100600`, `set_inode_field "/d/f" uid 0`, `set_inode_field "/d/f" gid 0`,
				`rm "/d/l"`, `write "/s" "l"`,
				`set_inode_field "/d/l" mode 0100600`, `set_inode_field "/d/l" uid 0`, `set_inode_field "/d/l" gid 0`,
			},
			wantWant: []inodeInfo{
				{Exists: true, Type: "directory", Mode: 0o700, Size: -1},
				{Exists: true, Type: "directory", Mode: 0o750, Size: -1},
				{Exists: true, Type: "regular", Mode: 0o600, Size: 9},
				{Exists: true, Type: "regular", Mode: 0o600, Size: 9},
			},
		},
		{
			name:     "file over directory",
			entries:  []TreeEntry{{Path: "/d", Kind: TreeFile, Source: "/s"}},
			existing: []inodeInfo{dirInfo},
			sizes:    []int64{1},
			wantErr:  "/d exists and is a directory; a file cannot replace it",
		},
		{
			name:     "directory over file",
			entries:  []TreeEntry{{Path: "/f", Kind: TreeDir, KeepExisting: true}},
			existing: []inodeInfo{regInfo},
			sizes:    []int64{0},
			wantErr:  "/f exists and is a regular, not a directory",
		},
		{
			name:     "directory over symlink",
			entries:  []TreeEntry{{Path: "/l", Kind: TreeDir}},
			existing: []inodeInfo{linkInfo},
			sizes:    []int64{0},
			wantErr:  "/l exists and is a symlink, not a directory",
		},
		{
			name:     "symlink over socket",
			entries:  []TreeEntry{{Path: "/s", Kind: TreeSymlink, Target: "x"}},
			existing: []inodeInfo{{Exists: true, Type: "socket"}},
			sizes:    []int64{0},
			wantErr:  "/s exists and is a socket; a symlink cannot replace it",
		},
		{
			name:     "line too long",
			entries:  []TreeEntry{{Path: "/f", Kind: TreeFile, Source: "/" + strings.Repeat("s", 4100)}},
			existing: []inodeInfo{none},
			sizes:    []int64{0},
			wantErr:  "longer than 4096 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script, want, err := treeScript(tt.entries, tt.existing, tt.sizes)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("treeScript: got error %v, want one containing %q", err, tt.wantErr)
				}
				if !errdefs.IsInvalid(err) {
					t.Errorf("treeScript: got %v, want an ErrInvalid error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("treeScript: %v", err)
			}
			if !reflect.DeepEqual(script, tt.wantScript) {
				t.Errorf("script:\ngot  %q\nwant %q", script, tt.wantScript)
			}
			if !reflect.DeepEqual(want, tt.wantWant) {
				t.Errorf("want:\ngot  %+v\nwant %+v", want, tt.wantWant)
			}
		})
	}
}

func TestTreeKindString(t *testing.T) {
	tests := []struct {
		kind TreeKind
		want string
	}{
		{TreeFile, "file"}, {TreeDir, "directory"}, {TreeSymlink, "symlink"}, {TreeKind(9), "kind(9)"},
	}
	for _, tt := range tests {
		if got := tt.kind.String(); got != tt.want {
			t.Errorf("TreeKind(%d).String(): got %q, want %q", int(tt.kind), got, tt.want)
		}
	}
}
