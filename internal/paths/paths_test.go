package paths

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveBangerHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv(EnvHome, home)
	t.Setenv("XDG_CONFIG_HOME", "/xdg/config") // ignored under BANGER_HOME
	l, err := Resolve()
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	tests := []struct {
		name, got, want string
	}{
		{"ConfigDir", l.ConfigDir, home},
		{"StateDir", l.StateDir, filepath.Join(home, "state")},
		{"CacheDir", l.CacheDir, filepath.Join(home, "cache")},
		{"RuntimeDir", l.RuntimeDir, filepath.Join(home, "run")},
		{"LogDir", l.LogDir, filepath.Join(home, "logs")},
		{"ConfigFile", l.ConfigFile(), filepath.Join(home, "config.toml")},
		{"DBFile", l.DBFile(), filepath.Join(home, "state", "banger.db")},
		{"ImagesDir", l.ImagesDir(), filepath.Join(home, "state", "images")},
		{"VMsDir", l.VMsDir(), filepath.Join(home, "state", "vms")},
		{"VMDir", l.VMDir("abc"), filepath.Join(home, "state", "vms", "abc")},
		{"SSHDir", l.SSHDir(), filepath.Join(home, "state", "ssh")},
		{"DefaultSSHKey", l.DefaultSSHKey(), filepath.Join(home, "state", "ssh", "id_ed25519")},
		{"KnownHosts", l.KnownHosts(), filepath.Join(home, "state", "ssh", "known_hosts")},
		{"Socket", l.Socket(), filepath.Join(home, "run", "bangerd.sock")},
		{"PIDFile", l.PIDFile(), filepath.Join(home, "run", "bangerd.pid")},
		{"DaemonLog", l.DaemonLog(), filepath.Join(home, "logs", "bangerd.log")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
			}
		})
	}
}

func TestResolveRelativeBangerHome(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(EnvHome, "bh")
	l, err := Resolve()
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	want := filepath.Join(dir, "bh")
	if l.ConfigDir != want {
		t.Errorf("ConfigDir: got %q, want %q (made absolute)", l.ConfigDir, want)
	}
}

func TestResolveXDG(t *testing.T) {
	tests := []struct {
		name                                  string
		config, state, cache, runtime         string
		wantConfig, wantState, wantCache, run string
	}{
		{
			name:       "unset",
			wantConfig: "/home/u/.config/banger", wantState: "/home/u/.local/state/banger",
			wantCache: "/home/u/.cache/banger", run: "/home/u/.local/state/banger/run",
		},
		{
			name:   "set",
			config: "/c", state: "/s", cache: "/k", runtime: "/r",
			wantConfig: "/c/banger", wantState: "/s/banger", wantCache: "/k/banger", run: "/r/banger",
		},
		{
			name:   "relative ignored",
			config: "c", state: "s", cache: "k", runtime: "r",
			wantConfig: "/home/u/.config/banger", wantState: "/home/u/.local/state/banger",
			wantCache: "/home/u/.cache/banger", run: "/home/u/.local/state/banger/run",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvHome, "")
			t.Setenv("HOME", "/home/u")
			t.Setenv("XDG_CONFIG_HOME", tt.config)
			t.Setenv("XDG_STATE_HOME", tt.state)
			t.Setenv("XDG_CACHE_HOME", tt.cache)
			t.Setenv("XDG_RUNTIME_DIR", tt.runtime)
			l, err := Resolve()
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			for _, c := range []struct{ what, got, want string }{
				{"ConfigDir", l.ConfigDir, tt.wantConfig},
				{"StateDir", l.StateDir, tt.wantState},
				{"CacheDir", l.CacheDir, tt.wantCache},
				{"RuntimeDir", l.RuntimeDir, tt.run},
				{"LogDir", l.LogDir, filepath.Join(tt.wantState, "logs")},
			} {
				if c.got != c.want {
					t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestEnsure(t *testing.T) {
	l := FromHome(filepath.Join(t.TempDir(), "home"))
	if err := l.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if err := l.Ensure(); err != nil {
		t.Fatalf("Ensure again: got %v, want nil (idempotent)", err)
	}
	tests := []struct {
		dir     string
		private bool
	}{
		{l.ConfigDir, false},
		{l.StateDir, false},
		{l.CacheDir, false},
		{l.LogDir, false},
		{l.ImagesDir(), false},
		{l.VMsDir(), false},
		{l.RuntimeDir, true},
		{l.SSHDir(), true},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			st, err := os.Stat(tt.dir)
			if err != nil {
				t.Fatalf("stat %s: %v", tt.dir, err)
			}
			if !st.IsDir() {
				t.Fatalf("%s: got mode %v, want a directory", tt.dir, st.Mode())
			}
			if tt.private && st.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: got mode %v, want no group or other access", tt.dir, st.Mode().Perm())
			}
		})
	}
}

func TestEnsureReportsBlockedPath(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "state"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := FromHome(root).Ensure()
	if err == nil {
		t.Fatal("Ensure with a file where state/ belongs: got nil, want error")
	}
}

func TestCheckSocketPath(t *testing.T) {
	tests := []struct {
		name    string
		length  int
		wantErr bool
	}{
		{"short", 20, false},
		{"longest that fits", MaxSocketPath, false},
		{"one byte too long", MaxSocketPath + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/" + strings.Repeat("s", tt.length-1)
			err := CheckSocketPath("daemon socket", path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckSocketPath(%d bytes) = %v, want error %v", tt.length, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "shorter state directory (BANGER_HOME)") {
				t.Errorf("error %q does not say what to do", err)
			}
		})
	}
}
