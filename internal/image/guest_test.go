package image

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// parseUnit reads a systemd unit file into section -> key -> values.
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
		default:
			key, val, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: %q is not key=value inside a section", i+1, raw)
			}
			out[section][key] = append(out[section][key], strings.Fields(val)...)
		}
	}
	return out
}

func guestText(t *testing.T, src string) string {
	t.Helper()
	b, err := guestFS.ReadFile("guest/" + src)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGuestManifestMatchesEmbeddedFiles(t *testing.T) {
	embedded := map[string]bool{}
	err := fs.WalkDir(guestFS, "guest", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded[strings.TrimPrefix(p, "guest/")] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{customizeScript: true}
	dsts := map[string]bool{}
	for _, f := range guestFiles {
		if !embedded[f.Src] {
			t.Errorf("manifest lists %s, which is not embedded", f.Src)
		}
		if !strings.HasPrefix(f.Dst, "/") || dsts[f.Dst] {
			t.Errorf("destination %q is not absolute or is used twice", f.Dst)
		}
		dsts[f.Dst] = true
		listed[f.Src] = true
	}
	for src := range embedded {
		if !listed[src] {
			t.Errorf("embedded %s is not in the manifest", src)
		}
	}
}

func TestGuestUnits(t *testing.T) {
	dstOf := map[string]string{}
	for _, f := range guestFiles {
		dstOf[f.Src] = f.Dst
	}
	tests := []struct {
		unit       string
		exec       string   // first word of ExecStart
		before     []string // must be in Before=
		wantedBy   []string
		conditions []string // ConditionPathExists= values
	}{
		{"banger-net.service", AgentImagePath, []string{"network.target", "ssh.service"}, []string{"multi-user.target"}, nil},
		{"banger-hostkeys.service", "/usr/bin/ssh-keygen", []string{"ssh.service"}, []string{"multi-user.target", "ssh.service"}, []string{"!/etc/ssh/ssh_host_ed25519_key"}},
		{"banger-growroot.service", dstOf["banger-growroot"], nil, []string{"multi-user.target"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			if got := dstOf[tt.unit]; got != "/etc/systemd/system/"+tt.unit {
				t.Errorf("got destination %q, want /etc/systemd/system/%s", got, tt.unit)
			}
			u := parseUnit(t, guestText(t, tt.unit))
			exec := u["Service"]["ExecStart"]
			if len(exec) == 0 || exec[0] != tt.exec {
				t.Errorf("got ExecStart %q, want it to run %s", exec, tt.exec)
			}
			if got := u["Service"]["Type"]; !slices.Equal(got, []string{"oneshot"}) {
				t.Errorf("got Type %q, want oneshot", got)
			}
			for _, b := range tt.before {
				if !slices.Contains(u["Unit"]["Before"], b) {
					t.Errorf("got Before %q, want it to contain %s", u["Unit"]["Before"], b)
				}
			}
			for _, w := range tt.wantedBy {
				if !slices.Contains(u["Install"]["WantedBy"], w) {
					t.Errorf("got WantedBy %q, want it to contain %s", u["Install"]["WantedBy"], w)
				}
			}
			if !slices.Equal(u["Unit"]["ConditionPathExists"], tt.conditions) {
				t.Errorf("got ConditionPathExists %q, want %q", u["Unit"]["ConditionPathExists"], tt.conditions)
			}
			if !slices.Contains(enabledUnits, tt.unit) {
				t.Errorf("%s is not in enabledUnits", tt.unit)
			}
			if !strings.Contains(guestText(t, customizeScript), "systemctl enable "+strings.Join(enabledUnits, " ")) {
				t.Errorf("customize.sh does not enable %q", enabledUnits)
			}
		})
	}
	t.Run("ssh.service drop-in", func(t *testing.T) {
		u := parseUnit(t, guestText(t, "ssh-service-banger.conf"))
		for _, dep := range []string{"banger-hostkeys.service", "banger-net.service"} {
			if !slices.Contains(u["Unit"]["After"], dep) {
				t.Errorf("got After %q, want %s", u["Unit"]["After"], dep)
			}
		}
	})
	t.Run("logind powers off on the power key", func(t *testing.T) {
		u := parseUnit(t, guestText(t, "logind-banger.conf"))
		if got := u["Login"]["HandlePowerKey"]; !slices.Equal(got, []string{"poweroff"}) {
			t.Errorf("got HandlePowerKey %q, want poweroff", got)
		}
	})
}

func TestGuestConfigFiles(t *testing.T) {
	fstab := guestText(t, "fstab")
	for _, line := range []string{
		"LABEL=banger-work /root ext4 defaults,nofail,x-systemd.device-timeout=30s 0 2",
		"LABEL=banger-root / ext4 defaults 0 1",
	} {
		if !strings.Contains(fstab, line+"\n") {
			t.Errorf("fstab lacks %q", line)
		}
	}
	sshd := guestText(t, "sshd-banger.conf")
	for _, line := range []string{"PermitRootLogin prohibit-password", "PasswordAuthentication no", "HostKey /etc/ssh/ssh_host_ed25519_key"} {
		if !strings.Contains(sshd, line+"\n") {
			t.Errorf("sshd drop-in lacks %q", line)
		}
	}
	hook := guestText(t, "initramfs-hook")
	r, err := lookupRecipe("debian-bookworm")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.InitrdModules {
		if !strings.Contains(hook, " "+m+" ") && !strings.Contains(hook, " "+m+";") {
			t.Errorf("initramfs hook does not force-load %s", m)
		}
	}
	if unit := guestText(t, "banger-net.service"); !strings.Contains(unit, "\nExecStart="+AgentImagePath+" net\n") {
		t.Errorf("banger-net.service does not run %s net", AgentImagePath)
	}
	custom := guestText(t, customizeScript)
	for _, want := range []string{`rm -f "$root"/etc/ssh/ssh_host_*`, `: >"$root/etc/machine-id"`, "systemd-networkd.service", "var/lib/apt/lists"} {
		if !strings.Contains(custom, want) {
			t.Errorf("customize.sh lacks %q", want)
		}
	}
}

func TestGuestScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh in PATH to syntax-check the guest scripts")
	}
	for _, src := range []string{"banger-firstboot", "banger-growroot", "initramfs-hook", customizeScript} {
		t.Run(src, func(t *testing.T) {
			text := guestText(t, src)
			if !strings.HasPrefix(text, "#!/bin/sh\n") {
				t.Errorf("got first line %q, want #!/bin/sh", strings.SplitN(text, "\n", 2)[0])
			}
			p := filepath.Join(t.TempDir(), src)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v\n%s", src, err, out)
			}
		})
	}
}

func TestWriteOverlay(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	early, late := filepath.Join(dir, "early"), filepath.Join(dir, "late")
	if err := writeOverlay(early, true); err != nil {
		t.Fatal(err)
	}
	if err := writeOverlay(late, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range guestFiles {
		root, other := late, early
		if f.Early {
			root, other = early, late
		}
		p := filepath.Join(root, f.Dst)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", f.Dst, err)
			continue
		}
		if st.Mode().Perm() != f.Mode {
			t.Errorf("%s: got mode %v, want %v", f.Dst, st.Mode().Perm(), f.Mode)
		}
		if _, err := os.Stat(filepath.Join(other, f.Dst)); err == nil {
			t.Errorf("%s is in both overlays", f.Dst)
		}
	}
	for _, root := range []string{early, late} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			st, err := os.Stat(p)
			if err == nil && st.Mode().Perm() != 0o755 {
				t.Errorf("%s: got directory mode %v, want 0755 (sync-in applies it to the image)", p, st.Mode().Perm())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	custom := filepath.Join(dir, customizeScript)
	if err := writeCustomizeScript(custom); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(custom); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("got customize.sh %v, %v, want mode 0755", st.Mode(), err)
	}
}
