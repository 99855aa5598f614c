package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"

	"banger/internal/errdefs"
)

// fakeELF returns a minimal 64-bit x86 executable ELF image with the
// entry point entry, padded with compressible filler.
func fakeELF(entry uint64) []byte {
	var h elf.Header64
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h.Type = uint16(elf.ET_EXEC)
	h.Machine = uint16(elf.EM_X86_64)
	h.Version = uint32(elf.EV_CURRENT)
	h.Entry = entry
	h.Ehsize = 64
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	b.WriteString(strings.Repeat("banger kernel filler ", 5000))
	return b.Bytes()
}

// fakeBzImage wraps payload in a bzImage with a 2.15 setup header, the
// way the kernel build does, including the appended size.
func fakeBzImage(payload []byte, uncompressed int) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512)
	le := binary.LittleEndian
	img[offSetupSects] = setupSects
	copy(img[offHeaderMagic:], "HdrS")
	le.PutUint16(img[offVersion:], 0x020f)
	le.PutUint64(img[offPrefAddress:], 0x1000000)
	le.PutUint32(img[offInitSize:], 0x2000000)
	const payloadOffset = 0x100
	le.PutUint32(img[offPayloadOffset:], payloadOffset)
	img = append(img, make([]byte, payloadOffset)...)
	full := append(append([]byte{}, payload...), le.AppendUint32(nil, uint32(uncompressed))...)
	le.PutUint32(img[offPayloadLength:], uint32(len(full)))
	img = append(img, full...)
	return append(img, make([]byte, 64)...) // trailing decompressor code
}

