package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	mib = int64(1) << 20
	// workSeedSize is the size of work-seed.ext4; work disks grow from it.
	workSeedSize = 256 * mib
	// rootfsHeadroom is added to the tree's size (after 30% slack) so a
	// fresh VM has room before banger-growroot fills the system disk.
	rootfsHeadroom = 256 * mib
	rootfsRounding = 64 * mib
)

// treeBytes is the space the files under dir occupy: allocated blocks of
// regular files (hard links counted once; mkfs.ext4 -d keeps holes), plus
// a block for every directory and symlink.
func treeBytes(dir string) (int64, error) {
	var total int64
	type fileID struct{ dev, ino uint64 }
	seen := map[fileID]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			total += info.Size()
			return nil
		}
		switch {
		case info.Mode().IsRegular():
			id := fileID{uint64(st.Dev), st.Ino}
			if st.Nlink > 1 {
				if seen[id] {
					return nil
				}
				seen[id] = true
			}
			total += st.Blocks * 512
		default:
			total += 4096
		}
		return nil
	})
	return total, err
}

// rootfsSize is the size of rootfs.ext4 for a tree of content bytes: the
// content plus 30%, plus a fixed headroom, rounded up to 64 MiB.
func rootfsSize(content int64) int64 {
	size := content + content*3/10 + rootfsHeadroom
	return (size + rootfsRounding - 1) / rootfsRounding * rootfsRounding
}

// mountsUnder returns the mount points listed in mountinfo (the format of
// /proc/self/mountinfo) that are dir or below it.
func mountsUnder(mountinfo io.Reader, dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of
// mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// removeBuildDir removes a build's scratch directory. It refuses when
// anything is mounted below it (RemoveAll would descend into a bind
// mount of the host's /dev or /sys), and retries briefly because the
// processes of a killed build may still be exiting.
func removeBuildDir(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	mounts, err := mountsUnder(f, dir)
	f.Close()
	if err != nil {
		return fmt.Errorf("remove %s: read mountinfo: %w", dir, err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove %s: refusing, still mounted below it: %s", dir, strings.Join(mounts, ", "))
	}
	for attempt := 0; ; attempt++ {
		err = os.RemoveAll(dir)
		if err == nil {
			if _, serr := os.Lstat(dir); errors.Is(serr, fs.ErrNotExist) {
				return nil
			}
			err = errors.New("it is still there after removal")
		}
		if attempt == 10 {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// moveFile renames src to dst, copying across filesystems.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	} else if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return os.Remove(src)
}
