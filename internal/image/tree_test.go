package image

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRootfsSize(t *testing.T) {
	tests := []struct {
		name    string
		content int64
		want    int64
	}{
		{"empty", 0, 256 * mib},
		{"typical debian tree", 667 * mib, 1152 * mib}, // 667*1.3+256 = 1123.1 -> 1152
		{"exact multiple", 640 * mib, 1088 * mib},      // 832+256 = 1088
		{"one byte over", 1, 320 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rootfsSize(tt.content)
			if got != tt.want {
				t.Errorf("got %d MiB, want %d MiB", got/mib, tt.want/mib)
			}
			if got%rootfsRounding != 0 || got < tt.content+tt.content*3/10+rootfsHeadroom {
				t.Errorf("got %d, want a 64 MiB multiple of at least content*1.3+256M", got)
			}
		})
	}
}

func TestTreeBytes(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a/data"), bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a/data"), filepath.Join(dir, "a/b/hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("data", filepath.Join(dir, "a/link")); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(dir, "sparse")
	if err := os.WriteFile(sparse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 1<<30); err != nil {
		t.Fatal(err)
	}
	got, err := treeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 1 MiB once (hard link not counted twice), 3 directories and a
	// symlink at 4 KiB; the sparse file's hole costs nothing.
	min := int64(1<<20 + 4*4096)
	if got < min || got > min+1<<20 {
		t.Errorf("got %d, want about %d", got, min)
	}
}

func TestMountsUnder(t *testing.T) {
	mountinfo := strings.Join([]string{
		"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw",
		"30 22 0:5 / /cache/build-x/tree/dev rw shared:2 - devtmpfs udev rw",
		"31 22 0:6 / /cache/build-x/tree/proc rw - proc proc rw",
		"32 22 0:7 / /cache/build-xy rw - tmpfs tmpfs rw",
		`33 22 0:8 / /cache/build-x/tree/with\040space rw - tmpfs tmpfs rw`,
		"short line",
	}, "\n")
	got, err := mountsUnder(strings.NewReader(mountinfo), "/cache/build-x/")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/cache/build-x/tree/dev", "/cache/build-x/tree/proc", "/cache/build-x/tree/with space"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRemoveBuildDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "build")
	if err := os.MkdirAll(filepath.Join(dir, "tree/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tree/etc/x"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := removeBuildDir(dir); err != nil {
		t.Fatalf("removeBuildDir: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("got stat %v, want the directory gone", err)
	}
	t.Run("refuses a mount point", func(t *testing.T) {
		// "/proc" is mounted on every Linux host this runs on.
		if err := removeBuildDir("/proc"); err == nil || !strings.Contains(err.Error(), "still mounted below it") {
			t.Errorf("got %v, want a refusal naming the mount", err)
		}
	})
}

func TestMoveFile(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, []byte("kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := moveFile(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "kernel" {
		t.Errorf("got %q, %v, want %q", b, err, "kernel")
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("got source still there (%v), want it moved", err)
	}
}

func TestWriteAuthorizedKeys(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writeAuthorizedKeys chowns to root; run the tests as root to cover it")
	}
	home := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeAuthorizedKeys(home, "  "+testKeyEd25519+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(home, ".ssh/authorized_keys"))
	if err != nil || string(got) != testKeyEd25519+"\n" {
		t.Errorf("got %q, %v, want the key line", got, err)
	}
	for p, want := range map[string]os.FileMode{home: 0o700, filepath.Join(home, ".ssh"): 0o700, filepath.Join(home, ".ssh/authorized_keys"): 0o600} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: got %v, %v, want mode %v", p, st.Mode().Perm(), err, want)
		}
	}
}

func TestLogTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := logTail(p, 2); got != "c\nd" {
		t.Errorf("got %q, want %q", got, "c\nd")
	}
	if got := logTail(p+"-missing", 2); got != "" {
		t.Errorf("got %q, want empty", got)
	}
}
