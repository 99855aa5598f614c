package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"banger/internal/errdefs"
)

func TestCloneFileKeepsContentAndHoles(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// Data at the start, in the middle (with an all-zero chunk written
	// explicitly) and in the last, partial chunk.
	writes := map[int64][]byte{
		0:                     bytes.Repeat([]byte{1}, 5000),
		20 << 20:              bytes.Repeat([]byte{2}, 3*cloneChunk),
		20<<20 + 3*cloneChunk: make([]byte, cloneChunk),
		size - 100:            bytes.Repeat([]byte{3}, 100),
	}
	for off, b := range writes {
		if _, err := src.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := cloneFile(dst, src); err != nil {
		t.Fatalf("cloneFile: %v", err)
	}

	want, err := os.ReadFile(src.Name())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatal("clone content differs from source")
	}
	alloc, err := AllocatedBytes(dst.Name())
	if err != nil {
		t.Fatal(err)
	}
	// A reflink shares blocks; a sparse copy writes about 4 chunks. Either
	// way the clone must not occupy the whole 64 MiB.
	if alloc > 4<<20 {
		t.Errorf("got %d allocated bytes, want a sparse clone (< 4 MiB)", alloc)
	}
}

func TestCopyNonZeroWithoutSeekData(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	data := append(make([]byte, 2*cloneChunk), []byte("tail")...)
	if _, err := src.Write(data); err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// Ask for more than src holds: copyNonZero stops at src's end.
	if err := copyNonZero(dst, src, 0, int64(len(data))+cloneChunk, make([]byte, cloneChunk)); err != nil {
		t.Fatalf("copyNonZero: %v", err)
	}
	if err := dst.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("got %d bytes ending %q, want %d bytes ending %q", len(got), got[len(got)-4:], len(data), "tail")
	}
}

func TestAllocatedBytes(t *testing.T) {
	dir := t.TempDir()
	sparse := filepath.Join(dir, "sparse")
	if err := os.WriteFile(sparse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 1<<30); err != nil {
		t.Fatal(err)
	}
	dense := filepath.Join(dir, "dense")
	if err := os.WriteFile(dense, bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("sparse", func(t *testing.T) {
		got, err := AllocatedBytes(sparse)
		if err != nil {
			t.Fatal(err)
		}
		if got > 64<<10 {
			t.Errorf("got %d, want (almost) 0 for a 1 GiB hole", got)
		}
	})
	t.Run("dense", func(t *testing.T) {
		got, err := AllocatedBytes(dense)
		if err != nil {
			t.Fatal(err)
		}
		if got < 1<<20 {
			t.Errorf("got %d, want at least %d", got, 1<<20)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := AllocatedBytes(filepath.Join(dir, "nope"))
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})
}
