package image

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"banger/internal/errdefs"
)

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

// defaultPackages is the default image's package list before recipes
// became TOML files; the embedded recipe must keep it.
var defaultPackages = []string{
	"systemd", "systemd-sysv", "udev", "dbus", "libpam-systemd",
	"linux-image-amd64", "initramfs-tools", "kmod", "e2fsprogs",
	"iproute2", "netbase", "openssh-server", "openssh-sftp-server", "openssh-client",
	"ca-certificates", "curl", "git", "make", "jq", "python3",
	"procps", "less", "iputils-ping",
}

func TestDefaultRecipe(t *testing.T) {
	r := DefaultRecipe()
	want := Recipe{
		Name:            "debian-bookworm",
		Suite:           "bookworm",
		SourceDateEpoch: 1704067200,
		Packages:        defaultPackages,
		InitrdModules:   []string{"virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "ext4"},
		Files:           []RecipeFile{},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
	parsed, err := ParseRecipe(DefaultRecipeTOML(), "")
	if err != nil {
		t.Fatalf("parse DefaultRecipeTOML: %v", err)
	}
	if !reflect.DeepEqual(parsed.clone(), r) {
		t.Errorf("got %+v from DefaultRecipeTOML, want DefaultRecipe %+v", parsed, r)
	}
	t.Run("copies", func(t *testing.T) {
		r.Packages[0] = "changed"
		if got := DefaultRecipe().Packages[0]; got != "systemd" {
			t.Errorf("got %q after changing a returned recipe, want systemd", got)
		}
	})
	t.Run("toml by name", func(t *testing.T) {
		if got, err := RecipeTOML("debian-bookworm"); err != nil || string(got) != string(DefaultRecipeTOML()) {
			t.Errorf("got %d bytes, %v, want the default recipe", len(got), err)
		}
		if _, err := RecipeTOML("nope"); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	})
}

func TestParseRecipe(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "setup.sh"), []byte("#!/bin/sh\necho hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `
name = "mine"
suite = "trixie"
mirror = "http://mirror.example/debian"
source_date_epoch = 1000
packages = ["linux-image-amd64", "g++", "libstdc++6"]
initrd_modules = ["virtio_blk"]
commands = ["useradd dev", "echo ok"]

[[files]]
path = "/etc/motd"
content = "hello\n"

[[files]]
path = "/usr/local/bin/setup"
source = "setup.sh"
mode = "4750"
owner = "dev:1000"

[[files]]
path = "/etc/ssh/sshd_config.d/banger.conf"
content = "PermitRootLogin no\n"
override = true
`
	got, err := ParseRecipe([]byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Recipe{
		Name: "mine", Suite: "trixie", Mirror: "http://mirror.example/debian", SourceDateEpoch: 1000,
		Packages:      []string{"linux-image-amd64", "g++", "libstdc++6"},
		InitrdModules: []string{"virtio_blk"},
		Commands:      []string{"useradd dev", "echo ok"},
		Files: []RecipeFile{
			{Path: "/etc/motd", Content: []byte("hello\n"), Mode: 0o644, Owner: "root:root"},
			{Path: "/usr/local/bin/setup", Content: []byte("#!/bin/sh\necho hi\n"), Mode: 0o750 | os.ModeSetuid, Owner: "dev:1000"},
			{Path: "/etc/ssh/sshd_config.d/banger.conf", Content: []byte("PermitRootLogin no\n"), Mode: 0o644, Owner: "root:root", Override: true},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseRecipeErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\"]\n"
	tests := []struct {
		name, text, baseDir, want string
	}{
		{"unknown key", base + "packges = []\n", dir, `unknown key "packges"`},
		{"unknown file key", base + "[[files]]\npath = \"/x\"\ncontent = \"\"\nmod = \"0644\"\n", dir, `unknown key "files.mod"`},
		{"syntax", base + "suite = \n", dir, "toml: line 4"},
		{"wrong type", "name = \"mine\"\nsuite = \"bookworm\"\npackages = \"linux-image-amd64\"\n", dir, "toml: line 3"},
		{"bad package name", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\", \"Foo_bar\"]\n", dir, `packages[1] "Foo_bar": not a Debian package name`},
		{"package twice", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\", \"linux-image-amd64\"]\n", dir, `packages[1] "linux-image-amd64": listed twice`},
		{"no kernel", "name = \"mine\"\nsuite = \"bookworm\"\npackages = [\"git\"]\n", dir, "packages: no kernel package (linux-image-...)"},
		{"no packages", "name = \"mine\"\nsuite = \"bookworm\"\n", dir, "packages: empty"},
		{"bad name", "name = \"Mine\"\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\"]\n", dir, `name: invalid name "Mine"`},
		{"bad suite", "name = \"mine\"\nsuite = \"Bookworm\"\npackages = [\"linux-image-amd64\"]\n", dir, `suite: invalid Debian suite "Bookworm"`},
		{"bad mirror", base + "mirror = \"ftp://x\"\n", dir, `mirror: invalid mirror "ftp://x"`},
		{"bad module", base + "initrd_modules = [\"virtio blk\"]\n", dir, `initrd_modules[0] "virtio blk": not a kernel module name`},
		{"negative epoch", base + "source_date_epoch = -1\n", dir, "source_date_epoch -1: must not be negative"},
		{"empty command", base + "commands = [\"true\", \"  \"]\n", dir, "commands[1]: empty"},
		{"missing source", base + "[[files]]\npath = \"/etc/x\"\nsource = \"nope.txt\"\n", dir, `files[0] /etc/x: source "nope.txt": open ` + filepath.Join(dir, "nope.txt") + ": no such file or directory"},
		{"source is a dir", base + "[[files]]\npath = \"/etc/x\"\nsource = \"adir\"\n", dir, "is not a regular file"},
		{"relative source without base", base + "[[files]]\npath = \"/etc/x\"\nsource = \"a\"\n", "", "no absolute base directory"},
		{"content and source", base + "[[files]]\npath = \"/etc/x\"\nsource = \"a\"\ncontent = \"b\"\n", dir, "give content or source, not both"},
		{"no content", base + "[[files]]\npath = \"/etc/x\"\n", dir, "content or source is required"},
		{"relative path", base + "[[files]]\npath = \"etc/x\"\ncontent = \"\"\n", dir, `path "etc/x": want an absolute, clean path`},
		{"unclean path", base + "[[files]]\npath = \"/etc/../x\"\ncontent = \"\"\n", dir, `path "/etc/../x": want an absolute, clean path`},
		{"root path", base + "[[files]]\npath = \"/\"\ncontent = \"\"\n", dir, `path "/": want an absolute, clean path`},
		{"proc", base + "[[files]]\npath = \"/proc/sys/x\"\ncontent = \"\"\n", dir, "/proc is not part of the image"},
		{"guest file", base + "[[files]]\npath = \"/etc/fstab\"\ncontent = \"\"\n", dir, `path "/etc/fstab" is one of banger's own guest files; set override = true`},
		{"agent", base + "[[files]]\npath = \"/usr/local/bin/banger-agent\"\ncontent = \"\"\n", dir, "banger's own guest files"},
		{"path twice", base + "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\n[[files]]\npath = \"/etc/x\"\ncontent = \"\"\n", dir, "files[1] /etc/x: listed twice"},
		{"bad mode", base + "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\nmode = \"rw\"\n", dir, `mode "rw": want an octal mode such as "0644"`},
		{"mode too big", base + "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\nmode = \"17777\"\n", dir, `mode "17777"`},
		{"bad owner", base + "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\nowner = \"root;rm\"\n", dir, `owner "root;rm": want user:group`},
		{"several problems", "name = \"mine\"\nsuite = \"x y\"\npackages = [\"git\"]\n", dir, "2 problems: suite: invalid Debian suite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRecipe([]byte(tt.text), tt.baseDir)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got a multi-line error %q, want one line", err)
			}
		})
	}
}

func FuzzParseRecipe(f *testing.F) {
	f.Add(string(DefaultRecipeTOML()))
	f.Add("name = \"x\"\n[[files]]\npath = \"/a\"\ncontent = \"b\"\nmode = \"0777\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := ParseRecipe([]byte(text), "")
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %q, want a one-line ErrInvalid", err)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Errorf("parsed recipe does not validate: %v", err)
		}
	})
}
