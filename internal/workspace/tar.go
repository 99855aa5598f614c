package workspace

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Stats count what WriteTar wrote.
type Stats struct {
	Files    int
	Dirs     int
	Symlinks int
	// ContentBytes is the sum of the regular files' sizes.
	ContentBytes int64
	// ArchiveBytes is the length of the tar stream, headers and padding
	// included: the bytes sent to the guest.
	ArchiveBytes int64
}

// doneMarker is the last member of every workspace archive, an empty
// file at the top: the guest replaces its copy only when it arrived, so
// a stream cut short (the CLI failed or was killed) changes nothing.
// ExtractCommand removes it; NewPlan refuses a repository file of that
// name.
const doneMarker = ".banger-prepare-done"

// WriteTar writes plan's entries to w as one tar stream, in plan order:
// regular files with their exact bytes, symlinks as symlinks (never
// followed), directories; every member owned by root:root. Names that
// do not fit ustar (long, non-ASCII) get PAX records. A file whose size
// changed since the plan was made is sent with its size at the time it
// is opened. The stream ends with doneMarker.
func WriteTar(ctx context.Context, w io.Writer, plan *Plan) (Stats, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	var st Stats
	for i := range plan.Entries {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("write workspace archive: %w", err)
		}
		e := &plan.Entries[i]
		if err := writeEntry(tw, e, &st); err != nil {
			return st, fmt.Errorf("write workspace archive: %s %q: %w", e.Kind, e.Path, err)
		}
	}
	marker := &tar.Header{Name: doneMarker, Typeflag: tar.TypeReg, Mode: 0o644, Uname: "root", Gname: "root", Format: tar.FormatPAX}
	if err := tw.WriteHeader(marker); err != nil {
		return st, fmt.Errorf("write workspace archive: %w", err)
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("write workspace archive: %w", err)
	}
	st.ArchiveBytes = cw.n
	return st, nil
}

func writeEntry(tw *tar.Writer, e *Entry, st *Stats) error {
	hdr := &tar.Header{
		Name:    e.Path,
		Mode:    int64(e.Mode.Perm()),
		ModTime: e.modTime,
		Uname:   "root",
		Gname:   "root",
		Format:  tar.FormatPAX,
	}
	switch e.Kind {
	case KindDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
		st.Dirs++
		return tw.WriteHeader(hdr)
	case KindSymlink:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Target
		st.Symlinks++
		return tw.WriteHeader(hdr)
	case KindFile:
	default:
		return fmt.Errorf("unknown entry kind")
	}

	f, err := openNoFollow(e.source)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is no longer a regular file", e.source)
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("%s shrank while it was being sent", e.source)
	}
	st.Files++
	st.ContentBytes += n
	return nil
}

// openNoFollow opens a regular file for reading without following a
// symlink in its last component.
func openNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s became a symlink", path)
	}
	return f, err
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
