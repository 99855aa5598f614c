// Package config loads and validates the daemon's TOML configuration
// into a model.DaemonConfig. Unknown keys and bad values are errors that
// name the key; every problem in a file is reported at once. Only the
// daemon and the CLI's config commands import it.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/paths"
)

// The VMM choices.
const (
	VMMAuto        = "auto"
	VMMQEMU        = "qemu"
	VMMFirecracker = "firecracker"
)

// DefaultDNSListen is where the .vm DNS server listens; DNSOff turns it off.
const (
	DefaultDNSListen = "127.0.0.1:42069"
	DNSOff           = "off"
)

// DefaultPackageCacheDir is where image builds keep downloaded packages.
const DefaultPackageCacheDir = "/var/cache/banger/packages"

// file is the TOML shape of config.toml. Durations and sizes are strings
// so they can be validated with the key that holds them.
type file struct {
	LogLevel           *string         `toml:"log_level"`
	VMM                *string         `toml:"vmm"`
	FirecrackerBin     *string         `toml:"firecracker_bin"`
	JailerBin          *string         `toml:"jailer_bin"`
	JailerEnabled      *bool           `toml:"jailer_enabled"`
	JailerChrootBase   *string         `toml:"jailer_chroot_base"`
	SSHKeyPath         *string         `toml:"ssh_key_path"`
	AutoStopStaleAfter *string         `toml:"auto_stop_stale_after"`
	StatsPollInterval  *string         `toml:"stats_poll_interval"`
	BridgeName         *string         `toml:"bridge_name"`
	BridgeIP           *string         `toml:"bridge_ip"`
	CIDR               *string         `toml:"cidr"`
	TapPoolSize        *int            `toml:"tap_pool_size"`
	GuestToGuest       *bool           `toml:"guest_to_guest"`
	DefaultDNS         *string         `toml:"default_dns"`
	DefaultImageName   *string         `toml:"default_image_name"`
	DNSListen          *string         `toml:"dns_listen"`
	PackageCacheDir    *string         `toml:"package_cache_dir"`
	FileSync           []fileSyncEntry `toml:"file_sync"`
	VMDefaults         *vmDefaults     `toml:"vm_defaults"`
}

type fileSyncEntry struct {
	Host  string `toml:"host"`
	Guest string `toml:"guest"`
	Mode  string `toml:"mode"`
}

type vmDefaults struct {
	VCPUCount         *int    `toml:"vcpu_count"`
	Memory            *string `toml:"memory"`
	WorkDiskSize      *string `toml:"disk_size"`
	SystemOverlaySize *string `toml:"system_overlay_size"`
	NAT               *bool   `toml:"nat"`
}

// Default returns the configuration used when no file exists.
func Default(layout paths.Layout) model.DaemonConfig {
	return model.DaemonConfig{
		LogLevel:          "info",
		VMM:               VMMAuto,
		FirecrackerBin:    "firecracker",
		JailerBin:         model.DefaultJailerBinary,
		JailerChrootBase:  "/srv/jailer",
		SSHKeyPath:        layout.DefaultSSHKey(),
		HostHomeDir:       ownerHome(),
		StatsPollInterval: model.DefaultStatsPollInterval,
		BridgeName:        model.DefaultBridgeName,
		BridgeIP:          model.DefaultBridgeIP,
		CIDR:              model.DefaultCIDR,
		TapPoolSize:       0,
		GuestToGuest:      false,
		DefaultDNS:        model.DefaultDNS,
		DefaultImageName:  model.DefaultImageName,
		DNSListen:         DefaultDNSListen,
		PackageCacheDir:   DefaultPackageCacheDir,
	}
}

// ownerHome is the home of the user banger works for: the invoking user
// when run through sudo, else the current one. [[file_sync]] host paths
// live under it.
func ownerHome() string {
	if name := os.Getenv("SUDO_USER"); name != "" && name != "root" {
		if u, err := user.Lookup(name); err == nil && u.HomeDir != "" {
			return u.HomeDir
		}
	}
	home, _ := os.UserHomeDir()
	return home
}

// Load reads the config file of layout; a missing file yields defaults.
func Load(layout paths.Layout) (model.DaemonConfig, error) {
	data, err := os.ReadFile(layout.ConfigFile())
	if errors.Is(err, os.ErrNotExist) {
		return Default(layout), nil
	}
	if err != nil {
		return model.DaemonConfig{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(layout, string(data))
	if err != nil {
		return model.DaemonConfig{}, fmt.Errorf("config %s: %w", layout.ConfigFile(), err)
	}
	return cfg, nil
}

// Parse parses TOML text over the defaults and validates the result.
func Parse(layout paths.Layout, text string) (model.DaemonConfig, error) {
	cfg := Default(layout)
	var f file
	md, err := toml.Decode(text, &f)
	if err != nil {
		return cfg, errdefs.Invalid(fmt.Errorf("parse: %s", errdefs.OneLine(err.Error())))
	}
	var errs []error
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, 0, len(undecoded))
		for _, k := range undecoded {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			errs = append(errs, fmt.Errorf("unknown key %q", k))
		}
	}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	set(&cfg.LogLevel, f.LogLevel)
	set(&cfg.VMM, f.VMM)
	set(&cfg.FirecrackerBin, f.FirecrackerBin)
	set(&cfg.JailerBin, f.JailerBin)
	set(&cfg.JailerChrootBase, f.JailerChrootBase)
	set(&cfg.SSHKeyPath, f.SSHKeyPath)
	set(&cfg.BridgeName, f.BridgeName)
	set(&cfg.BridgeIP, f.BridgeIP)
	set(&cfg.CIDR, f.CIDR)
	set(&cfg.DefaultDNS, f.DefaultDNS)
	set(&cfg.DefaultImageName, f.DefaultImageName)
	set(&cfg.DNSListen, f.DNSListen)
	set(&cfg.PackageCacheDir, f.PackageCacheDir)
	if f.JailerEnabled != nil {
		cfg.JailerEnabled = *f.JailerEnabled
	}
	if f.TapPoolSize != nil {
		cfg.TapPoolSize = *f.TapPoolSize
	}
	if f.GuestToGuest != nil {
		cfg.GuestToGuest = *f.GuestToGuest
	}
	duration := func(key string, raw *string, dst *time.Duration, allowZero bool) {
		if raw == nil {
			return
		}
		s := strings.TrimSpace(*raw)
		if s == "" || s == "0" {
			if allowZero {
				*dst = 0
				return
			}
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %q: not a duration (use forms like 30s, 10m, 2h)", key, *raw))
		case d < 0 && allowZero:
			errs = append(errs, fmt.Errorf("%s %q: must not be negative (0 turns it off)", key, *raw))
		case d <= 0 && !allowZero:
			errs = append(errs, fmt.Errorf("%s %q: must be positive", key, *raw))
		default:
			*dst = d
		}
	}
	duration("auto_stop_stale_after", f.AutoStopStaleAfter, &cfg.AutoStopStaleAfter, true)
	duration("stats_poll_interval", f.StatsPollInterval, &cfg.StatsPollInterval, false)
	if f.VMDefaults != nil {
		errs = append(errs, applyVMDefaults(&cfg.VMDefaults, f.VMDefaults)...)
	}
	for i, e := range f.FileSync {
		entry := model.FileSyncEntry{Host: e.Host, Guest: e.Guest, Mode: e.Mode}
		if err := ValidateFileSync(entry); err != nil {
			errs = append(errs, fmt.Errorf("file_sync[%d]: %w", i, err))
			continue
		}
		cfg.FileSync = append(cfg.FileSync, entry)
	}
	errs = append(errs, Validate(cfg)...)
	if len(errs) > 0 {
		return cfg, errdefs.Invalid(errdefs.JoinLines(errs))
	}
	return cfg, nil
}

func applyVMDefaults(dst *model.VMDefaultsOverride, v *vmDefaults) []error {
	var errs []error
	if v.VCPUCount != nil {
		if err := ValidateVCPU(*v.VCPUCount); err != nil {
			errs = append(errs, fmt.Errorf("vm_defaults.vcpu_count: %w", err))
		} else {
			dst.VCPUCount = *v.VCPUCount
		}
	}
	if v.Memory != nil {
		mib, err := ParseMemory(*v.Memory)
		if err != nil {
			errs = append(errs, fmt.Errorf("vm_defaults.memory: %w", err))
		} else {
			dst.MemoryMiB = mib
		}
	}
	size := func(key string, raw *string, out *int64) {
		if raw == nil {
			return
		}
		n, err := model.ParseSize(*raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("vm_defaults.%s: %w", key, err))
			return
		}
		*out = n
	}
	size("disk_size", v.WorkDiskSize, &dst.WorkDiskSizeBytes)
	size("system_overlay_size", v.SystemOverlaySize, &dst.SystemOverlaySizeByte)
	if v.NAT != nil {
		dst.NATEnabled = *v.NAT
	}
	return errs
}

// Validate checks the resolved values and returns one error per bad key.
func Validate(cfg model.DaemonConfig) []error {
	var errs []error
	switch cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", cfg.LogLevel))
	}
	switch cfg.VMM {
	case VMMAuto, VMMQEMU, VMMFirecracker:
	default:
		errs = append(errs, fmt.Errorf("vmm %q: want auto, qemu or firecracker", cfg.VMM))
	}
	for _, p := range []struct{ key, val string }{
		{"firecracker_bin", cfg.FirecrackerBin},
		{"jailer_bin", cfg.JailerBin},
		{"jailer_chroot_base", cfg.JailerChrootBase},
		{"ssh_key_path", cfg.SSHKeyPath},
	} {
		if p.val == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", p.key))
		}
	}
	if cfg.JailerChrootBase != "" && !filepath.IsAbs(cfg.JailerChrootBase) {
		errs = append(errs, fmt.Errorf("jailer_chroot_base %q: must be an absolute path", cfg.JailerChrootBase))
	}
	if cfg.DNSListen != DNSOff {
		if ap, err := netip.ParseAddrPort(cfg.DNSListen); err != nil || !ap.Addr().Is4() {
			errs = append(errs, fmt.Errorf("dns_listen %q: want an IPv4 address and port such as %s, or \"off\"", cfg.DNSListen, DefaultDNSListen))
		}
	}
	if !filepath.IsAbs(cfg.PackageCacheDir) {
		errs = append(errs, fmt.Errorf("package_cache_dir %q: must be an absolute path", cfg.PackageCacheDir))
	}
	if cfg.SSHKeyPath != "" && !filepath.IsAbs(cfg.SSHKeyPath) {
		errs = append(errs, fmt.Errorf("ssh_key_path %q: must be an absolute path", cfg.SSHKeyPath))
	}
	if !validIfName(cfg.BridgeName) {
		errs = append(errs, fmt.Errorf("bridge_name %q: want 1-15 characters of letters, digits, '-', '_' or '.'", cfg.BridgeName))
	}
	if !isIPv4(cfg.BridgeIP) {
		errs = append(errs, fmt.Errorf("bridge_ip %q: not an IPv4 address", cfg.BridgeIP))
	}
	var prefix int
	if _, err := fmt.Sscanf(cfg.CIDR, "%d", &prefix); err != nil || fmt.Sprint(prefix) != cfg.CIDR || prefix < 8 || prefix > 30 {
		errs = append(errs, fmt.Errorf("cidr %q: want a prefix length between 8 and 30, e.g. \"24\"", cfg.CIDR))
	}
	if cfg.TapPoolSize < 0 || cfg.TapPoolSize > 64 {
		errs = append(errs, fmt.Errorf("tap_pool_size %d: want 0 to 64", cfg.TapPoolSize))
	}
	if !isIPv4(cfg.DefaultDNS) {
		errs = append(errs, fmt.Errorf("default_dns %q: not an IPv4 address", cfg.DefaultDNS))
	}
	if err := model.ValidateName(cfg.DefaultImageName); err != nil {
		errs = append(errs, fmt.Errorf("default_image_name: %w", err))
	}
	return errs
}

// ValidateVCPU checks a vCPU count.
func ValidateVCPU(n int) error {
	if n < 1 || n > model.MaxVCPUCount {
		return fmt.Errorf("vcpu count %d: want 1 to %d", n, model.MaxVCPUCount)
	}
	return nil
}

// ParseMemory parses a memory size: a size with a unit ("2G", "512M",
// "1536MiB", "4294967296B") or a bare number of MiB, between
// MinMemoryMiB and MaxMemoryMiB. Units are binary, as in model.ParseSize,
// but the disk ceiling does not apply: memory has its own.
func ParseMemory(raw string) (int, error) {
	const mib = 1024 * 1024
	bad := fmt.Errorf("invalid memory %q: want a size such as 2G or 512M, or a number of MiB", raw)
	s := strings.TrimSpace(raw)
	if strings.Trim(s, "0123456789KMGBkmgbIi") != "" || s == "" {
		return 0, bad
	}
	s = strings.ToUpper(s)
	unit := int64(mib)
	if t, ok := strings.CutSuffix(s, "IB"); ok {
		if !strings.HasSuffix(t, "K") && !strings.HasSuffix(t, "M") && !strings.HasSuffix(t, "G") {
			return 0, bad
		}
		s = t
	} else if t, ok := strings.CutSuffix(s, "B"); ok {
		s = t
		if !strings.HasSuffix(t, "K") && !strings.HasSuffix(t, "M") && !strings.HasSuffix(t, "G") {
			unit = 1
		}
	}
	switch {
	case strings.HasSuffix(s, "K"):
		unit, s = 1024, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		unit, s = mib, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		unit, s = 1024*mib, s[:len(s)-1]
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > int64(model.MaxMemoryMiB)*mib/unit {
		return 0, fmt.Errorf("invalid memory %q: want at most %d GiB", raw, model.MaxMemoryMiB/1024)
	}
	bytes := n * unit
	if bytes%mib != 0 {
		return 0, fmt.Errorf("invalid memory %q: must be a whole number of MiB", raw)
	}
	got := int(bytes / mib)
	if got < model.MinMemoryMiB || got > model.MaxMemoryMiB {
		return 0, fmt.Errorf("invalid memory %q: want %d MiB to %d GiB", raw, model.MinMemoryMiB, model.MaxMemoryMiB/1024)
	}
	return got, nil
}

// ValidateFileSync checks one [[file_sync]] entry.
func ValidateFileSync(e model.FileSyncEntry) error {
	switch {
	case e.Host == "":
		return errors.New("host: must not be empty")
	case strings.HasPrefix(e.Host, "~") && !strings.HasPrefix(e.Host, "~/") && e.Host != "~":
		return fmt.Errorf("host %q: ~user paths are not supported; use ~/...", e.Host)
	case e.Host != "~" && !strings.HasPrefix(e.Host, "~/") && !filepath.IsAbs(e.Host):
		return fmt.Errorf("host %q: must be ~/... or an absolute path under your home", e.Host)
	case hasDotDot(e.Host):
		return fmt.Errorf("host %q: must not contain '..'", e.Host)
	case e.Guest == "":
		return errors.New("guest: must not be empty")
	case hasDotDot(e.Guest):
		return fmt.Errorf("guest %q: must not contain '..'", e.Guest)
	case filepath.IsAbs(e.Guest) && e.Guest != "/root" && !strings.HasPrefix(e.Guest, "/root/"):
		return fmt.Errorf("guest %q: must be under /root", e.Guest)
	}
	if e.Mode != "" {
		var mode uint32
		if _, err := fmt.Sscanf(e.Mode, "%o", &mode); err != nil || strings.Trim(e.Mode, "01234567") != "" || mode > 0o7777 {
			return fmt.Errorf("mode %q: want an octal mode such as 0600", e.Mode)
		}
	}
	return nil
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// isIPv4 reports whether s is a dotted-quad IPv4 address; IPv6 forms
// such as "::ffff:1.2.3.4" are not.
func isIPv4(s string) bool {
	addr, err := netip.ParseAddr(s)
	return err == nil && addr.Is4()
}

func validIfName(name string) bool {
	if name == "" || len(name) > 15 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
