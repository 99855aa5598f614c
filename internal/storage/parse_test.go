package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"banger/internal/errdefs"
	"banger/internal/hostexec"
)

// testSuperblock builds the 1024 bytes of a superblock.
func testSuperblock(blocks uint64, logBlock uint32, state uint16, mtime, lastcheck int64, incompat uint32, label string) []byte {
	b := make([]byte, superblockSize)
	le := binary.LittleEndian
	le.PutUint32(b[0x04:], uint32(blocks))
	le.PutUint32(b[0x150:], uint32(blocks>>32))
	le.PutUint32(b[0x18:], logBlock)
	le.PutUint32(b[0x2C:], uint32(mtime))
	b[0x275] = byte(mtime >> 32)
	le.PutUint16(b[0x38:], ext4Magic)
	le.PutUint16(b[0x3A:], state)
	le.PutUint32(b[0x40:], uint32(lastcheck))
	b[0x277] = byte(lastcheck >> 32)
	le.PutUint32(b[0x60:], incompat)
	copy(b[0x78:0x88], label)
	return b
}

func TestParseSuperblock(t *testing.T) {
	tests := []struct {
		name      string
		raw       []byte
		want      superblock
		wantBytes uint64
		check     bool
	}{
		{
			name:      "fresh work seed",
			raw:       testSuperblock(65536, 2, stateValid, 0, 1700000000, incompat64Bit, "banger-work"),
			want:      superblock{BlockCount: 65536, BlockSize: 4096, State: 1, LastCheck: 1700000000, Incompat: incompat64Bit, VolumeLabel: "banger-work"},
			wantBytes: 256 << 20,
		},
		{
			name:      "mounted since last check",
			raw:       testSuperblock(1000, 0, stateValid, 1700000500, 1700000000, 0, "x"),
			want:      superblock{BlockCount: 1000, BlockSize: 1024, State: 1, MountTime: 1700000500, LastCheck: 1700000000, VolumeLabel: "x"},
			wantBytes: 1024000,
			check:     true,
		},
		{
			name:      "not cleanly unmounted",
			raw:       testSuperblock(1, 2, 0, 0, 0, 0, ""),
			want:      superblock{BlockCount: 1, BlockSize: 4096},
			wantBytes: 4096,
			check:     true,
		},
		{
			name:      "errors recorded",
			raw:       testSuperblock(1, 2, stateValid|stateErrors, 0, 0, 0, ""),
			want:      superblock{BlockCount: 1, BlockSize: 4096, State: 3},
			wantBytes: 4096,
			check:     true,
		},
		{
			name:      "journal to replay",
			raw:       testSuperblock(1, 2, stateValid, 0, 0, incompatRecover, ""),
			want:      superblock{BlockCount: 1, BlockSize: 4096, State: 1, Incompat: incompatRecover},
			wantBytes: 4096,
			check:     true,
		},
		{
			name:      "64-bit block count and times past 2038",
			raw:       testSuperblock(1<<33, 2, stateValid, 1<<32+5, 1<<32+10, incompat64Bit, "sixteen-byte-lbl"),
			want:      superblock{BlockCount: 1 << 33, BlockSize: 4096, State: 1, MountTime: 1<<32 + 5, LastCheck: 1<<32 + 10, Incompat: incompat64Bit, VolumeLabel: "sixteen-byte-lbl"},
			wantBytes: 1 << 45,
		},
		{
			name:      "high block count ignored without 64bit",
			raw:       testSuperblock(1<<33|7, 2, stateValid, 0, 0, 0, ""),
			want:      superblock{BlockCount: 7, BlockSize: 4096, State: 1},
			wantBytes: 7 * 4096,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSuperblock(tt.raw)
			if err != nil {
				t.Fatalf("parseSuperblock: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.Bytes() != tt.wantBytes {
				t.Errorf("got %d bytes, want %d", got.Bytes(), tt.wantBytes)
			}
			if got.NeedsCheck() != tt.check {
				t.Errorf("got NeedsCheck %v, want %v", got.NeedsCheck(), tt.check)
			}
		})
	}
}

