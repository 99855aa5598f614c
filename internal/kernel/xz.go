package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ulikunitz/xz/lzma"
)

// xz filter ids (xz file format 1.2.0, section 5.3).
const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

// decodeXZ decodes the first block of an xz stream. Kernel builds
// compress with an x86 BCJ filter before LZMA2 (scripts/xz_wrap.sh),
// which general xz readers for Go do not support, so the container is
// parsed here: LZMA2 is decoded by the lzma package and the BCJ filter
// reversed by bcjX86Decode.
func decodeXZ(data []byte) ([]byte, error) {
	if len(data) < 12+1 {
		return nil, errors.New("xz: truncated stream header")
	}
	p := data[12:]
	size := int(p[0])
	if size == 0 {
		return nil, errors.New("xz: stream has no blocks")
	}
	hdrLen := (size + 1) * 4
	if len(p) < hdrLen {
		return nil, errors.New("xz: truncated block header")
	}
	hdr := p[:hdrLen-4] // without its CRC32
	flags := hdr[1]
	nfilters := int(flags&3) + 1
	q := hdr[2:]
	var err error
	if flags&0x40 != 0 { // compressed size present
		if _, q, err = xzVarint(q); err != nil {
			return nil, err
		}
	}
	if flags&0x80 != 0 { // uncompressed size present
		if _, q, err = xzVarint(q); err != nil {
			return nil, err
		}
	}
	type filter struct {
		id    uint64
		props []byte
	}
	filters := make([]filter, 0, nfilters)
	for range nfilters {
		var id, n uint64
		if id, q, err = xzVarint(q); err != nil {
			return nil, err
		}
		if n, q, err = xzVarint(q); err != nil {
			return nil, err
		}
		if n > uint64(len(q)) {
			return nil, errors.New("xz: truncated filter properties")
		}
		filters = append(filters, filter{id, q[:n]})
		q = q[n:]
	}
	last := filters[len(filters)-1]
	if last.id != xzFilterLZMA2 || len(last.props) != 1 {
		return nil, fmt.Errorf("xz: last filter 0x%x, want LZMA2", last.id)
	}
	var x86Start uint32
	useX86 := false
	for _, f := range filters[:len(filters)-1] {
		if f.id != xzFilterX86 {
			return nil, fmt.Errorf("xz: filter 0x%x is not supported (want x86 BCJ and LZMA2)", f.id)
		}
		useX86 = true
		if len(f.props) == 4 {
			x86Start = binary.LittleEndian.Uint32(f.props)
		}
	}
	dictCap, err := lzma2DictSize(last.props[0])
	if err != nil {
		return nil, err
	}
	r, err := lzma.Reader2Config{DictCap: dictCap}.NewReader2(bytes.NewReader(p[hdrLen:]))
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	out, err := readAllLimited(r)
	if err != nil {
		return nil, fmt.Errorf("xz: lzma2: %w", err)
	}
	if useX86 {
		bcjX86Decode(out, x86Start)
	}
	return out, nil
}

// xzVarint decodes an xz multibyte integer.
func xzVarint(b []byte) (uint64, []byte, error) {
	var v uint64
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, b[i+1:], nil
		}
	}
	return 0, nil, errors.New("xz: bad multibyte integer")
}

// lzma2DictSize decodes the LZMA2 dictionary size property.
func lzma2DictSize(prop byte) (int, error) {
	bits := int(prop & 0x3f)
	if bits > 40 {
		return 0, fmt.Errorf("xz: bad LZMA2 dictionary size property %d", prop)
	}
	if bits == 40 {
		return 1 << 31, nil
	}
	size := (2 | bits&1) << (bits/2 + 11)
	if size < lzma.MinDictCap {
		size = lzma.MinDictCap
	}
	return size, nil
}

// bcjX86Decode reverses the x86 branch/call/jump filter in place: the
// encoder turned the relative targets of E8 (call) and E9 (jmp)
// instructions into absolute ones to compress better. start is the
// filter's start offset. The last four bytes are never converted, as in
// every xz decoder.
func bcjX86Decode(buf []byte, start uint32) {
	maskAllowed := [8]bool{true, true, true, false, true, false, false, false}
	maskBitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	testMSByte := func(b byte) bool { return b == 0x00 || b == 0xff }

	if len(buf) <= 4 {
		return
	}
	size := len(buf) - 4
	prevPos := -1
	var prevMask uint32
	for i := 0; i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		d := i - prevPos
		if d > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (d - 1)) & 7
			if prevMask != 0 {
				b := buf[i+4-int(maskBitNum[prevMask])]
				if !maskAllowed[prevMask] || testMSByte(b) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !testMSByte(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (start + uint32(i) + 5)
			if prevMask == 0 {
				break
			}
			j := maskBitNum[prevMask] * 8
			if !testMSByte(byte(dest >> (24 - j))) {
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
