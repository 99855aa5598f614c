package storage

import (
	"os"
	"reflect"
	"testing"
)

func TestQemuImgOverlayArgs(t *testing.T) {
	got := qemuImgOverlayArgs("/img/rootfs.ext4", "/vm/system.qcow2", 8<<30)
	want := []string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/img/rootfs.ext4", "/vm/system.qcow2", "8589934592"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMkfsArgs(t *testing.T) {
	base := []string{"-q", "-F", "-b", "4096", "-I", "256", "-i", "16384", "-m", "0"}
	lazy := []string{"-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0"}
	join := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name string
		opts mkfsOptions
		want []string
	}{
		{
			name: "empty work disk",
			opts: mkfsOptions{Path: "/vm/work.ext4", Label: "banger-work"},
			want: join(base, []string{"-L", "banger-work"}, lazy, []string{"/vm/work.ext4"}),
		},
		{
			name: "from a tree",
			opts: mkfsOptions{Path: "/img/rootfs.ext4", Label: "banger-root", SrcDir: "/tmp/tree"},
			want: join(base, []string{"-L", "banger-root"}, lazy, []string{"-d", "/tmp/tree", "/img/rootfs.ext4"}),
		},
		{
			name: "explicit inode count",
			opts: mkfsOptions{Path: "/x.ext4", Label: "l", SrcDir: "/t", Inodes: 5000},
			want: join(base, []string{"-L", "l", "-N", "5000"}, lazy, []string{"-d", "/t", "/x.ext4"}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mkfsArgs(tt.opts); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSmallToolArgs(t *testing.T) {
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"resize2fs", resize2fsArgs("/d.ext4"), []string{"/d.ext4"}},
		{"e2fsck", e2fsckArgs("/d.ext4"), []string{"-f", "-p", "/d.ext4"}},
		{"tune2fs label", tune2fsLabelArgs("/d.ext4", "banger-work"), []string{"-L", "banger-work", "/d.ext4"}},
		{"debugfs read", debugfsArgs("/d.ext4", false), []string{"-f", "-", "/d.ext4"}},
		{"debugfs write", debugfsArgs("/d.ext4", true), []string{"-w", "-f", "-", "/d.ext4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestDebugfsMode(t *testing.T) {
	tests := []struct {
		name     string
		typeBits uint32
		mode     os.FileMode
		want     string
	}{
		{"file 0600", typeRegular, 0o600, "0100600"},
		{"dir 0700", typeDirectory, 0o700, "040700"},
		{"type bits of FileMode ignored", typeDirectory, os.ModeDir | 0o755, "040755"},
		{"setuid", typeRegular, os.ModeSetuid | 0o755, "0104755"},
		{"sticky dir", typeDirectory, os.ModeSticky | 0o777, "041777"},
		{"setgid", typeDirectory, os.ModeSetgid | 0o775, "042775"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := debugfsMode(tt.typeBits, tt.mode); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDebugfsScripts(t *testing.T) {
	t.Run("write new file", func(t *testing.T) {
		got := debugfsWriteScript("/tmp/src", "/root/.ssh/authorized_keys", false, 0o600, 0, 0)
		want := []string{
			`cd "/root/.ssh"`,
			`write "/tmp/src" "authorized_keys"`,
			`set_inode_field "/root/.ssh/authorized_keys" mode 0100600`,
			`set_inode_field "/root/.ssh/authorized_keys" uid 0`,
			`set_inode_field "/root/.ssh/authorized_keys" gid 0`,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("replace file in root dir", func(t *testing.T) {
		got := debugfsWriteScript("/tmp/src", "/motd", true, 0o644, 1000, 1001)
		want := []string{
			`rm "/motd"`,
			`cd "/"`,
			`write "/tmp/src" "motd"`,
			`set_inode_field "/motd" mode 0100644`,
			`set_inode_field "/motd" uid 1000`,
			`set_inode_field "/motd" gid 1001`,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("mkdir", func(t *testing.T) {
		got := debugfsMkdirScript([]string{"/a", "/a/b c"}, 0o700, 0, 0)
		want := []string{
			`mkdir "/a"`,
			`set_inode_field "/a" mode 040700`,
			`set_inode_field "/a" uid 0`,
			`set_inode_field "/a" gid 0`,
			`mkdir "/a/b c"`,
			`set_inode_field "/a/b c" mode 040700`,
			`set_inode_field "/a/b c" uid 0`,
			`set_inode_field "/a/b c" gid 0`,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("stat", func(t *testing.T) {
		got := debugfsStatScript([]string{"/", "/x"})
		want := []string{`stat "/"`, `stat "/x"`}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestSplitGuestPath(t *testing.T) {
	tests := []struct{ in, dir, name string }{
		{"/a", "/", "a"},
		{"/a/b", "/a", "b"},
		{"/root/.ssh/authorized_keys", "/root/.ssh", "authorized_keys"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			dir, name := splitGuestPath(tt.in)
			if dir != tt.dir || name != tt.name {
				t.Errorf("got %q, %q, want %q, %q", dir, name, tt.dir, tt.name)
			}
		})
	}
}

func TestGuestPrefixes(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"/", nil},
		{"/a", []string{"/a"}},
		{"/a/b/c", []string{"/a", "/a/b", "/a/b/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := guestPrefixes(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
