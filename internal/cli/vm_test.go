package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// parseCreateFlags registers the create flags on a fresh command, parses
// args and returns the resulting request.
func parseCreateFlags(t *testing.T, args ...string) (model.VMCreateRequest, error) {
	t.Helper()
	var f createFlags
	cmd := &cobra.Command{Use: "create"}
	f.register(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return f.request(cmd)
}

func TestCreateFlagsRequest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want model.VMCreateRequest
	}{
		{"no flags keeps defaults", nil, model.VMCreateRequest{}},
		{"name", []string{"--name", "dev-1"}, model.VMCreateRequest{Name: "dev-1"}},
		{"empty name means random", []string{"--name", ""}, model.VMCreateRequest{}},
		{"image", []string{"--image", "debian-bookworm"}, model.VMCreateRequest{ImageName: "debian-bookworm"}},
		{"vcpu", []string{"--vcpu", "4"}, model.VMCreateRequest{VCPUCount: 4}},
		{"memory with unit", []string{"--memory", "4G"}, model.VMCreateRequest{MemoryMiB: 4096}},
		{"memory in MiB", []string{"--memory", "1024"}, model.VMCreateRequest{MemoryMiB: 1024}},
		{"disk size", []string{"--disk-size", "16G"}, model.VMCreateRequest{WorkDiskSizeBytes: 16 << 30}},
		{"overlay size", []string{"--system-overlay-size", "512M"}, model.VMCreateRequest{SystemOverlaySizeByte: 512 << 20}},
		{"nat", []string{"--nat"}, model.VMCreateRequest{NATEnabled: true}},
		{"everything", []string{"--name", "x", "--image", "img", "--vcpu", "2", "--memory", "2G", "--disk-size", "8G",
			"--system-overlay-size", "8G", "--nat"}, model.VMCreateRequest{
			Name: "x", ImageName: "img", VCPUCount: 2, MemoryMiB: 2048, WorkDiskSizeBytes: 8 << 30,
			SystemOverlaySizeByte: 8 << 30, NATEnabled: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCreateFlags(t, tt.args...)
			if err != nil {
				t.Fatalf("request(%q): got error %v, want nil", tt.args, err)
			}
			if got != tt.want {
				t.Errorf("request(%q):\n got %+v\nwant %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestCreateFlagsRequestRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // what the message must name
	}{
		// The name error reads "invalid name ...": it names the value
		// but not the flag spelling --name.
		{"uppercase name", []string{"--name", "Dev"}, "name"},
		{"underscore name", []string{"--name", "my_vm"}, "name"},
		{"long name", []string{"--name", strings.Repeat("a", 64)}, "name"},
		{"zero vcpu", []string{"--vcpu", "0"}, "--vcpu"},
		{"negative vcpu", []string{"--vcpu", "-1"}, "--vcpu"},
		{"too many vcpus", []string{"--vcpu", "65"}, "--vcpu"},
		{"memory too small", []string{"--memory", "64M"}, "--memory"},
		{"memory too large", []string{"--memory", "300G"}, "--memory"},
		{"memory garbage", []string{"--memory", "lots"}, "--memory"},
		{"memory empty", []string{"--memory", ""}, "--memory"},
		{"disk fraction", []string{"--disk-size", "1.5G"}, "--disk-size"},
		{"disk over ceiling", []string{"--disk-size", "129G"}, "--disk-size"},
		{"disk zero", []string{"--disk-size", "0"}, "--disk-size"},
		{"disk empty", []string{"--disk-size", ""}, "--disk-size"},
		{"overlay negative", []string{"--system-overlay-size", "-1G"}, "--system-overlay-size"},
		{"overlay unit only", []string{"--system-overlay-size", "G"}, "--system-overlay-size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCreateFlags(t, tt.args...)
			if err == nil {
				t.Fatalf("request(%q): got %+v, want error naming %s", tt.args, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("request(%q): got %q, want it to name %s", tt.args, err, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("request(%q): got %v, want errors.Is ErrInvalid", tt.args, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("request(%q): got multi-line error %q", tt.args, err)
			}
		})
	}
}
