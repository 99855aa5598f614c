// Package kernel turns a Linux x86 boot image (bzImage, "vmlinuz") into
// the uncompressed ELF kernel ("vmlinux") that Firecracker boots, and
// keeps the result in a cache keyed by the boot image's content. The
// daemon's VM service and the Firecracker driver import it.
package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"banger/internal/errdefs"
)

// Header is the part of a bzImage's setup header (Documentation/arch/x86/boot.rst)
// extraction uses and checks.
type Header struct {
	SetupSects    int    // 512-byte setup sectors after the boot sector
	Version       uint16 // boot protocol version, e.g. 0x020f
	PayloadOffset uint32 // compressed kernel, from the protected-mode code
	PayloadLength uint32
	PrefAddress   uint64 // where the kernel wants to run (physical)
	InitSize      uint32 // memory the kernel needs from PrefAddress while it decompresses and runs
}

// Offsets in the setup header.
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	offPrefAddress   = 0x258
	offInitSize      = 0x260
	headerEnd        = 0x264
)

// ParseHeader reads the setup header of the bzImage in img. Images older
// than boot protocol 2.08 carry no payload location and are an error.
func ParseHeader(img []byte) (Header, error) {
	if len(img) < headerEnd || string(img[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return Header{}, errdefs.Invalid(errors.New("not a bzImage: no HdrS setup header"))
	}
	le := binary.LittleEndian
	h := Header{
		SetupSects:    int(img[offSetupSects]),
		Version:       le.Uint16(img[offVersion:]),
		PayloadOffset: le.Uint32(img[offPayloadOffset:]),
		PayloadLength: le.Uint32(img[offPayloadLength:]),
		PrefAddress:   le.Uint64(img[offPrefAddress:]),
		InitSize:      le.Uint32(img[offInitSize:]),
	}
	if h.SetupSects == 0 {
		h.SetupSects = 4 // as the boot protocol says
	}
	if h.Version < 0x0208 {
		return Header{}, errdefs.Invalid(fmt.Errorf("bzImage boot protocol %d.%02d: want 2.08 or later (payload fields)", h.Version>>8, h.Version&0xff))
	}
	return h, nil
}

// Payload returns the compressed kernel inside img.
func (h Header) Payload(img []byte) ([]byte, error) {
	start := uint64(h.SetupSects+1)*512 + uint64(h.PayloadOffset)
	end := start + uint64(h.PayloadLength)
	if h.PayloadLength == 0 || end > uint64(len(img)) {
		return nil, errdefs.Invalid(fmt.Errorf("bzImage payload %d+%d lies outside the %d-byte image", start, h.PayloadLength, len(img)))
	}
	return img[start:end], nil
}

// Compression formats of a bzImage payload.
const (
	FormatGzip = "gzip"
	FormatXZ   = "xz"
	FormatZstd = "zstd"
	FormatLZ4  = "lz4"
)

var payloadMagic = []struct {
	format string
	magic  []byte
}{
	{FormatGzip, []byte{0x1f, 0x8b}},
	{FormatXZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{FormatZstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{FormatLZ4, []byte{0x02, 0x21, 0x4c, 0x18}}, // legacy frame, as the kernel writes it
	{"bzip2", []byte("BZh")},
	{"lzo", []byte{0x89, 'L', 'Z', 'O'}},
	{"lzma", []byte{0x5d, 0x00, 0x00}},
}

// DetectFormat names the compression of a payload by its magic bytes,
// "" when unknown.
func DetectFormat(payload []byte) string {
	for _, m := range payloadMagic {
		if bytes.HasPrefix(payload, m.magic) {
			return m.format
		}
	}
	return ""
}

// maxVmlinux bounds the decompressed kernel so a hostile image cannot
// exhaust memory.
const maxVmlinux = 1 << 30

// Extract returns the uncompressed ELF kernel of img, a bzImage whose
// payload is gzip, xz, zstd or lz4 compressed. An img that already is an
// ELF file is returned as it is.
func Extract(img []byte) ([]byte, error) {
	if bytes.HasPrefix(img, []byte(elf.ELFMAG)) {
		return img, checkELF(img)
	}
	h, err := ParseHeader(img)
	if err != nil {
		return nil, err
	}
	payload, err := h.Payload(img)
	if err != nil {
		return nil, err
	}
	format := DetectFormat(payload)
	out, err := decompress(format, payload)
	if err != nil {
		return nil, err
	}
	if err := checkELF(out); err != nil {
		return nil, fmt.Errorf("decompressed %s payload: %w", format, err)
	}
	return out, nil
}

func decompress(format string, payload []byte) ([]byte, error) {
	var out []byte
	var err error
	switch format {
	case FormatGzip:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(payload)); err == nil {
			// The kernel appends the uncompressed size after the gzip
			// member; read the one member only.
			zr.Multistream(false)
			out, err = readAllLimited(zr)
		}
	case FormatXZ:
		out, err = decodeXZ(payload)
	case FormatZstd:
		// The kernel build appends the uncompressed size after the
		// frame; without it the stream is one clean frame.
		out, err = decodeZstd(payload[:len(payload)-4])
		if err != nil {
			out, err = decodeZstd(payload)
		}
	case FormatLZ4:
		out, err = decodeLZ4Legacy(payload)
	case "":
		return nil, errdefs.Invalid(errors.New("bzImage payload: unknown compression (want gzip, xz, zstd or lz4)"))
	default:
		return nil, errdefs.Invalid(fmt.Errorf("bzImage payload: %s compression is not supported (want gzip, xz, zstd or lz4)", format))
	}
	if err != nil {
		return nil, fmt.Errorf("decompress %s payload: %w", format, err)
	}
	return out, nil
}

func decodeZstd(b []byte) ([]byte, error) {
	zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderMaxMemory(maxVmlinux), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return readAllLimited(zr)
}

func readAllLimited(r io.Reader) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, maxVmlinux+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxVmlinux {
		return nil, fmt.Errorf("larger than %d bytes", maxVmlinux)
	}
	return out, nil
}

// decodeLZ4Legacy decodes the LZ4 legacy frame the kernel build writes:
// the magic, then blocks of (le32 compressed size, data), each expanding
// to at most 8 MiB, followed by the le32 uncompressed size the kernel
// build appends.
func decodeLZ4Legacy(payload []byte) ([]byte, error) {
	const blockMax = 8 << 20
	p := payload[4:]
	var out []byte
	buf := make([]byte, blockMax)
	for len(p) > 4 {
		n := int(binary.LittleEndian.Uint32(p))
		if n == 0x184c2102 { // a concatenated frame starts again
			p = p[4:]
			continue
		}
		if n <= 0 || n > len(p)-4 {
			break // the appended size, or trailing padding
		}
		m, err := lz4.UncompressBlock(p[4:4+n], buf)
		if err != nil {
			return nil, fmt.Errorf("block at offset %d: %w", len(payload)-len(p), err)
		}
		out = append(out, buf[:m]...)
		if len(out) > maxVmlinux {
			return nil, fmt.Errorf("larger than %d bytes", maxVmlinux)
		}
		p = p[4+n:]
	}
	if len(out) == 0 {
		return nil, errors.New("no lz4 blocks")
	}
	return out, nil
}

// checkELF checks that b is a 64-bit x86 ELF executable.
func checkELF(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return errdefs.Invalid(fmt.Errorf("not an ELF kernel: %w", err))
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return errdefs.Invalid(fmt.Errorf("ELF kernel is %v %v %v, want ELFCLASS64 EM_X86_64 ET_EXEC", f.Class, f.Machine, f.Type))
	}
	return nil
}
