package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"banger/internal/api"
)

var testSSHInfo = api.SSHInfo{
	Name:       "web",
	GuestIP:    "172.16.0.2",
	User:       "root",
	KeyPath:    "/state/ssh/id_ed25519",
	KnownHosts: "/state/ssh/known_hosts",
}

// optionValue returns the value of "-o Name=value" in args.
func optionValue(args []string, name string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-o" {
			if v, ok := strings.CutPrefix(args[i+1], name+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func TestSSHArgs(t *testing.T) {
	tests := []struct {
		name      string
		tty       bool
		batch     bool
		remote    string
		wantFlag  string // -t, -T or ""
		wantBatch bool
	}{
		{"interactive shell", true, false, "", "-t", false},
		{"shell without a terminal", false, false, "", "", false},
		{"batch command", false, true, "'make' 'test'", "-T", true},
		{"command with tty", true, true, "top", "-t", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := sshArgs(testSSHInfo, tt.tty, tt.batch, tt.remote)
			if i := slices.Index(args, "-i"); i < 0 || i+1 >= len(args) || args[i+1] != testSSHInfo.KeyPath {
				t.Errorf("got %q, want -i %s", args, testSSHInfo.KeyPath)
			}
			wantOpts := map[string]string{
				"UserKnownHostsFile":    `"` + testSSHInfo.KnownHosts + `"`,
				"StrictHostKeyChecking": "yes",
				"IdentitiesOnly":        "yes",
				"GlobalKnownHostsFile":  "/dev/null",
			}
			for name, want := range wantOpts {
				if got, ok := optionValue(args, name); !ok || got != want {
					t.Errorf("-o %s: got %q (present %v), want %q", name, got, ok, want)
				}
			}
			if got, ok := optionValue(args, "BatchMode"); ok != tt.wantBatch || (ok && got != "yes") {
				t.Errorf("BatchMode: got %q (present %v), want present=%v", got, ok, tt.wantBatch)
			}
			for _, flag := range []string{"-t", "-T"} {
				if got, want := slices.Contains(args, flag), flag == tt.wantFlag; got != want {
					t.Errorf("%s in %q: got %v, want %v", flag, args, got, want)
				}
			}
			dest := slices.Index(args, "root@172.16.0.2")
			if dest < 0 {
				t.Fatalf("got %q, want root@172.16.0.2", args)
			}
			if tt.remote == "" {
				if dest != len(args)-1 {
					t.Errorf("got %q, want root@172.16.0.2 last", args)
				}
				return
			}
			if want := []string{"root@172.16.0.2", "--", tt.remote}; !slices.Equal(args[dest:], want) {
				t.Errorf("tail: got %q, want %q", args[dest:], want)
			}
		})
	}
}

// TestSSHArgsParsedBySSH has the system ssh parse the arguments (ssh -G
// prints the resulting configuration without connecting).
func TestSSHArgsParsedBySSH(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("ssh not in PATH; install openssh-client to run this test")
	}
	tests := []struct {
		name  string
		batch bool
		want  []string
	}{
		{"batch", true, []string{"user root", "hostname 172.16.0.2", "stricthostkeychecking true", "batchmode yes",
			"userknownhostsfile /state/ssh/known_hosts", "globalknownhostsfile /dev/null", "identitiesonly yes"}},
		{"interactive", false, []string{"user root", "hostname 172.16.0.2", "stricthostkeychecking true", "batchmode no"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-G", "-F", "/dev/null"}, sshArgs(testSSHInfo, false, tt.batch, "'true'")...)
			cmd := exec.Command(sshBin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("ssh %q: %v: %s", args, err, stderr.String())
			}
			lines := strings.Split(string(out), "\n")
			for _, want := range tt.want {
				if !slices.Contains(lines, want) {
					t.Errorf("ssh -G: want line %q in\n%s", want, out)
				}
			}
		})
	}
}

// TestSSHArgsPathsWithSpaces: ssh splits "-o" values at whitespace, so a
// known_hosts path with a space becomes two files unless it is quoted.
func TestSSHArgsPathsWithSpaces(t *testing.T) {
	info := testSSHInfo
	info.KnownHosts = "/home/me/My Files/banger/state/ssh/known_hosts"
	args := sshArgs(info, false, true, "true")
	got, _ := optionValue(args, "UserKnownHostsFile")
	if got != `"`+info.KnownHosts+`"` {
		t.Errorf("UserKnownHostsFile: got %q, want %q", got, `"`+info.KnownHosts+`"`)
	}
}

