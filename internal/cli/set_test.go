package cli

import (
	"strings"
	"testing"
)

func TestSetRequest(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, vcpu *int, mem *int, disk *int64, nat *bool)
	}{
		{"nothing", nil, "", func(t *testing.T, vcpu *int, mem *int, disk *int64, nat *bool) {
			if vcpu != nil || mem != nil || disk != nil || nat != nil {
				t.Errorf("got changes %v %v %v %v, want none", vcpu, mem, disk, nat)
			}
		}},
		{"all", []string{"--vcpu", "4", "--memory", "4G", "--disk-size", "20G", "--no-nat"}, "", func(t *testing.T, vcpu *int, mem *int, disk *int64, nat *bool) {
			if vcpu == nil || *vcpu != 4 || mem == nil || *mem != 4096 || disk == nil || *disk != 20<<30 || nat == nil || *nat {
				t.Errorf("got %v %v %v %v, want 4, 4096, 20G, false", vcpu, mem, disk, nat)
			}
		}},
		{"nat", []string{"--nat"}, "", func(t *testing.T, _ *int, _ *int, _ *int64, nat *bool) {
			if nat == nil || !*nat {
				t.Errorf("got nat %v, want true", nat)
			}
		}},
		{"both nat flags", []string{"--nat", "--no-nat"}, "cannot be used together", nil},
		{"bad vcpu", []string{"--vcpu", "0"}, "--vcpu", nil},
		{"bad memory", []string{"--memory", "1K"}, "--memory", nil},
		{"bad disk", []string{"--disk-size", "0"}, "--disk-size", nil},
		{"disk over ceiling", []string{"--disk-size", "200G"}, "--disk-size", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newVMSetCmd(&globals{})
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			fl := cmd.Flags()
			vcpu, _ := fl.GetInt("vcpu")
			mem, _ := fl.GetString("memory")
			disk, _ := fl.GetString("disk-size")
			nat, _ := fl.GetBool("nat")
			noNAT, _ := fl.GetBool("no-nat")
			req, err := setRequest(cmd, "demo", vcpu, mem, disk, nat, noNAT)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.IDOrName != "demo" {
				t.Errorf("got ref %q, want demo", req.IDOrName)
			}
			tt.check(t, req.VCPUCount, req.MemoryMiB, req.WorkDiskSizeBytes, req.NATEnabled)
		})
	}
}
