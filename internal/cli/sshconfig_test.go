package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestIncludeLine(t *testing.T) {
	include := `Include "/h/.config/banger/ssh_config" ` + includeMarker
	user := "Host work\n    User me\n\nHost *\n    ServerAliveInterval 30\n"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", include + "\n"},
		{"prepended", user, include + "\n" + user},
		{"idempotent", include + "\n" + user, include + "\n" + user},
		{"moved to the top", user + include + "\n", include + "\n" + user},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addInclude(tt.in, include); got != tt.want {
				t.Errorf("addInclude: got %q, want %q", got, tt.want)
			}
			if got := removeInclude(addInclude(tt.in, include)); got != strings.Replace(tt.in, include+"\n", "", 1) {
				t.Errorf("removeInclude: got %q, want the user's config back", got)
			}
		})
	}
}

func TestRewriteFileKeepsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".ssh", "config")
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, []byte("Host x\n"), 0o640)
	if err := rewriteFile(path, func(s string) string { return "# a\n" + s }); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	data, _ := os.ReadFile(path)
	if st.Mode().Perm() != 0o640 || string(data) != "# a\nHost x\n" {
		t.Errorf("got mode %v content %q, want 0640 and the edit", st.Mode().Perm(), data)
	}
}

// TestSSHSnippetParses checks the snippet with the real ssh client.
func TestSSHSnippetParses(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("ssh not in PATH; install openssh-client to run this test")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "my keys", "id_ed25519")
	kh := filepath.Join(dir, "known_hosts")
	file := filepath.Join(dir, "ssh_config")
	os.WriteFile(file, []byte(sshSnippet(key, kh)), 0o644)
	// Read through the Include line that --install adds.
	user := filepath.Join(dir, "user_config")
	os.WriteFile(user, []byte(addInclude("Host other\n    Port 2222\n", fmt.Sprintf("Include %q %s", file, includeMarker))), 0o600)
	out, err := exec.Command(sshBin, "-G", "-F", user, "demo.vm").Output()
	if err != nil {
		t.Fatalf("ssh -G: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	for _, want := range []string{"user root", "identityfile " + key, "userknownhostsfile " + kh, "stricthostkeychecking true", "identitiesonly yes"} {
		if !slices.Contains(lines, want) {
			t.Errorf("ssh -G demo.vm lacks %q", want)
		}
	}
	out, _ = exec.Command(sshBin, "-G", "-F", file, "example.com").Output()
	if slices.Contains(strings.Split(string(out), "\n"), "userknownhostsfile "+kh) {
		t.Error("the snippet applies to hosts outside .vm")
	}
}