func compressGzip(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressXZ(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressZstd(t *testing.T, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// compressLZ4Legacy writes the legacy frame as the kernel's lz4 -l does,
// with blocks of at most blockSize input bytes.
func compressLZ4Legacy(t *testing.T, b []byte, blockSize int) []byte {
	out := []byte{0x02, 0x21, 0x4c, 0x18}
	for len(b) > 0 {
		n := min(blockSize, len(b))
		dst := make([]byte, lz4.CompressBlockBound(n))
		m, err := lz4.CompressBlock(b[:n], dst, nil)
		if err != nil || m == 0 {
			t.Fatalf("lz4 compress: %d, %v", m, err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(m))
		out = append(out, dst[:m]...)
		b = b[n:]
	}
	return out
}

func TestExtractFormats(t *testing.T) {
	kernel := fakeELF(0x1000000)
	tests := []struct {
		name    string
		payload []byte
		format  string
	}{
		{name: "gzip", payload: compressGzip(t, kernel), format: FormatGzip},
		{name: "xz", payload: compressXZ(t, kernel), format: FormatXZ},
		{name: "zstd", payload: compressZstd(t, kernel), format: FormatZstd},
		{name: "lz4 one block", payload: compressLZ4Legacy(t, kernel, 8<<20), format: FormatLZ4},
		{name: "lz4 many blocks", payload: compressLZ4Legacy(t, kernel, 4096), format: FormatLZ4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DetectFormat(tt.payload); got != tt.format {
				t.Fatalf("got format %q, want %q", got, tt.format)
			}
			got, err := Extract(fakeBzImage(tt.payload, len(kernel)))
			if err != nil {
				t.Fatalf("got err %v, want none", err)
			}
			if !bytes.Equal(got, kernel) {
				t.Errorf("got %d bytes, want the original %d-byte kernel", len(got), len(kernel))
			}
		})
	}
}

func TestExtractErrors(t *testing.T) {
	kernel := fakeELF(0x1000000)
	oldProto := fakeBzImage(compressGzip(t, kernel), len(kernel))
	binary.LittleEndian.PutUint16(oldProto[offVersion:], 0x0206)
	shortPayload := fakeBzImage(compressGzip(t, kernel), len(kernel))
	binary.LittleEndian.PutUint32(shortPayload[offPayloadLength:], 1<<30)
	tests := []struct {
		name    string
		img     []byte
		wantErr string
	}{
		{name: "not a bzImage", img: make([]byte, 4096), wantErr: "no HdrS setup header"},
		{name: "old boot protocol", img: oldProto, wantErr: "want 2.08 or later"},
		{name: "payload outside", img: shortPayload, wantErr: "lies outside"},
		{name: "bzip2", img: fakeBzImage([]byte("BZh91AY&SY"), 10), wantErr: "bzip2 compression is not supported"},
		{name: "unknown", img: fakeBzImage([]byte("????????"), 10), wantErr: "unknown compression"},
		{name: "not elf inside", img: fakeBzImage(compressGzip(t, []byte(strings.Repeat("x", 1000))), 1000), wantErr: "not an ELF kernel"},
		{name: "corrupt gzip", img: fakeBzImage(compressGzip(t, kernel)[:200], len(kernel)), wantErr: "decompress gzip payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Extract(tt.img)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestExtractELFPassesThrough(t *testing.T) {
	kernel := fakeELF(0x1000000)
	got, err := Extract(kernel)
	if err != nil || !bytes.Equal(got, kernel) {
		t.Fatalf("got %d bytes, err %v; want the ELF back unchanged", len(got), err)
	}
}

func TestLZMA2DictSize(t *testing.T) {
	tests := []struct {
		prop byte
		want int
	}{
		{prop: 0x1a, want: 32 << 20}, // the kernel's --lzma2=dict=32MiB
		{prop: 0x16, want: 8 << 20},
		{prop: 0x17, want: 12 << 20},
		{prop: 40, want: 1 << 31},
	}
	for _, tt := range tests {
		got, err := lzma2DictSize(tt.prop)
		if err != nil || got != tt.want {
			t.Errorf("prop 0x%x: got %d, %v, want %d", tt.prop, got, err, tt.want)
		}
	}
	if _, err := lzma2DictSize(41); err == nil {
		t.Errorf("prop 41: got no error, want one")
	}
}

// bcjX86Encode is the x86 BCJ encoder, the inverse of bcjX86Decode.
func bcjX86Encode(buf []byte) {
	maskAllowed := [8]bool{true, true, true, false, true, false, false, false}
	maskBitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	ms := func(b byte) bool { return b == 0 || b == 0xff }
	prevPos, prevMask := -1, uint32(0)
	for i := 0; i < len(buf)-4; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		if d := i - prevPos; d > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (d - 1)) & 7
			if prevMask != 0 && (!maskAllowed[prevMask] || ms(buf[i+4-int(maskBitNum[prevMask])])) {
				prevPos, prevMask = i, prevMask<<1|1
				continue
			}
		}
		prevPos = i
		if !ms(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src + uint32(i) + 5
			if prevMask == 0 {
				break
			}
			j := maskBitNum[prevMask] * 8
			if !ms(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= 0 - (dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
}

func TestBCJX86RoundTrip(t *testing.T) {
	// Calls and jumps with small forward and backward offsets, and E8
	// bytes that are not instructions.
	var code []byte
	for i := range 2000 {
		switch i % 5 {
		case 0:
			code = append(code, 0xe8)
			code = binary.LittleEndian.AppendUint32(code, uint32(int32(i*7-5000)))
		case 1:
			code = append(code, 0xe9, 0x10, 0x00, 0x00, 0x00)
		case 2:
			code = append(code, 0xe8, 0xe8, 0x12, 0x34, 0x56)
		default:
			code = append(code, 0x90, 0x48, 0x89, byte(i))
		}
	}
	enc := append([]byte{}, code...)
	bcjX86Encode(enc)
	if bytes.Equal(enc, code) {
		t.Fatal("encoder changed nothing; the test would prove nothing")
	}
	bcjX86Decode(enc, 0)
	if !bytes.Equal(enc, code) {
		t.Errorf("got a different buffer after encode+decode, want the original")
	}
}

// realKernels lists the Debian kernels this machine has.
func realKernels() []string {
	var out []string
	for _, pattern := range []string{
		"/var/cache/banger-test/image/vmlinuz",
		"/var/cache/banger-e2e/*/vmlinuz",
		"/boot/vmlinuz-*",
	} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

// TestExtractRealKernel extracts the Debian kernel the default image
// uses and checks the result against its bzImage header: a 64-bit x86
// ELF executable entered at the header's preferred load address, whose
// loaded image starts there and fits in init_size.
func TestExtractRealKernel(t *testing.T) {
	kernels := realKernels()
	if len(kernels) == 0 {
		t.Skip("no Debian kernel found (/var/cache/banger-test/image/vmlinuz, /var/cache/banger-e2e/*/vmlinuz, /boot/vmlinuz-*): build the default image with the image package's tests")
	}
	path := kernels[0]
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(img)
	if err != nil {
		t.Fatalf("parse header of %s: %v", path, err)
	}
	payload, _ := h.Payload(img)
	t.Logf("%s: boot protocol %x, %s payload, pref_address %#x, init_size %#x", path, h.Version, DetectFormat(payload), h.PrefAddress, h.InitSize)
	out, err := Extract(img)
	if err != nil {
		t.Fatalf("extract %s: %v", path, err)
	}
	f, err := elf.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("got no ELF: %v", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("got %v %v %v, want ELFCLASS64 EM_X86_64 ET_EXEC", f.Class, f.Machine, f.Type)
	}
	if f.Entry != h.PrefAddress {
		t.Errorf("got entry %#x, want the header's pref_address %#x", f.Entry, h.PrefAddress)
	}
	lo, hi := ^uint64(0), uint64(0)
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		lo = min(lo, p.Paddr)
		hi = max(hi, p.Paddr+p.Memsz)
	}
	if lo != h.PrefAddress {
		t.Errorf("got lowest load address %#x, want pref_address %#x", lo, h.PrefAddress)
	}
	if hi-lo > uint64(h.InitSize) {
		t.Errorf("got loaded size %#x, want at most init_size %#x", hi-lo, h.InitSize)
	}
	if f.Entry < lo || f.Entry >= hi {
		t.Errorf("got entry %#x outside the loaded range [%#x, %#x)", f.Entry, lo, hi)
	}
}

func TestCache(t *testing.T) {
	kernel := fakeELF(0x1000000)
	dir := t.TempDir()
	bz := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(bz, fakeBzImage(compressGzip(t, kernel), len(kernel)), 0o644); err != nil {
		t.Fatal(err)
	}
	rawELF := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(rawELF, kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: filepath.Join(dir, "cache")}

	t.Run("extracts once", func(t *testing.T) {
		first, err := c.Vmlinux(bz)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(first, c.Dir) {
			t.Errorf("got %s, want a path under %s", first, c.Dir)
		}
		got, _ := os.ReadFile(first)
		if !bytes.Equal(got, kernel) {
			t.Errorf("got %d cached bytes, want the %d-byte kernel", len(got), len(kernel))
		}
		// A cached entry is used as it is: mark it and look again.
		if err := os.WriteFile(first, append(got, 'X'), 0o644); err != nil {
			t.Fatal(err)
		}
		second, err := c.Vmlinux(bz)
		if err != nil || second != first {
			t.Fatalf("got %s, %v, want %s", second, err, first)
		}
		if again, _ := os.ReadFile(second); !bytes.HasSuffix(again, []byte("X")) {
			t.Errorf("got the entry rewritten, want the cached one reused")
		}
	})
	t.Run("elf is used in place", func(t *testing.T) {
		got, err := c.Vmlinux(rawELF)
		if err != nil || got != rawELF {
			t.Errorf("got %s, %v, want %s", got, err, rawELF)
		}
	})
	t.Run("missing kernel", func(t *testing.T) {
		_, err := c.Vmlinux(filepath.Join(dir, "nope"))
		if !errdefs.IsNotFound(err) {
			t.Errorf("got %v, want a not-found error", err)
		}
	})
	t.Run("bad kernel", func(t *testing.T) {
		bad := filepath.Join(dir, "bad")
		os.WriteFile(bad, make([]byte, 8192), 0o644)
		_, err := c.Vmlinux(bad)
		if !errdefs.IsInvalid(err) {
			t.Errorf("got %v, want an invalid-argument error", err)
		}
	})
}

func FuzzExtract(f *testing.F) {
	kernel := fakeELF(0x1000000)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(kernel)
	w.Close()
	f.Add(fakeBzImage(gz.Bytes(), len(kernel)))
	f.Add(fakeBzImage([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1, 0, 0, 0, 0, 2, 1, 4, 0, 0x21, 1, 0x1a}, 10))
	f.Add(fakeBzImage([]byte{0x02, 0x21, 0x4c, 0x18, 5, 0, 0, 0, 0x50, 'h', 'e', 'l', 'l', 'o'}, 5))
	f.Fuzz(func(t *testing.T, img []byte) {
		Extract(img) // must not panic
	})
}
