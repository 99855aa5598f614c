package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"banger/internal/errdefs"
)

// superblock is the part of an ext2/3/4 superblock this package reads
// to decide, without running a tool, whether a filesystem needs a check
// before an offline change, how big it is and what it is called.
type superblock struct {
	BlockCount  uint64
	BlockSize   uint64
	State       uint16 // bit 0: cleanly unmounted, bit 1: errors detected
	MountTime   int64  // s_mtime: last mount
	LastCheck   int64  // s_lastcheck: last full check
	Incompat    uint32 // s_feature_incompat
	VolumeLabel string
}

const (
	superblockOffset = 1024
	superblockSize   = 1024
	ext4Magic        = 0xEF53

	stateValid  = 0x1
	stateErrors = 0x2

	incompatRecover = 0x4  // the journal needs replaying
	incompat64Bit   = 0x80 // block counts have a high half
)

// readSuperblock reads the superblock of the ext4 image at path.
func readSuperblock(path string) (superblock, error) {
	f, err := os.Open(path)
	if err != nil {
		return superblock{}, err
	}
	defer f.Close()
	buf := make([]byte, superblockSize)
	if _, err := f.ReadAt(buf, superblockOffset); err != nil {
		if errors.Is(err, io.EOF) {
			return superblock{}, errdefs.Invalid(fmt.Errorf("%s is too small to hold an ext4 filesystem", path))
		}
		return superblock{}, err
	}
	sb, err := parseSuperblock(buf)
	if err != nil {
		return superblock{}, fmt.Errorf("%s: %w", path, err)
	}
	return sb, nil
}

// parseSuperblock decodes the 1024 bytes of an ext2/3/4 superblock
// (little endian; offsets from the kernel's struct ext4_super_block).
func parseSuperblock(b []byte) (superblock, error) {
	if len(b) < superblockSize {
		return superblock{}, errdefs.Invalid(fmt.Errorf("superblock is %d bytes, want %d", len(b), superblockSize))
	}
	le := binary.LittleEndian
	if magic := le.Uint16(b[0x38:]); magic != ext4Magic {
		return superblock{}, errdefs.Invalid(fmt.Errorf("not an ext4 filesystem (magic %#x)", magic))
	}
	logBlock := le.Uint32(b[0x18:])
	if logBlock > 6 { // 64 KiB is the largest ext4 block size
		return superblock{}, errdefs.Invalid(fmt.Errorf("invalid ext4 block size exponent %d", logBlock))
	}
	sb := superblock{
		BlockCount: uint64(le.Uint32(b[0x04:])),
		BlockSize:  1024 << logBlock,
		State:      le.Uint16(b[0x3A:]),
		MountTime:  int64(le.Uint32(b[0x2C:])) | int64(b[0x275])<<32,
		LastCheck:  int64(le.Uint32(b[0x40:])) | int64(b[0x277])<<32,
		Incompat:   le.Uint32(b[0x60:]),
	}
	if sb.Incompat&incompat64Bit != 0 {
		sb.BlockCount |= uint64(le.Uint32(b[0x150:])) << 32
	}
	label := b[0x78 : 0x78+16]
	if i := strings.IndexByte(string(label), 0); i >= 0 {
		label = label[:i]
	}
	sb.VolumeLabel = string(label)
	return sb, nil
}

// Bytes is the filesystem's size.
func (sb superblock) Bytes() uint64 { return sb.BlockCount * sb.BlockSize }

// NeedsCheck reports whether resize2fs would refuse to work on the
// filesystem before a full e2fsck: it was mounted since its last check,
// was not cleanly unmounted, has recorded errors or a journal to replay.
func (sb superblock) NeedsCheck() bool {
	return sb.State&stateValid == 0 ||
		sb.State&stateErrors != 0 ||
		sb.Incompat&incompatRecover != 0 ||
		sb.LastCheck < sb.MountTime
}
