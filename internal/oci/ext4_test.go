package oci

import (
	"slices"
	"testing"

	"banger/internal/image"
)

func TestDefaultSize(t *testing.T) {
	tests := []struct {
		name    string
		content int64
		want    int64
	}{
		{"empty", 0, gib},
		{"small", 100 * mib, gib},
		{"just under the floor", 682 * mib, gib},
		{"above the floor", gib, gib + gib/2},
		{"rounded up to a MiB", 2*gib + 1, 3*gib + mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultSize(tt.content); got != tt.want {
				t.Errorf("DefaultSize(%d) = %d, want %d", tt.content, got, tt.want)
			}
		})
	}
}

func TestParseMke2fsVersion(t *testing.T) {
	tests := []struct {
		in   string
		want [2]int
		ok   bool
	}{
		{"mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n", [2]int{1, 47}, true},
		{"mke2fs 1.44.1 (24-Mar-2018)", [2]int{1, 44}, true},
		{"something else", [2]int{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseMke2fsVersion(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseMke2fsVersion = %v, %v, want %v (ok %v)", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestMkfsVersionArgs(t *testing.T) {
	if got, want := mkfsVersionArgs(), []string{"-c", "exec mkfs.ext4 -V 2>&1"}; !slices.Equal(got, want) {
		t.Errorf("mkfsVersionArgs() = %q, want %q", got, want)
	}
}

func TestWantedBy(t *testing.T) {
	unit := "[Unit]\nWantedBy=ignored.target\n[Install]\nWantedBy=multi-user.target network-online.target\nWantedBy=ssh.service\n"
	if got, want := wantedBy([]byte(unit)), []string{"multi-user.target", "network-online.target", "ssh.service"}; !slices.Equal(got, want) {
		t.Errorf("wantedBy = %q, want %q", got, want)
	}
}

func TestGuestUnitLists(t *testing.T) {
	masked, err := image.MaskedUnits()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"systemd-networkd.service", "NetworkManager.service", "fstrim.timer"} {
		if !slices.Contains(masked, want) {
			t.Errorf("MaskedUnits() = %q, lacks %s", masked, want)
		}
	}
	if enabled := image.EnabledUnits(); !slices.Contains(enabled, "banger-agent.service") {
		t.Errorf("EnabledUnits() = %q, lacks banger-agent.service", enabled)
	}
}
