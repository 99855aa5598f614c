package api

// Kernel catalog methods. kernel.import takes KernelImportRequest and
// gives model.Kernel; kernel.list takes Empty and gives []model.Kernel;
// kernel.show and kernel.rm take Ref (id, unique id prefix or name) and
// give model.Kernel and Empty.
const (
	MethodKernelImport = "kernel.import"
	MethodKernelList   = "kernel.list"
	MethodKernelShow   = "kernel.show"
	MethodKernelRm     = "kernel.rm"
)

// KernelImportRequest enters the kernel in directory From (an absolute
// path holding vmlinuz or vmlinux, and optionally initrd.img or initrd
// and a modules directory) into the catalog as Name. The files are
// copied; From is left as it is.
type KernelImportRequest struct {
	Name string `json:"name"`
	From string `json:"from"`
}
