package image

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

func TestBootstrapCommand(t *testing.T) {
	plan := bootstrapPlan{
		Suite:     "bookworm",
		Mirror:    "http://deb.debian.org/debian",
		Tree:      "/cache/build-x/tree",
		Packages:  []string{"systemd", "openssh-server"},
		DebCache:  "/cache/debs/bookworm",
		Early:     "/cache/build-x/early",
		Late:      "/cache/build-x/late",
		Customize: "/cache/build-x/customize.sh",
		InitrdOut: "/cache/build-x/initrd-files.txt",
		LogFile:   "/cache/debian-bookworm-build.log",
		TmpDir:    "/cache/build-x/tmp",
		Sources:   "deb http://deb.debian.org/debian bookworm main",
	}
	name, args := bootstrapCommand(plan)
	if name != "env" {
		t.Errorf("got command %q, want env", name)
	}
	want := []string{
		"TMPDIR=/cache/build-x/tmp",
		"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--",
		"mmdebstrap",
		"--mode=root",
		"--variant=minbase",
		"--format=directory",
		"--logfile=/cache/debian-bookworm-build.log",
		`--aptopt=APT::Install-Recommends "false"`,
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--include=systemd,openssh-server",
		"--skip=download/empty",
		"--skip=essential/unlink",
		`--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
		"--setup-hook=sync-in '/cache/debs/bookworm' /var/cache/apt/archives/",
		"--setup-hook=sync-in '/cache/build-x/early' /",
		"--customize-hook=sync-out /var/cache/apt/archives '/cache/debs/bookworm'",
		`--customize-hook=printf '%s\n' 'deb http://deb.debian.org/debian bookworm main' > "$1/etc/apt/sources.list"`,
		"--customize-hook=sync-in '/cache/build-x/late' /",
		`--customize-hook='/cache/build-x/customize.sh' "$1" '/cache/build-x/initrd-files.txt'`,
		"bookworm",
		"/cache/build-x/tree",
		"http://deb.debian.org/debian",
	}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("got\n%q\nwant\n%q", args, want)
	}
}

func TestRecipePackages(t *testing.T) {
	r, err := lookupRecipe("debian-bookworm")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range r.Packages {
		if have[p] {
			t.Errorf("package %s listed twice", p)
		}
		have[p] = true
	}
	for _, p := range []string{"systemd", "systemd-sysv", "udev", "dbus", "openssh-server", "openssh-sftp-server", "git",
		"ca-certificates", "curl", "iproute2", "make", "jq", "python3", "linux-image-amd64", "initramfs-tools", "e2fsprogs", "kmod"} {
		if !have[p] {
			t.Errorf("package %s missing from the recipe", p)
		}
	}
	for _, p := range []string{"systemd-networkd", "network-manager", "ifupdown"} {
		if have[p] {
			t.Errorf("package %s would fight banger-net", p)
		}
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/plain/path", `'/plain/path'`},
		{"/with space", `'/with space'`},
		{"it's", `'it'\''s'`},
		{`$HOME"x`, `'$HOME"x'`},
		{"", `''`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := shellQuote(tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMissingInitrdModules(t *testing.T) {
	listing := strings.Join([]string{
		"conf/modules",
		"usr/lib/modules/6.1.0-50-amd64/kernel/drivers/virtio/virtio_mmio.ko",
		"usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko.xz",
		"usr/lib/modules/6.1.0-50-amd64/kernel/drivers/net/virtio_net.ko.zst",
		"usr/lib/modules/6.1.0-50-amd64/kernel/fs/ext4",
	}, "\n")
	builtin := "kernel/drivers/char/virtio_console.ko\n"
	want := []string{"virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "ext4", "virtio-pci"}
	got := missingInitrdModules(listing, builtin, want)
	if !reflect.DeepEqual(got, []string{"ext4", "virtio-pci"}) {
		t.Errorf("got %q, want [ext4 virtio-pci]", got)
	}
	if got := missingInitrdModules(listing+"\nusr/lib/modules/x/kernel/fs/ext4/ext4.ko\nusr/lib/modules/x/virtio_pci.ko", builtin, want); got != nil {
		t.Errorf("got %q, want none missing", got)
	}
}

func TestValidateMirrorAndSuite(t *testing.T) {
	mirrors := []struct {
		in string
		ok bool
	}{
		{"http://deb.debian.org/debian", true},
		{"https://mirror.example/debian/", true},
		{"file:///srv/mirror", true},
		{"ftp://deb.debian.org/debian", false},
		{"deb.debian.org/debian", false},
		{"http://", false},
		{"http://x/deb ian", false},
		{"http://x/'y", false},
	}
	for _, tt := range mirrors {
		t.Run("mirror "+tt.in, func(t *testing.T) {
			err := validateMirror(tt.in)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
				t.Errorf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
	suites := []struct {
		in string
		ok bool
	}{
		{"bookworm", true},
		{"bookworm-backports", true},
		{"stable", true},
		{"", false},
		{"Bookworm", false},
		{"bookworm main", false},
		{"../x", false},
	}
	for _, tt := range suites {
		t.Run("suite "+tt.in, func(t *testing.T) {
			err := validateSuite(tt.in)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
				t.Errorf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
