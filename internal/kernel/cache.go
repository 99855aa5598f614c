package kernel

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"banger/internal/errdefs"
)

// Cache keeps extracted kernels in Dir, one per boot image content:
// Dir/<sha256 of the boot image>/vmlinux. Entries are written to a
// temporary file and renamed into place, so a reader never sees a
// partial kernel and concurrent extractions of one image are harmless.
type Cache struct {
	Dir string

	mu       sync.Mutex
	inflight map[string]*sync.Mutex
}

// vmlinuxName is the file name of a cached kernel.
const vmlinuxName = "vmlinux"

// Vmlinux returns the path of an uncompressed ELF kernel for the boot
// image at kernelPath: kernelPath itself when it already is an ELF
// kernel, else the cached extraction, made now when missing.
func (c *Cache) Vmlinux(kernelPath string) (string, error) {
	isELF, sum, err := inspect(kernelPath)
	if err != nil {
		return "", fmt.Errorf("vmlinux for %q: %w", kernelPath, err)
	}
	if isELF {
		return kernelPath, nil
	}
	key := hex.EncodeToString(sum)
	dst := filepath.Join(c.Dir, key, vmlinuxName)

	lock := c.keyLock(key)
	lock.Lock()
	defer lock.Unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	img, err := os.ReadFile(kernelPath)
	if err != nil {
		return "", fmt.Errorf("vmlinux for %q: %w", kernelPath, err)
	}
	// The file may have changed since it was hashed.
	if got := sha256.Sum256(img); !bytes.Equal(got[:], sum) {
		return "", fmt.Errorf("vmlinux for %q: file changed while reading it", kernelPath)
	}
	out, err := Extract(img)
	if err != nil {
		return "", fmt.Errorf("vmlinux for %q: %w", kernelPath, err)
	}
	if err := writeAtomic(dst, out); err != nil {
		return "", fmt.Errorf("vmlinux for %q: %w", kernelPath, err)
	}
	return dst, nil
}

// Path returns where the cache keeps the kernel extracted from a boot
// image whose content hashes to sum (hex sha256), whether or not it
// exists.
func (c *Cache) Path(sum string) string { return filepath.Join(c.Dir, sum, vmlinuxName) }

func (c *Cache) keyLock(key string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight == nil {
		c.inflight = make(map[string]*sync.Mutex)
	}
	l, ok := c.inflight[key]
	if !ok {
		l = new(sync.Mutex)
		c.inflight[key] = l
	}
	return l
}

// inspect reports whether the file at path is an ELF file and its sha256.
func inspect(path string) (bool, []byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil, errdefs.NotFound(fmt.Errorf("kernel %q: no such file", path))
	}
	if err != nil {
		return false, nil, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return false, nil, errdefs.Invalid(fmt.Errorf("kernel %q: too short: %w", path, err))
	}
	if string(magic) == elf.ELFMAG {
		return true, nil, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, nil, err
	}
	return false, h.Sum(nil), nil
}

func writeAtomic(dst string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".vmlinux-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
