package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// cloneChunk is the unit of the sparse copy: chunks that are all zero
// are left as holes in the destination.
const cloneChunk = 64 << 10

// cloneFile copies src into dst, an empty file, as cheaply as the host
// allows: a reflink where the filesystem shares blocks (btrfs, XFS),
// else a sparse copy that reads only src's data extents and writes only
// non-zero chunks. dst ends up exactly as long as src.
func cloneFile(dst, src *os.File) error {
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err == nil {
		return nil
	}
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if err := sparseCopy(dst, src, st.Size()); err != nil {
		return err
	}
	return dst.Truncate(st.Size())
}

// sparseCopy copies the data extents of src (found with SEEK_DATA and
// SEEK_HOLE) to the same offsets in dst.
func sparseCopy(dst, src *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	fd := int(src.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				// No SEEK_DATA here: treat the whole file as data.
				return copyNonZero(dst, src, 0, size, buf)
			}
			return fmt.Errorf("seek data: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if err := copyNonZero(dst, src, start, end, buf); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// copyNonZero copies src[start:end) to dst at the same offsets, skipping
// chunks that are all zero.
func copyNonZero(dst, src *os.File, start, end int64, buf []byte) error {
	for off := start; off < end; {
		n := min(int64(len(buf)), end-off)
		got, err := src.ReadAt(buf[:n], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		for c := 0; c < got; c += cloneChunk {
			chunk := buf[c:min(c+cloneChunk, got)]
			if isZero(chunk) {
				continue
			}
			if _, err := dst.WriteAt(chunk, off+int64(c)); err != nil {
				return fmt.Errorf("write at %d: %w", off+int64(c), err)
			}
		}
		if int64(got) < n {
			return nil // src ended early
		}
		off += n
	}
	return nil
}

var zeroChunk = make([]byte, cloneChunk)

func isZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }
