// Package paths resolves where banger keeps its files. With BANGER_HOME
// set, everything (config, database, images, VMs, logs, sockets) lives
// under that directory; otherwise the XDG base directories are used.
// Any package may import it.
package paths

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvHome is the environment variable that roots every banger path.
const EnvHome = "BANGER_HOME"

// Layout is the set of directories and files banger uses.
type Layout struct {
	ConfigDir  string // config.toml
	StateDir   string // database, images, VMs, keys
	CacheDir   string // build caches, downloaded layers
	RuntimeDir string // sockets, pid file
	LogDir     string // daemon log
}

// Resolve returns the layout for the current environment.
func Resolve() (Layout, error) {
	if home := os.Getenv(EnvHome); home != "" {
		abs, err := filepath.Abs(home)
		if err != nil {
			return Layout{}, fmt.Errorf("resolve %s: %w", EnvHome, err)
		}
		return FromHome(abs), nil
	}
	userHome, err := os.UserHomeDir()
	if err != nil {
		return Layout{}, fmt.Errorf("resolve home directory: %w", err)
	}
	xdg := func(env, fallback string) string {
		if v := os.Getenv(env); v != "" && filepath.IsAbs(v) {
			return filepath.Join(v, "banger")
		}
		return filepath.Join(userHome, fallback, "banger")
	}
	l := Layout{
		ConfigDir: xdg("XDG_CONFIG_HOME", ".config"),
		StateDir:  xdg("XDG_STATE_HOME", ".local/state"),
		CacheDir:  xdg("XDG_CACHE_HOME", ".cache"),
	}
	if v := os.Getenv("XDG_RUNTIME_DIR"); v != "" && filepath.IsAbs(v) {
		l.RuntimeDir = filepath.Join(v, "banger")
	} else {
		l.RuntimeDir = filepath.Join(l.StateDir, "run")
	}
	l.LogDir = filepath.Join(l.StateDir, "logs")
	return l, nil
}

// FromHome returns the layout rooted at one directory.
func FromHome(home string) Layout {
	return Layout{
		ConfigDir:  home,
		StateDir:   filepath.Join(home, "state"),
		CacheDir:   filepath.Join(home, "cache"),
		RuntimeDir: filepath.Join(home, "run"),
		LogDir:     filepath.Join(home, "logs"),
	}
}

// ConfigFile is the daemon's TOML configuration.
func (l Layout) ConfigFile() string { return filepath.Join(l.ConfigDir, "config.toml") }

// DBFile is the SQLite database.
func (l Layout) DBFile() string { return filepath.Join(l.StateDir, "banger.db") }

// ImagesDir holds one directory per managed image.
func (l Layout) ImagesDir() string { return filepath.Join(l.StateDir, "images") }

// VMsDir holds one directory per VM.
func (l Layout) VMsDir() string { return filepath.Join(l.StateDir, "vms") }

// VMDir is the directory of one VM, named by the first 16 characters
// of its id: the VMM's unix sockets live there, and a socket path holds
// at most 107 bytes.
func (l Layout) VMDir(id string) string {
	if len(id) > vmDirIDLen {
		id = id[:vmDirIDLen]
	}
	return filepath.Join(l.VMsDir(), id)
}

const vmDirIDLen = 16

// SSHDir holds banger's SSH key and known_hosts.
func (l Layout) SSHDir() string { return filepath.Join(l.StateDir, "ssh") }

// DefaultSSHKey is the private key used when the config names none.
func (l Layout) DefaultSSHKey() string { return filepath.Join(l.SSHDir(), "id_ed25519") }

// KnownHosts is banger's own known_hosts file.
func (l Layout) KnownHosts() string { return filepath.Join(l.SSHDir(), "known_hosts") }

// Socket is the daemon's JSON-RPC socket.
func (l Layout) Socket() string { return filepath.Join(l.RuntimeDir, "bangerd.sock") }

// LockFile is the lock that keeps bangerd one per state directory.
func (l Layout) LockFile() string { return filepath.Join(l.StateDir, "bangerd.lock") }

// PIDFile records the running daemon's pid.
func (l Layout) PIDFile() string { return filepath.Join(l.RuntimeDir, "bangerd.pid") }

// DaemonLog is the daemon's structured log when it was started on demand.
func (l Layout) DaemonLog() string { return filepath.Join(l.LogDir, "bangerd.log") }

// Ensure creates every directory of the layout.
func (l Layout) Ensure() error {
	for _, dir := range []string{l.ConfigDir, l.StateDir, l.CacheDir, l.LogDir, l.ImagesDir(), l.VMsDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	for _, dir := range []string{l.RuntimeDir, l.SSHDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// MaxSocketPath is the longest path a unix socket address holds
// (sun_path is 108 bytes with the terminating NUL).
const MaxSocketPath = 107

// CheckSocketPath fails when path is too long for a unix socket address;
// what names the socket in the message.
func CheckSocketPath(what, path string) error {
	if len(path) > MaxSocketPath {
		return fmt.Errorf("%s %q: path is %d bytes, a unix socket path holds at most %d: use a shorter state directory (BANGER_HOME)",
			what, path, len(path), MaxSocketPath)
	}
	return nil
}
