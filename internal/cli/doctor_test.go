package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banger/internal/doctor"
	"banger/internal/paths"
)

func TestPrintDoctorTable(t *testing.T) {
	checks := []doctor.Check{
		{Name: "kvm", Status: doctor.Warn, Detail: "not usable: paravirtual nesting", Fix: "use a host with vmx/svm"},
		{Name: "qemu", Status: doctor.Pass, Detail: "/usr/bin/qemu-system-x86_64 (QEMU 7.2)", Fix: "never shown"},
		{Name: "tun", Status: doctor.Fail, Detail: "no /dev/net/tun", Fix: "sudo modprobe tun"},
	}
	var buf bytes.Buffer
	if err := printDoctorTable(&buf, checks); err != nil {
		t.Fatalf("printDoctorTable: %v", err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	want := [][]string{
		{"STATUS", "CHECK", "DETAIL"},
		{"WARN", "kvm", "not", "usable:", "paravirtual", "nesting"},
		{"fix:", "use", "a", "host", "with", "vmx/svm"},
		{"PASS", "qemu", "/usr/bin/qemu-system-x86_64", "(QEMU", "7.2)"},
		{"FAIL", "tun", "no", "/dev/net/tun"},
		{"fix:", "sudo", "modprobe", "tun"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, "|") != strings.Join(w, "|") {
			t.Errorf("line %d: got %q, want %q", i, got, w)
		}
	}
	// The fix sits in the detail column.
	if got, want := strings.Index(lines[2], "fix:"), strings.Index(lines[0], "DETAIL"); got != want {
		t.Errorf("fix column: got %d, want %d (under DETAIL)", got, want)
	}
}

// TestDoctorCmdFailsOnBadConfig runs the command against a banger home
// whose config is broken: that check fails whatever the host, so the
// command must print it and exit 1, after every other check.
func TestDoctorCmdFailsOnBadConfig(t *testing.T) {
	home := t.TempDir()
	t.Setenv(paths.EnvHome, home)
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte("vmm = \"bochs\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"table", nil},
		{"json", []string{"--json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			cmd := newDoctorCmd(&globals{stdout: &stdout, stderr: &bytes.Buffer{}})
			cmd.SetArgs(tt.args)
			cmd.SetContext(t.Context())
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.Execute()
			var exit *ExitError
			if !errors.As(err, &exit) || exit.Code != 1 {
				t.Fatalf("got error %v, want exit status 1", err)
			}
			if tt.name == "table" {
				if !strings.Contains(stdout.String(), "FAIL    config") || !strings.Contains(stdout.String(), "fix: fix "+filepath.Join(home, "config.toml")) {
					t.Errorf("table lacks the failing config line and its fix:\n%s", stdout.String())
				}
				return
			}
			var checks []doctor.Check
			if err := json.Unmarshal(stdout.Bytes(), &checks); err != nil {
				t.Fatalf("decode JSON: %v\n%s", err, stdout.String())
			}
			if len(checks) != 16 || checks[0].Name != "config" || checks[0].Status != doctor.Fail {
				t.Errorf("got %d checks starting with %+v, want 16 starting with a failed config", len(checks), checks[0])
			}
		})
	}
}

func TestDoctorCmdRejectsArgs(t *testing.T) {
	cmd := newDoctorCmd(&globals{})
	if err := cmd.Args(cmd, []string{"extra"}); err == nil {
		t.Error("Args: got nil for an extra argument, want an error")
	}
	if f := cmd.Flags().Lookup("json"); f == nil || f.DefValue != "false" {
		t.Errorf("--json flag: got %v, want a bool defaulting to false", f)
	}
}
