package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func TestKernelImportRequest(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, want string
	}{
		{"absolute", "/srv/kernels/6.1", "/srv/kernels/6.1"},
		{"relative", "kernel", filepath.Join(wd, "kernel")},
		{"cleaned", "/srv//k/../k2/", "/srv/k2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kernelImportRequest("deb", tt.from)
			if err != nil {
				t.Fatalf("kernelImportRequest: %v", err)
			}
			if want := (api.KernelImportRequest{Name: "deb", From: tt.want}); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// TestKernelCmdArgs checks the argument and flag rules, which cobra
// enforces before any call to the daemon.
func TestKernelCmdArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"import without from", []string{"import", "deb"}, `required flag(s) "from" not set`},
		{"import without name", []string{"import", "--from", "/k"}, "accepts 1 arg(s), received 0"},
		{"show without kernel", []string{"show"}, "accepts 1 arg(s), received 0"},
		{"rm two kernels", []string{"rm", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"list takes no args", []string{"list", "x"}, `unknown command "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &globals{stdout: io.Discard, stderr: io.Discard}
			cmd := newKernelCmd(g)
			cmd.SetArgs(tt.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestKernelSubcommands(t *testing.T) {
	cmd := newKernelCmd(&globals{})
	var got []string
	for _, c := range cmd.Commands() {
		got = append(got, c.Name())
	}
	if want := "import,list,rm,show"; strings.Join(got, ",") != want {
		t.Errorf("got subcommands %v, want %s", got, want)
	}
	for _, sub := range []string{"import", "list", "show"} {
		c, _, err := cmd.Find([]string{sub})
		if err != nil {
			t.Fatalf("find %s: %v", sub, err)
		}
		if c.Flags().Lookup("json") == nil {
			t.Errorf("kernel %s has no --json", sub)
		}
	}
}

func TestPrintKernels(t *testing.T) {
	k := model.Kernel{
		ID: "0123456789abcdef0123", Name: "deb", KernelPath: "/s/kernels/x/vmlinuz", InitrdPath: "/s/kernels/x/initrd.img",
		Version: "6.1.0-28-amd64", Managed: true, CreatedAt: time.Now().Add(-3 * time.Minute),
	}
	bare := model.Kernel{ID: "ffff", Name: "bare", KernelPath: "/k/vmlinux", CreatedAt: time.Now()}
	var buf bytes.Buffer
	if err := printKernelTable(&buf, []model.Kernel{k, bare}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := [][]string{
		{"NAME", "ID", "VERSION", "INITRD", "MODULES", "CREATED"},
		{"deb", "0123456789ab", "6.1.0-28-amd64", "yes", "no", "3m", "ago"},
		{"bare", "ffff", "-", "no", "no", "0s", "ago"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d: got %q, want %q", i, got, w)
		}
	}

	buf.Reset()
	if err := printKernel(&buf, bare); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"Name:", "bare", "Kernel:", "/k/vmlinux", "Managed:", "false"} {
		if !strings.Contains(out, s) {
			t.Errorf("show output lacks %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"Initrd:", "Modules:", "Version:"} {
		if strings.Contains(out, s) {
			t.Errorf("show output has empty field %q:\n%s", s, out)
		}
	}
}

func TestPullKernelRef(t *testing.T) {
	var o pullOptions
	cmd := &cobra.Command{Use: "pull"}
	o.register(cmd)
	if err := cmd.Flags().Parse([]string{"--kernel-ref", "deb", "--kernel-from", "img"}); err != nil {
		t.Fatal(err)
	}
	want := api.ImagePullRequest{Ref: "debian:trixie", Name: "debian-trixie", KernelRef: "deb", KernelFrom: "img"}
	if got := o.request("debian:trixie"); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestImageRegisterKernelFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"neither", []string{"--name", "x", "--rootfs", "/r"}, "at least one of the flags in the group [kernel kernel-ref] is required"},
		{"both", []string{"--name", "x", "--rootfs", "/r", "--kernel", "/k", "--kernel-ref", "deb"}, "none of the others can be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newImageRegisterCmd(&globals{stdout: io.Discard, stderr: io.Discard})
			cmd.SetArgs(tt.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
