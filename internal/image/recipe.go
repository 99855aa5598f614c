package image

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"banger/internal/errdefs"
)

// DefaultMirror is the Debian mirror used when BuildOptions.Mirror is "".
const DefaultMirror = "http://deb.debian.org/debian"

// recipe is how one named image is built.
type recipe struct {
	Name     string
	Suite    string   // default suite
	Packages []string // installed on top of the minbase variant
	// InitrdModules must be in the initrd: QEMU microvm's disks and NIC
	// are virtio-mmio devices found through ACPI, and the Debian kernel
	// builds all of that as modules.
	InitrdModules []string
}

var recipes = map[string]recipe{
	"debian-bookworm": {
		Name:  "debian-bookworm",
		Suite: "bookworm",
		Packages: []string{
			// boot and the kernel
			"systemd", "systemd-sysv", "udev", "dbus", "libpam-systemd",
			"linux-image-amd64", "initramfs-tools", "kmod", "e2fsprogs",
			// banger's contract: network, ssh
			"iproute2", "netbase", "openssh-server", "openssh-sftp-server", "openssh-client",
			// what a developer sandbox is expected to have
			"ca-certificates", "curl", "git", "make", "jq", "python3",
			"procps", "less", "iputils-ping",
		},
		InitrdModules: []string{"virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "ext4"},
	},
}

// Names lists the image recipes Build knows, sorted.
func Names() []string {
	names := make([]string, 0, len(recipes))
	for n := range recipes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookupRecipe finds a recipe by name.
func lookupRecipe(name string) (recipe, error) {
	r, ok := recipes[name]
	if !ok {
		return recipe{}, errdefs.Invalid(fmt.Errorf("unknown image recipe %q; known: %s", name, strings.Join(Names(), ", ")))
	}
	return r, nil
}

var suitePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// validateSuite accepts Debian suite and codename spellings.
func validateSuite(s string) error {
	if !suitePattern.MatchString(s) {
		return errdefs.Invalid(fmt.Errorf("invalid Debian suite %q", s))
	}
	return nil
}

// validateMirror accepts an http, https or file URL without spaces.
func validateMirror(m string) error {
	u, err := url.Parse(m)
	if err != nil {
		return errdefs.Invalid(fmt.Errorf("invalid mirror %q: %w", m, err))
	}
	if (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") || strings.ContainsAny(m, " \t\n'\"") ||
		(u.Scheme != "file" && u.Host == "") {
		return errdefs.Invalid(fmt.Errorf("invalid mirror %q: want an http(s) URL such as %s", m, DefaultMirror))
	}
	return nil
}

// bootstrapPlan is one mmdebstrap run.
type bootstrapPlan struct {
	Suite     string
	Mirror    string
	Tree      string // target directory, must not exist
	Packages  []string
	DebCache  string // downloaded .deb files kept between builds
	Early     string // overlay synced in before packages are installed
	Late      string // overlay synced in after
	Customize string // customize.sh
	InitrdOut string // where customize.sh lists the initrd's files
	LogFile   string
	TmpDir    string // mmdebstrap's TMPDIR, removed with the build
	// Sources is the image's /etc/apt/sources.list: the Debian mirror,
	// also when the build itself ran from the offline package cache.
	Sources string
}

// bootstrapCommand returns the command and arguments that build the image
// tree. mmdebstrap runs as root in its own mount and pid namespaces
// (unshare): the /proc, /sys and /dev mounts it makes in the tree are
// never visible on the host and vanish with it, even when it is killed
// (--kill-child, and the pid namespace dies with its first process). Its
// temp files go to TmpDir, inside the build's scratch directory, so a
// killed build leaves none behind.
func bootstrapCommand(p bootstrapPlan) (string, []string) {
	args := []string{"TMPDIR=" + p.TmpDir}
	args = append(args,
		"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--",
		"mmdebstrap",
		"--mode=root",
		"--variant=minbase",
		"--format=directory",
		"--logfile="+p.LogFile,
		`--aptopt=APT::Install-Recommends "false"`,
		// A VM image needs no manuals, docs or translations; the copyright
		// files stay.
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--include="+strings.Join(p.Packages, ","),
		// Keep downloaded packages in DebCache between builds.
		"--skip=download/empty",
		"--skip=essential/unlink",
		`--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
		"--setup-hook=sync-in "+shellQuote(p.DebCache)+" /var/cache/apt/archives/",
		"--setup-hook=sync-in "+shellQuote(p.Early)+" /",
		"--customize-hook=sync-out /var/cache/apt/archives "+shellQuote(p.DebCache),
		"--customize-hook=printf '%s\\n' "+shellQuote(p.Sources)+` > "$1/etc/apt/sources.list"`,
		"--customize-hook=sync-in "+shellQuote(p.Late)+" /",
		"--customize-hook="+shellQuote(p.Customize)+` "$1" `+shellQuote(p.InitrdOut),
		p.Suite,
		p.Tree,
		p.Mirror,
	)
	return "env", args
}

// shellQuote quotes s for sh and for mmdebstrap's special hooks (which
// split their arguments the way sh does).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// missingInitrdModules returns the modules of want that are neither
// built into the kernel (modules.builtin) nor present in the lsinitramfs
// listing as a (possibly compressed) .ko file.
func missingInitrdModules(listing, builtin string, want []string) []string {
	have := map[string]bool{}
	for _, text := range []string{listing, builtin} {
		for _, line := range strings.Split(text, "\n") {
			base := line[strings.LastIndexByte(line, '/')+1:]
			for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
				if name, ok := strings.CutSuffix(strings.TrimSpace(base), ext); ok {
					// modprobe treats - and _ alike in module names.
					have[strings.ReplaceAll(name, "-", "_")] = true
				}
			}
		}
	}
	var missing []string
	for _, m := range want {
		if !have[strings.ReplaceAll(m, "-", "_")] {
			missing = append(missing, m)
		}
	}
	return missing
}
