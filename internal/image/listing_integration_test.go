//go:build integration

package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"banger/internal/storage"
)

// TestListing lists a small ext4 image with every file type; it needs
// root for the device node and the owners.
func TestListing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, chown): run the integration tests as root")
	}
	tree := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(tree, 0o755))
	must(os.MkdirAll(filepath.Join(tree, "etc", "my dir"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "etc", "my dir", "hello"), []byte("hello\n"), 0o640))
	must(os.Chmod(filepath.Join(tree, "etc", "my dir", "hello"), 0o640))
	must(os.Lchown(filepath.Join(tree, "etc", "my dir", "hello"), 1000, 4))
	must(os.WriteFile(filepath.Join(tree, "su"), []byte("x"), 0o755))
	must(unix.Chmod(filepath.Join(tree, "su"), 0o4755))
	must(os.Symlink("etc/my dir/hello", filepath.Join(tree, "link")))
	must(os.Mkdir(filepath.Join(tree, "dev"), 0o755))
	must(unix.Mknod(filepath.Join(tree, "dev", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Chmod(filepath.Join(tree, "dev", "null"), 0o666))
	must(unix.Mkfifo(filepath.Join(tree, "fifo"), 0o600))

	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	must(storage.MakeExt4FromDir(t.Context(), tree, img, 32<<20, "test"))
	got, err := Listing(t.Context(), img)
	must(err)
	want := strings.Join([]string{
		"/\tdir\t0755\t0:0\t0\t-",
		"/dev\tdir\t0755\t0:0\t0\t-",
		"/dev/null\tchar\t0666\t0:0\t0\t-",
		"/etc\tdir\t0755\t0:0\t0\t-",
		`"/etc/my dir"` + "\tdir\t0755\t0:0\t0\t-",
		`"/etc/my dir/hello"` + "\tfile\t0640\t1000:4\t6\tsha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
		"/fifo\tfifo\t0600\t0:0\t0\t-",
		`/link` + "\tsymlink\t0777\t0:0\t16\t-> \"etc/my dir/hello\"",
		"/lost+found\tdir\t0700\t0:0\t0\t-",
		"/su\tfile\t4755\t0:0\t1\tsha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
	}, "\n") + "\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	again, err := Listing(t.Context(), img)
	must(err)
	if string(again) != string(got) {
		t.Error("got a different listing the second time")
	}
}
