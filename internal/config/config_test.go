package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/paths"
)

const fullConfig = `
log_level = "debug"
vmm = "qemu"
firecracker_bin = "/opt/fc/firecracker"
jailer_bin = "/opt/fc/jailer"
jailer_enabled = true
jailer_chroot_base = "/srv/banger-jail"
ssh_key_path = "/etc/banger/id_ed25519"
auto_stop_stale_after = "2h"
stats_poll_interval = "30s"
bridge_name = "br-test"
bridge_ip = "10.20.0.1"
cidr = "16"
tap_pool_size = 4
guest_to_guest = true
default_dns = "9.9.9.9"
default_image_name = "my-image"
package_cache_dir = "/srv/debs"
dns_listen = "127.0.0.1:5353"

[[file_sync]]
host = "~/.gitconfig"
guest = ".gitconfig"
mode = "0644"

[[file_sync]]
host = "/home/dev/.config/nvim"
guest = "/root/.config/nvim"

[vm_defaults]
vcpu_count = 4
memory = "4G"
disk_size = "16G"
system_overlay_size = "12G"
nat = true
`

func testLayout(t *testing.T) paths.Layout {
	t.Helper()
	return paths.FromHome(t.TempDir())
}

func TestParseFull(t *testing.T) {
	layout := testLayout(t)
	got, err := Parse(layout, fullConfig)
	if err != nil {
		t.Fatalf("Parse: got error %v, want nil", err)
	}
	home, _ := os.UserHomeDir()
	want := model.DaemonConfig{
		LogLevel:           "debug",
		VMM:                VMMQEMU,
		FirecrackerBin:     "/opt/fc/firecracker",
		JailerBin:          "/opt/fc/jailer",
		JailerEnabled:      true,
		JailerChrootBase:   "/srv/banger-jail",
		SSHKeyPath:         "/etc/banger/id_ed25519",
		HostHomeDir:        home,
		AutoStopStaleAfter: 2 * time.Hour,
		StatsPollInterval:  30 * time.Second,
		BridgeName:         "br-test",
		BridgeIP:           "10.20.0.1",
		CIDR:               "16",
		TapPoolSize:        4,
		GuestToGuest:       true,
		DefaultDNS:         "9.9.9.9",
		DefaultImageName:   "my-image",
		PackageCacheDir:    "/srv/debs",
		DNSListen:          "127.0.0.1:5353",
		FileSync: []model.FileSyncEntry{
			{Host: "~/.gitconfig", Guest: ".gitconfig", Mode: "0644"},
			{Host: "/home/dev/.config/nvim", Guest: "/root/.config/nvim"},
		},
		VMDefaults: model.VMDefaultsOverride{
			VCPUCount:             4,
			MemoryMiB:             4096,
			WorkDiskSizeBytes:     16 << 30,
			SystemOverlaySizeByte: 12 << 30,
			NATEnabled:            true,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(full config):\n got %+v\nwant %+v", got, want)
	}
}

func TestParseEmptyGivesDefaults(t *testing.T) {
	layout := testLayout(t)
	got, err := Parse(layout, "# nothing set\n")
	if err != nil {
		t.Fatalf("Parse: got error %v, want nil", err)
	}
	if want := Default(layout); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(empty):\n got %+v\nwant %+v", got, want)
	}
	if errs := Validate(Default(layout)); len(errs) != 0 {
		t.Errorf("Validate(Default): got %v, want no errors", errs)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"log level", got.LogLevel, "info"},
		{"vmm", got.VMM, VMMAuto},
		{"jailer", got.JailerBin, model.DefaultJailerBinary},
		{"ssh key", got.SSHKeyPath, layout.DefaultSSHKey()},
		{"bridge", got.BridgeName, model.DefaultBridgeName},
		{"bridge ip", got.BridgeIP, model.DefaultBridgeIP},
		{"cidr", got.CIDR, model.DefaultCIDR},
		{"dns", got.DefaultDNS, model.DefaultDNS},
		{"image", got.DefaultImageName, model.DefaultImageName},
		{"stats poll", got.StatsPollInterval, model.DefaultStatsPollInterval},
		{"tap pool", got.TapPoolSize, 0},
		{"guest to guest", got.GuestToGuest, false},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(model.DaemonConfig) (got, want any)
	}{
		{"stale zero turns off", `auto_stop_stale_after = "0"`, func(c model.DaemonConfig) (any, any) { return c.AutoStopStaleAfter, time.Duration(0) }},
		{"stale empty turns off", `auto_stop_stale_after = ""`, func(c model.DaemonConfig) (any, any) { return c.AutoStopStaleAfter, time.Duration(0) }},
		{"stale 0s", `auto_stop_stale_after = "0s"`, func(c model.DaemonConfig) (any, any) { return c.AutoStopStaleAfter, time.Duration(0) }},
		{"values are trimmed", `log_level = " warn "`, func(c model.DaemonConfig) (any, any) { return c.LogLevel, "warn" }},
		{"memory bare MiB", "[vm_defaults]\nmemory = \"1536\"", func(c model.DaemonConfig) (any, any) { return c.VMDefaults.MemoryMiB, 1536 }},
		{"memory 200G above disk ceiling", "[vm_defaults]\nmemory = \"200G\"", func(c model.DaemonConfig) (any, any) { return c.VMDefaults.MemoryMiB, 200 * 1024 }},
		{"nat false", "[vm_defaults]\nnat = false", func(c model.DaemonConfig) (any, any) { return c.VMDefaults.NATEnabled, false }},
		{"tap pool 64", `tap_pool_size = 64`, func(c model.DaemonConfig) (any, any) { return c.TapPoolSize, 64 }},
		{"tap pool 0", `tap_pool_size = 0`, func(c model.DaemonConfig) (any, any) { return c.TapPoolSize, 0 }},
		{"guest to guest on", `guest_to_guest = true`, func(c model.DaemonConfig) (any, any) { return c.GuestToGuest, true }},
		{"guest to guest off", `guest_to_guest = false`, func(c model.DaemonConfig) (any, any) { return c.GuestToGuest, false }},
		{"vmm firecracker", `vmm = "firecracker"`, func(c model.DaemonConfig) (any, any) { return c.VMM, VMMFirecracker }},
		{"home file sync", "[[file_sync]]\nhost = \"~\"\nguest = \"/root/host-home\"", func(c model.DaemonConfig) (any, any) { return len(c.FileSync), 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(testLayout(t), tt.text)
			if err != nil {
				t.Fatalf("Parse(%q): got error %v, want nil", tt.text, err)
			}
			if got, want := tt.check(cfg); got != want {
				t.Errorf("Parse(%q): got %v, want %v", tt.text, got, want)
			}
		})
	}
}

