package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/spf13/cobra"

	"banger/internal/api"
	"banger/internal/model"
)

func TestDefaultPullName(t *testing.T) {
	tests := []struct {
		ref, want string
	}{
		{"debian", "debian"},
		{"debian:bookworm", "debian-bookworm"},
		{"127.0.0.1:5000/debian:test", "debian-test"},
		{"registry.example:5000/team/App:1.2", "app-1-2"},
		{"ghcr.io/org/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "tool-0123456789ab"},
		{"ghcr.io/org/tool:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "tool-0123456789ab"},
		{"quay.io/x/__odd__name__:--", "odd-name"},
		{"registry/" + string(bytes.Repeat([]byte("a"), 70)) + ":1", string(bytes.Repeat([]byte("a"), 63))},
		{"registry/" + string(bytes.Repeat([]byte("a"), 62)) + ":1", string(bytes.Repeat([]byte("a"), 62))},
		{"___", "pulled"},
		{"", "pulled"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got := defaultPullName(tt.ref)
			if got != tt.want {
				t.Errorf("defaultPullName(%q) = %q, want %q", tt.ref, got, tt.want)
			}
			if err := model.ValidateName(got); err != nil {
				t.Errorf("defaultPullName(%q) = %q, not a valid name: %v", tt.ref, got, err)
			}
		})
	}
}

func TestPullFlagsRequest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		ref  string
		want api.ImagePullRequest
	}{
		{"defaults", nil, "debian:bookworm", api.ImagePullRequest{Ref: "debian:bookworm", Name: "debian-bookworm"}},
		{"everything", []string{"--name", "dev", "--size", "4G", "--kernel-from", "k", "--insecure"}, "127.0.0.1:5000/x:1",
			api.ImagePullRequest{Ref: "127.0.0.1:5000/x:1", Name: "dev", Size: "4G", KernelFrom: "k", Insecure: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o pullOptions
			cmd := &cobra.Command{Use: "pull"}
			o.register(cmd)
			if err := cmd.Flags().Parse(tt.args); err != nil {
				t.Fatalf("parse %q: %v", tt.args, err)
			}
			if got := o.request(tt.ref); got != tt.want {
				t.Errorf("request:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPullPrinter(t *testing.T) {
	events := []api.Progress{
		{Step: "resolve", Message: "resolve r/x:1"},
		{Step: api.PullStepDownload, Message: "download layer 1/1 abc: 8.0 MiB of 16.0 MiB (50%)"},
		{Step: api.PullStepLayer, Message: "layer 1/1 abc downloaded (16.0 MiB)"},
		{Step: "warning", Message: "the image lacks ip"},
		{Step: "rootfs", Message: "make the root filesystem"},
	}
	tests := []struct {
		name  string
		tty   bool
		quiet bool
		want  string
	}{
		{"log", false, false, "==> resolve r/x:1\n==> layer 1/1 abc downloaded (16.0 MiB)\nwarning: the image lacks ip\n==> make the root filesystem\n"},
		{"terminal", true, false, "==> resolve r/x:1\n\r\x1b[K==> download layer 1/1 abc: 8.0 MiB of 16.0 MiB (50%)\r\x1b[K==> layer 1/1 abc downloaded (16.0 MiB)\nwarning: the image lacks ip\n==> make the root filesystem\n"},
		{"quiet", true, true, "warning: the image lacks ip\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			g := &globals{stderr: &out}
			p := &pullPrinter{g: g, w: &out, tty: tt.tty, quiet: tt.quiet}
			for _, e := range events {
				raw, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				p.notify(api.NotifyProgress, raw)
			}
			p.finish()
			if got := out.String(); got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}