// runArgs runs remoteCommand(printer+args, dir) through shell -c and
// returns the arguments the remote program saw.
func runArgs(t *testing.T, shell string, args []string, dir string) []string {
	t.Helper()
	printer := []string{"/bin/sh", "-c", `for a; do printf '%s\0' "$a"; done`, "sh"}
	line := remoteCommand(append(printer, args...), dir)
	cmd := exec.Command(shell, "-c", line)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "HOME=/nonexistent-home", "BANGER_TEST_VAR=expanded")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -c %q: %v: %s", shell, line, err, stderr.String())
	}
	if len(out) == 0 {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

func TestRemoteCommandRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"plain", []string{"make", "test"}},
		{"empty string", []string{""}},
		{"empty among others", []string{"a", "", "b"}},
		{"spaces", []string{"two words", "  leading and trailing  "}},
		{"single quotes", []string{"it's", "'", "''", "'quoted'"}},
		{"double quotes", []string{`say "hi"`, `"`}},
		{"dollar", []string{"$HOME", "$BANGER_TEST_VAR", "${BANGER_TEST_VAR}", "$(echo pwned)", "$1", "$$"}},
		{"backticks", []string{"`echo pwned`"}},
		{"newlines and tabs", []string{"a\nb", "\n", "tab\there", "cr\r"}},
		{"backslashes", []string{`\`, `a\nb`, `\\`, `\'`}},
		{"globs", []string{"*", "?", "[abc]", "*.go"}},
		{"tilde", []string{"~", "~/x", "~root"}},
		{"operators", []string{";", "&&", "||", "|", "&", ">out", "<in", "2>&1", "(", ")"}},
		{"shell words", []string{"!", "#comment", "{a,b}", "if", "done", "a=b", "-n", "--", "-e"}},
		{"percent and at", []string{"%s", "@", "user@host", "a:b", "a,b", "+x"}},
		{"unicode", []string{"héllo", "日本語", "emoji 🚀"}},
	}
	shells := []string{"/bin/sh"}
	if bash, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, bash)
	}
	for _, shell := range shells {
		for _, tt := range tests {
			t.Run(filepath.Base(shell)+"/"+tt.name, func(t *testing.T) {
				got := runArgs(t, shell, tt.args, "")
				if !slices.Equal(got, tt.args) {
					t.Errorf("args after %s -c: got %q, want %q", shell, got, tt.args)
				}
			})
		}
	}
}

func TestRemoteCommandDir(t *testing.T) {
	tests := []struct {
		name string
		dir  string
	}{
		{"plain", "work"},
		{"space", "my repo"},
		{"quote", "it's"},
		{"dollar", "$HOME"},
		{"newline", "a\nb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, tt.dir)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			line := remoteCommand([]string{"pwd"}, dir)
			out, err := exec.Command("/bin/sh", "-c", line).Output()
			if err != nil {
				t.Fatalf("sh -c %q: %v", line, err)
			}
			if got := strings.TrimSuffix(string(out), "\n"); got != dir {
				t.Errorf("pwd after cd: got %q, want %q", got, dir)
			}
		})
	}
	t.Run("missing dir stops the command", func(t *testing.T) {
		line := remoteCommand([]string{"echo", "ran"}, filepath.Join(t.TempDir(), "missing"))
		out, err := exec.Command("/bin/sh", "-c", line).Output()
		if err == nil || strings.Contains(string(out), "ran") {
			t.Errorf("sh -c %q: got %q, %v, want a failure without running the command", line, out, err)
		}
	})
}

func TestShellQuote(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"make", "make"},
		{"/usr/bin/env", "/usr/bin/env"},
		{"a-b_c.d=e:f,g+h@i%j", "a-b_c.d=e:f,g+h@i%j"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"~", "'~'"},
		{"$x", "'$x'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := shellQuote(tt.in); got != tt.want {
				t.Errorf("shellQuote(%q): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
