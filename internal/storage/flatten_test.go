package storage

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseMinimumSize(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    uint64
		wantErr bool
	}{
		{"resize2fs 1.47", "Estimated minimum size of the filesystem: 13694\n", 13694, false},
		{"with banner", "resize2fs 1.47.0 (5-Feb-2023)\nEstimated minimum size of the filesystem: 42\n", 42, false},
		{"no line", "resize2fs: Bad magic number in super-block\n", 0, true},
		{"not a number", "Estimated minimum size of the filesystem: lots\n", 0, true},
		{"zero", "Estimated minimum size of the filesystem: 0\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMinimumSize([]byte(tc.out))
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestShrinkTarget(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name      string
		minBlocks uint64
		blockSize uint64
		wantBytes uint64
	}{
		// 1 GiB minimum: +256 MiB (a quarter) +256 MiB headroom.
		{"1 GiB of 4 KiB blocks", 1 << 30 / 4096, 4096, 1536 * mib},
		// 100 MiB: 100+25+256 = 381 MiB, rounded up to 384 MiB.
		{"rounds up to 64 MiB", 100 * mib / 4096, 4096, 384 * mib},
		{"1 KiB blocks", 100 * mib / 1024, 1024, 384 * mib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := shrinkTarget(tc.minBlocks, tc.blockSize)
			if got*tc.blockSize != tc.wantBytes {
				t.Errorf("got %d blocks (%d bytes), want %d bytes", got, got*tc.blockSize, tc.wantBytes)
			}
			if got < tc.minBlocks {
				t.Errorf("got %d blocks, below the minimum %d", got, tc.minBlocks)
			}
		})
	}
}

func TestParseDebugfsLsP(t *testing.T) {
	out := "/15/040755/0/0/.//\n/12/040755/0/0/..//\n" +
		"/16/100644/0/0/ssh_host_ed25519_key/2/\n" +
		"/17/100644/0/0/ssh_host_ed25519_key.pub/2/\n" +
		"/18/100644/0/0/we\"ird/2/\n" +
		"/19/100644/0/0/back\\slash/2/\n" +
		"garbage line\n\n"
	got := parseDebugfsLsP([]byte(out))
	want := []string{"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFlattenArgs(t *testing.T) {
	tests := []struct {
		name string
		got  []string
		want string
	}{
		{"convert", qemuImgConvertArgs("/v/system.qcow2", "/i/rootfs.ext4"), "convert -q -f qcow2 -O raw /v/system.qcow2 /i/rootfs.ext4"},
		{"e2fsck", e2fsckRepairArgs("/i/rootfs.ext4"), "-f -y /i/rootfs.ext4"},
		{"minimum", resize2fsMinimumArgs("/i/rootfs.ext4"), "-P /i/rootfs.ext4"},
		{"resize", resize2fsToArgs("/i/rootfs.ext4", 98304), "/i/rootfs.ext4 98304"},
		{"remove", debugfsRemoveScript([]string{"/etc/hostname", "/etc/ssh/ssh_host_rsa_key"}), `rm "/etc/hostname" rm "/etc/ssh/ssh_host_rsa_key"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.got, " "); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFileModeRoundTrip(t *testing.T) {
	for _, perm := range []uint32{0o444, 0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o600} {
		if got := unixPerm(fileMode(perm)); got != perm {
			t.Errorf("unixPerm(fileMode(%#o)) = %#o, want %#o", perm, got, perm)
		}
	}
	if got := fileMode(0o444); got != os.FileMode(0o444) {
		t.Errorf("fileMode(0444) = %v, want %v", got, os.FileMode(0o444))
	}
}
