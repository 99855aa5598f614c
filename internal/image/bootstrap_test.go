package image

import (
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
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

		SourceDateEpoch: 1704067200,
	}
	name, args := bootstrapCommand(plan)
	if name != "env" {
		t.Errorf("got command %q, want env", name)
	}
	want := []string{
		"TMPDIR=/cache/build-x/tmp",
		"SOURCE_DATE_EPOCH=1704067200",
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

	t.Run("recipe hook before customize.sh", func(t *testing.T) {
		plan.RecipeHook = "/cache/build-x/recipe.sh"
		_, got := bootstrapCommand(plan)
		i := slices.Index(want, "--customize-hook='/cache/build-x/customize.sh' \"$1\" '/cache/build-x/initrd-files.txt'")
		want := slices.Insert(slices.Clone(want), i, `--customize-hook='/cache/build-x/recipe.sh' "$1"`)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got\n%q\nwant\n%q", got, want)
		}
	})
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

func TestRecipeHookScript(t *testing.T) {
	r := Recipe{
		Name:            "mine",
		SourceDateEpoch: 1000,
		Files: []RecipeFile{
			{Path: "/etc/motd", Mode: 0o644, Owner: "root:root"},
			{Path: "/usr/local/bin/it's", Mode: 0o755 | os.ModeSetuid, Owner: "dev:1000"},
		},
		Commands: []string{"useradd dev", "echo 'x' > /y"},
	}
	script := recipeHookScript(r, "/stage/recipe-files")
	for _, want := range []string{
		"SOURCE_DATE_EPOCH=1000 chroot \"$root\" \"$@\"",
		"env -i PATH=" + hookPath + " HOME=/root",
		`install_file '/etc/motd' 0644 'root:root' <'/stage/recipe-files/0' || fail 'files[0] /etc/motd'`,
		`install_file '/usr/local/bin/it'\''s' 4755 'dev:1000' <'/stage/recipe-files/1' || fail 'files[1] /usr/local/bin/it'\''s'`,
		`run /bin/sh -ec 'useradd dev' || fail 'commands[0]'`,
		`run /bin/sh -ec 'echo '\''x'\'' > /y' || fail 'commands[1]'`,
		`echo "recipe mine: $1 failed" >&2`,
		// chmod after chown: chown clears the setuid bit.
		`chown -- "$3" "$1"; chmod -- "$2" "$1"`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if i, j := strings.Index(script, "install_file '/etc/motd'"), strings.Index(script, "run /bin/sh -ec 'useradd"); i < 0 || j < i {
		t.Errorf("got files at %d and commands at %d, want files first", i, j)
	}
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}
}

func TestOctalMode(t *testing.T) {
	tests := []struct {
		in   os.FileMode
		want string
	}{
		{0o644, "0644"},
		{0o755 | os.ModeSetuid, "4755"},
		{0o2775&0o777 | os.ModeSetgid, "2775"},
		{0o777 | os.ModeSticky, "1777"},
		{0, "0000"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := octalMode(tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRecipeModulesFile(t *testing.T) {
	got := recipeModulesFile([]string{"virtio_mmio", "ext4"})
	want := "# banger: the recipe's initrd_modules, loaded early\nvirtio_mmio\next4\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
