package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"banger/internal/api"
	"banger/internal/model"
)

// pullOptions are the flags of image pull.
type pullOptions struct {
	name       string
	size       string
	kernelFrom string
	kernelRef  string
	insecure   bool
	quiet      bool
	asJSON     bool
}

func newImagePullCmd(g *globals) *cobra.Command {
	var o pullOptions
	cmd := &cobra.Command{
		Use:   "pull REF [--name NAME] [--kernel-ref KERNEL] [--size SIZE] [--kernel-from IMAGE]",
		Short: "Import an OCI or Docker image from a registry",
		Long: `Import an OCI or Docker image from a registry as a managed image. An index
gives its linux/amd64 image. Registries are accessed anonymously or with the
credentials of your Docker config (~/.docker/config.json, credential helpers
included). banger's agent and guest units are added to the image.

An image without systemd or sshd (most container images) gets them at the
first boot of each of its VMs, installed with the image's own package manager
(apt-get, dnf, microdnf or yum: the Debian and Fedora families) from its
configured mirror; that first boot needs the VM to have NAT (vm run --nat)
and takes a few minutes. Alpine (apk) images without them are refused, as are
images with no such package manager.

The kernel and initrd come from the kernel catalog (--kernel-ref, see
banger kernel list) or else, with the work disk seed, from another image
(--kernel-from, default the default image, built first when needed).

  banger image pull debian:bookworm
  banger image pull debian:trixie --kernel-ref debian-bookworm-kernel
  banger image pull registry.example:5000/team/dev:1 --name team-dev --size 8G`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd.Context(), g, args[0], o)
		},
	}
	o.register(cmd)
	return cmd
}

func (o *pullOptions) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&o.name, "name", "", "image name (default: from the repository and tag, e.g. debian-bookworm)")
	fl.StringVar(&o.size, "size", "", "root filesystem size, e.g. 4G (default: the image content plus headroom)")
	fl.StringVar(&o.kernelRef, "kernel-ref", "", "catalog kernel (and its initrd) to boot (default: the kernel of --kernel-from)")
	fl.StringVar(&o.kernelFrom, "kernel-from", "", "image whose work seed, and kernel and initrd without --kernel-ref, to use (default: the default image)")
	fl.BoolVar(&o.insecure, "insecure", false, "allow plain HTTP to the registry (a local test registry)")
	fl.BoolVarP(&o.quiet, "quiet", "q", false, "print no progress")
	fl.BoolVar(&o.asJSON, "json", false, "print the image as JSON")
}

// request builds the pull request for ref.
func (o *pullOptions) request(ref string) api.ImagePullRequest {
	name := o.name
	if name == "" {
		name = defaultPullName(ref)
	}
	return api.ImagePullRequest{Ref: ref, Name: name, Size: o.size, Insecure: o.insecure, KernelFrom: o.kernelFrom, KernelRef: o.kernelRef}
}

func runPull(ctx context.Context, g *globals, ref string, o pullOptions) error {
	return makeImage(ctx, g, api.MethodImagePull, o.request(ref), o.quiet, o.asJSON)
}

// makeImage calls method, which makes an image (a pull or a build), and
// prints it: progress on stderr (see pullPrinter; only warnings when
// quiet), the image on stdout, as JSON or its name and short id.
func makeImage(ctx context.Context, g *globals, method string, req any, quiet, asJSON bool) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	p := newPullPrinter(g, quiet)
	c.OnNotify = p.notify
	var img model.Image
	err = c.Call(ctx, method, req, &img)
	p.finish()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(g.stdout, img)
	}
	fmt.Fprintf(g.stdout, "%s\t%s\n", img.Name, img.ID[:12])
	return nil
}

// defaultPullName makes an image name from a reference: the last path
// component of the repository and the tag (or the digest's first 12
// hex digits), lower-cased, other characters turned into '-'.
// "registry:5000/team/App:1.2" gives "app-1-2"; "debian" gives "debian".
func defaultPullName(ref string) string {
	s := strings.TrimSpace(ref)
	digest := ""
	if i := strings.Index(s, "@"); i >= 0 {
		s, digest = s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	if _, hex, ok := strings.Cut(digest, ":"); ok && digest != "" {
		if len(hex) > 12 {
			hex = hex[:12]
		}
		if repo, _, tagged := strings.Cut(s, ":"); tagged {
			s = repo // the digest names the image; the tag is a hint
		}
		s += "-" + hex
	}
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if len(name) > model.MaxNameLength {
		name = strings.TrimRight(name[:model.MaxNameLength], "-")
	}
	if name == "" {
		return "pulled"
	}
	return name
}

// pullPrinter shows pull progress on stderr: on a terminal, the running
// download's byte count is one line rewritten in place; elsewhere only
// finished steps are printed, one log line each. --quiet keeps warnings
// only.
type pullPrinter struct {
	g       *globals
	w       io.Writer
	tty     bool
	width   int
	quiet   bool
	pending bool // a download line waits to be overwritten
}

func newPullPrinter(g *globals, quiet bool) *pullPrinter {
	p := &pullPrinter{g: g, w: g.stderr, quiet: quiet}
	if f, ok := g.stderr.(*os.File); ok && isTerminal(f) {
		p.tty = true
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			p.width = w
		}
	}
	return p
}

func (p *pullPrinter) notify(method string, params json.RawMessage) {
	var pr api.Progress
	if method == api.NotifyProgress && json.Unmarshal(params, &pr) == nil {
		if p.quiet && pr.Step != "warning" {
			return
		}
		if pr.Step == api.PullStepDownload {
			if p.tty {
				line := "==> " + pr.Message
				if p.width > 1 && len(line) >= p.width {
					line = line[:p.width-1]
				}
				fmt.Fprintf(p.w, "\r\033[K%s", line)
				p.pending = true
			}
			return
		}
	}
	p.finish()
	p.g.onNotify(method, params)
}

// finish ends a pending download line.
func (p *pullPrinter) finish() {
	if p.pending {
		fmt.Fprint(p.w, "\r\033[K")
		p.pending = false
	}
}