func TestParseSuperblockRejects(t *testing.T) {
	badMagic := testSuperblock(1, 2, 1, 0, 0, 0, "")
	badMagic[0x38] = 0
	badBlock := testSuperblock(1, 2, 1, 0, 0, 0, "")
	binary.LittleEndian.PutUint32(badBlock[0x18:], 40)
	tests := []struct {
		name string
		raw  []byte
	}{
		{"short", make([]byte, 100)},
		{"bad magic", badMagic},
		{"absurd block size", badBlock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSuperblock(tt.raw)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("got %v, want an ErrInvalid error", err)
			}
		})
	}
}

func TestValidateGuestPath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/", true},
		{"/root/.ssh/authorized_keys", true},
		{"/with space/x", true},
		{"", false},
		{"root/x", false},
		{"/a/../b", false},
		{"/..", false},
		{"/a/", false},
		{"/a//b", false},
		{"/a/./b", false},
		{`/a"b`, false},
		{`/a\b`, false},
		{"/a\nb", false},
		{"/a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.path), func(t *testing.T) {
			err := validateGuestPath(tt.path)
			if tt.ok && err != nil {
				t.Errorf("got %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("got %v, want an ErrInvalid error", err)
			}
		})
	}
}

const statDir = `Inode: 13   Type: directory    Mode:  0700   Flags: 0x80000
Generation: 0    Version: 0x00000000:00000000
User:     0   Group:     0   Project:     0   Size: 4096
File ACL: 0
Links: 2   Blockcount: 8
Fragment:  Address: 0    Number: 0    Size: 0
 ctime: 0x6b078458:00000000 -- Thu Nov 26 00:59:04 2026
EXTENTS:
(0):1068
`

const statFile = `Inode: 16   Type: regular    Mode:  04755   Flags: 0x80000
Generation: 0    Version: 0x00000000:00000000
User:  1000   Group:   100   Size: 3
File ACL: 0
Fragment:  Address: 0    Number: 0    Size: 0
`

func TestParseDebugfsStat(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    inodeInfo
		wantErr bool
	}{
		{"missing", "", inodeInfo{}, false},
		{"directory", statDir, inodeInfo{Exists: true, Type: "directory", Mode: 0o700, UID: 0, GID: 0, Size: 4096}, false},
		{"setuid file, small inode", statFile, inodeInfo{Exists: true, Type: "regular", Mode: 0o4755, UID: 1000, GID: 100, Size: 3}, false},
		{"truncated", "Inode: 13   Type: directory    Mode:  0700\n", inodeInfo{}, true},
		{"garbage mode", "Inode: 1 Type: regular Mode: 09 User: 0 Group: 0 Size: 1\n", inodeInfo{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDebugfsStat([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDebugfsSections(t *testing.T) {
	script := []string{`stat "/x"`, `stat "/nope"`, `cat "/x"`}
	out := "debugfs: stat \"/x\"\n" + statFile +
		"debugfs: stat \"/nope\"\n" +
		"debugfs: cat \"/x\"\n" +
		"a\ndebugfs: not an echo\n"
	got := debugfsSections([]byte(out), script)
	want := [][]byte{[]byte(statFile), []byte(""), []byte("a\ndebugfs: not an echo\n")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	t.Run("missing echo", func(t *testing.T) {
		got := debugfsSections([]byte("debugfs: stat \"/x\"\nInode: 1\n"), []string{`stat "/x"`, `stat "/y"`})
		if got[1] != nil {
			t.Errorf("got %q for the missing command, want nil", got[1])
		}
		if string(got[0]) != "Inode: 1\n" {
			t.Errorf("got %q, want %q", got[0], "Inode: 1\n")
		}
	})
}

func TestInodeCount(t *testing.T) {
	tests := []struct {
		name          string
		size, entries int64
		want          int64
	}{
		{"default ratio is enough", 1 << 30, 30000, 0},
		{"many small files", 64 << 20, 10000, 12564},
		{"empty tree", 4 << 20, 1, 0},
		{"tiny image", 1 << 20, 1, 65},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inodeCount(tt.size, tt.entries); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFsckSucceeded(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"clean", nil, true},
		{"repaired", &hostexec.Error{Name: "e2fsck", ExitCode: 1, Err: errors.New("exit status 1")}, true},
		{"uncorrected", &hostexec.Error{Name: "e2fsck", ExitCode: 4, Err: errors.New("exit status 4")}, false},
		{"wrapped repaired", fmt.Errorf("x: %w", &hostexec.Error{ExitCode: 1, Err: errors.New("exit status 1")}), true},
		{"not started", errors.New("exec: not found"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fsckSucceeded(tt.err); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