func TestParseBadValuesNameTheirKey(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // substring naming the key
	}{
		{"log level", `log_level = "verbose"`, "log_level"},
		{"log level type", `log_level = 5`, "log_level"},
		{"vmm", `vmm = "kvmtool"`, "vmm"},
		{"firecracker empty", `firecracker_bin = ""`, "firecracker_bin"},
		{"jailer empty", `jailer_bin = "  "`, "jailer_bin"},
		{"jailer enabled type", `jailer_enabled = "yes"`, "jailer_enabled"},
		{"chroot relative", `jailer_chroot_base = "srv/jail"`, "jailer_chroot_base"},
		{"ssh key relative", `ssh_key_path = "id_ed25519"`, "ssh_key_path"},
		{"ssh key empty", `ssh_key_path = ""`, "ssh_key_path"},
		{"stale not a duration", `auto_stop_stale_after = "soon"`, "auto_stop_stale_after"},
		{"stale negative", `auto_stop_stale_after = "-1m"`, "auto_stop_stale_after"},
		{"stale bare number", `auto_stop_stale_after = "10"`, "auto_stop_stale_after"},
		{"stats zero", `stats_poll_interval = "0"`, "stats_poll_interval"},
		{"stats empty", `stats_poll_interval = ""`, "stats_poll_interval"},
		{"stats negative", `stats_poll_interval = "-10s"`, "stats_poll_interval"},
		{"stats type", `stats_poll_interval = 10`, "stats_poll_interval"},
		{"bridge too long", `bridge_name = "br-0123456789abc"`, "bridge_name"},
		{"bridge empty", `bridge_name = ""`, "bridge_name"},
		{"bridge slash", `bridge_name = "br/fc"`, "bridge_name"},
		{"bridge ip v6", `bridge_ip = "fd00::1"`, "bridge_ip"},
		{"bridge ip mapped v6", `bridge_ip = "::ffff:10.0.0.1"`, "bridge_ip"},
		{"bridge ip garbage", `bridge_ip = "10.0.0"`, "bridge_ip"},
		{"cidr too small", `cidr = "7"`, "cidr"},
		{"cidr too big", `cidr = "31"`, "cidr"},
		{"cidr slash", `cidr = "/24"`, "cidr"},
		{"cidr suffix", `cidr = "24x"`, "cidr"},
		{"cidr plus", `cidr = "+24"`, "cidr"},
		{"cidr type", `cidr = 24`, "cidr"},
		{"tap pool negative", `tap_pool_size = -1`, "tap_pool_size"},
		{"tap pool large", `tap_pool_size = 65`, "tap_pool_size"},
		{"guest to guest type", `guest_to_guest = "yes"`, "guest_to_guest"},
		{"relative package cache", `package_cache_dir = "debs"`, "package_cache_dir"},
		{"dns listen without port", `dns_listen = "127.0.0.1"`, "dns_listen"},
		{"tap pool overflow", `tap_pool_size = 99999999999999999999`, "tap_pool_size"},
		{"dns", `default_dns = "one.one.one.one"`, "default_dns"},
		{"image name", `default_image_name = "Debian_12"`, "default_image_name"},
		{"image name empty", `default_image_name = ""`, "default_image_name"},
		{"vcpu zero", "[vm_defaults]\nvcpu_count = 0", "vm_defaults.vcpu_count"},
		{"vcpu too many", "[vm_defaults]\nvcpu_count = 65", "vm_defaults.vcpu_count"},
		{"vcpu type", "[vm_defaults]\nvcpu_count = \"2\"", "vm_defaults.vcpu_count"},
		{"memory too small", "[vm_defaults]\nmemory = \"64M\"", "vm_defaults.memory"},
		{"memory too big", "[vm_defaults]\nmemory = \"257G\"", "vm_defaults.memory"},
		{"memory garbage", "[vm_defaults]\nmemory = \"lots\"", "vm_defaults.memory"},
		{"memory not whole MiB", "[vm_defaults]\nmemory = \"1025K\"", "vm_defaults.memory"},
		{"memory overflow", "[vm_defaults]\nmemory = \"99999999999999999999G\"", "vm_defaults.memory"},
		{"disk size", "[vm_defaults]\ndisk_size = \"1.5G\"", "vm_defaults.disk_size"},
		{"disk size over ceiling", "[vm_defaults]\ndisk_size = \"129G\"", "vm_defaults.disk_size"},
		{"overlay size", "[vm_defaults]\nsystem_overlay_size = \"0\"", "vm_defaults.system_overlay_size"},
		{"nat type", "[vm_defaults]\nnat = \"yes\"", "vm_defaults.nat"},
		{"vm_defaults type", `vm_defaults = 3`, "vm_defaults"},
		{"file_sync type", `file_sync = 3`, "file_sync"},
		{"file sync mode", "[[file_sync]]\nhost = \"~/a\"\nguest = \"a\"\nmode = \"0999\"", "file_sync[0]: mode"},
		{"file sync mode too big", "[[file_sync]]\nhost = \"~/a\"\nguest = \"a\"\nmode = \"17777\"", "file_sync[0]: mode"},
		{"syntax", "log_level = \"debug", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(testLayout(t), tt.text)
			if err == nil {
				t.Fatalf("Parse(%q): got nil, want error naming %q", tt.text, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q): got error %q, want it to name %q", tt.text, err, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("Parse(%q): got error %v, want errors.Is ErrInvalid", tt.text, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(%q): got multi-line error %q, want one line", tt.text, err)
			}
		})
	}
}

func TestParseUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"top level", `colour = "blue"`, []string{`unknown key "colour"`}},
		{"vm_defaults", "[vm_defaults]\ncpus = 2", []string{`unknown key "vm_defaults.cpus"`}},
		{"file_sync", "[[file_sync]]\nhost = \"~/a\"\nguest = \"a\"\nowner = \"root\"", []string{`unknown key "file_sync.owner"`}},
		{"unknown table", "[network]\nmtu = 1500", []string{`unknown key "network"`}},
		{"several", "zeta = 1\nalpha = 2\n[vm_defaults]\nmem = \"2G\"", []string{
			`3 problems`, `unknown key "alpha"`, `unknown key "vm_defaults.mem"`, `unknown key "zeta"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(testLayout(t), tt.text)
			if err == nil {
				t.Fatalf("Parse(%q): got nil, want an unknown key error", tt.text)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q): got error %q, want it to contain %q", tt.text, err, w)
				}
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	text := `
log_level = "loud"
vmm = "bochs"
bridge_ip = "nope"
cidr = "99"
mystery = true

[[file_sync]]
host = "relative/path"
guest = "x"

[[file_sync]]
host = "~/ok"
guest = "/etc/passwd"

[vm_defaults]
vcpu_count = 0
memory = "1K"
`
	_, err := Parse(testLayout(t), text)
	if err == nil {
		t.Fatal("Parse: got nil, want errors")
	}
	msg := err.Error()
	for _, want := range []string{
		"9 problems", `unknown key "mystery"`, "log_level", "vmm", "bridge_ip", "cidr",
		"file_sync[0]: host", "file_sync[1]: guest", "vm_defaults.vcpu_count", "vm_defaults.memory",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Parse: got error %q, want it to contain %q", msg, want)
		}
	}
}

func TestValidateFileSync(t *testing.T) {
	tests := []struct {
		name    string
		entry   model.FileSyncEntry
		wantErr string // empty when valid
	}{
		{"home file", model.FileSyncEntry{Host: "~/.gitconfig", Guest: ".gitconfig"}, ""},
		{"home itself", model.FileSyncEntry{Host: "~", Guest: "/root/home"}, ""},
		{"absolute", model.FileSyncEntry{Host: "/home/dev/.vimrc", Guest: "/root/.vimrc", Mode: "0600"}, ""},
		{"guest root", model.FileSyncEntry{Host: "~/dir", Guest: "/root"}, ""},
		{"mode 4 digits", model.FileSyncEntry{Host: "~/a", Guest: "a", Mode: "0755"}, ""},
		{"mode 3 digits", model.FileSyncEntry{Host: "~/a", Guest: "a", Mode: "644"}, ""},
		{"host empty", model.FileSyncEntry{Guest: "a"}, "host: must not be empty"},
		{"host relative", model.FileSyncEntry{Host: "dotfiles/a", Guest: "a"}, "must be ~/... or an absolute path"},
		{"host dot relative", model.FileSyncEntry{Host: "./a", Guest: "a"}, "must be ~/... or an absolute path"},
		{"host tilde user", model.FileSyncEntry{Host: "~user/x", Guest: "a"}, "~user paths are not supported"},
		{"host tilde root", model.FileSyncEntry{Host: "~root", Guest: "a"}, "~user paths are not supported"},
		{"host dotdot home", model.FileSyncEntry{Host: "~/../etc/shadow", Guest: "a"}, "must not contain '..'"},
		{"host dotdot abs", model.FileSyncEntry{Host: "/home/dev/../../etc", Guest: "a"}, "must not contain '..'"},
		{"host dotdot end", model.FileSyncEntry{Host: "~/a/..", Guest: "a"}, "must not contain '..'"},
		{"guest empty", model.FileSyncEntry{Host: "~/a"}, "guest: must not be empty"},
		{"guest dotdot", model.FileSyncEntry{Host: "~/a", Guest: "../etc/passwd"}, "must not contain '..'"},
		{"guest abs dotdot", model.FileSyncEntry{Host: "~/a", Guest: "/root/../etc"}, "must not contain '..'"},
		{"guest outside root", model.FileSyncEntry{Host: "~/a", Guest: "/etc/passwd"}, "must be under /root"},
		{"guest root prefix", model.FileSyncEntry{Host: "~/a", Guest: "/rootkit"}, "must be under /root"},
		{"mode not octal", model.FileSyncEntry{Host: "~/a", Guest: "a", Mode: "0800"}, "want an octal mode"},
		{"mode symbolic", model.FileSyncEntry{Host: "~/a", Guest: "a", Mode: "u+rw"}, "want an octal mode"},
		{"mode 0o prefix", model.FileSyncEntry{Host: "~/a", Guest: "a", Mode: "0o644"}, "want an octal mode"},
		{"mode too big", model.FileSyncEntry{Host: "~/a", Guest: "a", Mode: "77777"}, "want an octal mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFileSync(tt.entry)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidateFileSync(%+v): got %v, want nil", tt.entry, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateFileSync(%+v): got nil, want error containing %q", tt.entry, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateFileSync(%+v): got %q, want it to contain %q", tt.entry, err, tt.wantErr)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"2G", 2048, ""},
		{"2g", 2048, ""},
		{"2GiB", 2048, ""},
		{"2GB", 2048, ""},
		{"512M", 512, ""},
		{"512MiB", 512, ""},
		{"1024", 1024, ""},
		{" 1024 ", 1024, ""},
		{"128", 128, ""},
		{"131072K", 128, ""},
		{"134217728B", 128, ""},
		{"256G", 256 * 1024, ""},
		{"200G", 200 * 1024, ""},
		{"262144", 256 * 1024, ""},
		{"", 0, "want a size"},
		{"G", 0, "want a size"},
		{"1.5G", 0, "want a size"},
		{"-1G", 0, "want a size"},
		{"1T", 0, "want a size"},
		{"1iB", 0, "want a size"},
		{"127", 0, "want 128 MiB to 256 GiB"},
		{"0", 0, "want 128 MiB to 256 GiB"},
		{"257G", 0, "want at most 256 GiB"},
		{"262145", 0, "want at most 256 GiB"},
		{"99999999999999999999", 0, "want at most 256 GiB"},
		{"9223372036854775807G", 0, "want at most 256 GiB"},
		{"1025K", 0, "whole number of MiB"},
		{"1000B", 0, "whole number of MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMemory(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("ParseMemory(%q): got %d, %v, want %d, nil", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseMemory(%q): got %d, want error containing %q", tt.in, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMemory(%q): got %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestValidateVCPU(t *testing.T) {
	tests := []struct {
		n     int
		valid bool
	}{{-1, false}, {0, false}, {1, true}, {2, true}, {64, true}, {65, false}}
	for _, tt := range tests {
		err := ValidateVCPU(tt.n)
		if got := err == nil; got != tt.valid {
			t.Errorf("ValidateVCPU(%d): got valid=%v (%v), want %v", tt.n, got, err, tt.valid)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Run("missing file gives defaults", func(t *testing.T) {
		layout := testLayout(t)
		got, err := Load(layout)
		if err != nil {
			t.Fatalf("Load: got error %v, want nil", err)
		}
		if want := Default(layout); !reflect.DeepEqual(got, want) {
			t.Errorf("Load:\n got %+v\nwant %+v", got, want)
		}
	})
	t.Run("BANGER_HOME layout", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv(paths.EnvHome, home)
		layout, err := paths.Resolve()
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte("vmm = \"qemu\"\ntap_pool_size = 2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(layout)
		if err != nil {
			t.Fatalf("Load: got error %v, want nil", err)
		}
		if got.VMM != VMMQEMU || got.TapPoolSize != 2 {
			t.Errorf("Load: got vmm %q tap_pool_size %d, want qemu 2", got.VMM, got.TapPoolSize)
		}
		if want := filepath.Join(home, "state", "ssh", "id_ed25519"); got.SSHKeyPath != want {
			t.Errorf("Load: got ssh_key_path %q, want %q", got.SSHKeyPath, want)
		}
	})
	t.Run("bad file names the path and keeps the kind", func(t *testing.T) {
		layout := testLayout(t)
		if err := os.WriteFile(layout.ConfigFile(), []byte("vmm = \"bochs\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(layout)
		if err == nil {
			t.Fatal("Load: got nil, want error")
		}
		if !strings.Contains(err.Error(), layout.ConfigFile()) || !strings.Contains(err.Error(), "vmm") {
			t.Errorf("Load: got %q, want it to name %s and vmm", err, layout.ConfigFile())
		}
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Load: got %v, want errors.Is ErrInvalid", err)
		}
	})
	t.Run("unreadable path", func(t *testing.T) {
		layout := testLayout(t)
		if err := os.Mkdir(layout.ConfigFile(), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(layout); err == nil {
			t.Error("Load with a directory as config.toml: got nil, want error")
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add(fullConfig)
	f.Add("")
	f.Add("log_level = 5")
	f.Add("[vm_defaults]\nmemory = \"200G\"\n[[file_sync]]\nhost = \"~/../x\"")
	f.Add("a = [1, 2, {b = 3}]\n[[x.y]]\n")
	f.Add("tap_pool_size = 0x7fffffffffffffff")
	layout := paths.FromHome("/nonexistent/banger")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse(layout, text)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Parse: got error %v, want errors.Is ErrInvalid", err)
			}
			return
		}
		if errs := Validate(cfg); len(errs) != 0 {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", errs)
		}
		for _, e := range cfg.FileSync {
			if err := ValidateFileSync(e); err != nil {
				t.Fatalf("Parse accepted file_sync %+v: %v", e, err)
			}
		}
	})
}
