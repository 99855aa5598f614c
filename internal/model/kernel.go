package model

import "time"

// Kernel is an entry of the kernel catalog: a boot image (bzImage
// "vmlinuz" or ELF "vmlinux") with its optional initrd and modules tree,
// which images refer to by name (Image.KernelRef).
type Kernel struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	KernelPath string `json:"kernel_path"`
	InitrdPath string `json:"initrd_path,omitempty"`
	ModulesDir string `json:"modules_dir,omitempty"`
	// Version is the kernel release, e.g. "6.1.0-28-amd64", read from the
	// bzImage header or the modules directory's name; empty when neither
	// tells it.
	Version string `json:"version,omitempty"`
	// Managed kernels' files are banger's own, under the state directory,
	// and are removed with the entry.
	Managed   bool      `json:"managed"`
	CreatedAt time.Time `json:"created_at"`
}
