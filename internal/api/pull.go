package api

// MethodImagePull imports an OCI or Docker image from a registry as a
// managed image (params ImagePullRequest, result model.Image). Progress
// arrives as NotifyProgress notifications; steps named PullStepDownload
// carry byte counts that the next message supersedes.
const MethodImagePull = "image.pull"

// PullStepDownload is the progress step of a layer download still
// running: a terminal may overwrite it with the next message; a log may
// skip it. A finished layer is reported under PullStepLayer.
const (
	PullStepDownload = "download"
	PullStepLayer    = "layer"
)

// ImagePullRequest imports Ref (e.g. "debian:bookworm",
// "registry.example:5000/team/app@sha256:...") as the image Name.
type ImagePullRequest struct {
	Ref string `json:"ref"`
	// Name of the new image; the CLI derives one from Ref when the user
	// gives none.
	Name string `json:"name"`
	// Size of the root filesystem, e.g. "4G"; empty for the image
	// content plus headroom.
	Size string `json:"size,omitempty"`
	// Insecure allows plain HTTP to the registry (a local test registry).
	Insecure bool `json:"insecure,omitempty"`
	// KernelFrom names the image whose kernel, initrd and work seed the
	// pulled image boots with (only its work seed when KernelRef is set);
	// empty means the configured default image, built first when needed.
	KernelFrom string `json:"kernel_from,omitempty"`
	// KernelRef names the catalog kernel (with its initrd and modules)
	// the pulled image boots; the work seed still comes from KernelFrom.
	// Empty means the kernel of KernelFrom.
	KernelRef string `json:"kernel_ref,omitempty"`
}
