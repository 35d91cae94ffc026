// Package bzimage reads the setup header of an x86 Linux bzImage and
// extracts the uncompressed ELF vmlinux from its payload, so that the same
// kernel can be booted through the PVH entry point (which skips the
// kernel's self-decompression).
//
// Field offsets follow Documentation/arch/x86/boot.rst; the payload layout
// (compressed stream followed by the little-endian uncompressed size)
// follows arch/x86/boot/compressed/mkpiggy.c.
package bzimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Setup header offsets within the bzImage file.
const (
	offSetupSects    = 0x1f1
	offBootFlag      = 0x1fe
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offKernelVersion = 0x20e
	offLoadFlags     = 0x211
	offXLoadFlags    = 0x236
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	offInitSize      = 0x260
	headerEnd        = 0x264

	headerMagic = "HdrS"
	bootFlag    = 0xaa55
	// minProtocol is the first boot protocol with payload_offset/length.
	minProtocol = 0x208
	// maxKernelVersionLen bounds the kernel_version string.
	maxKernelVersionLen = 256
)

// Header holds the setup-header facts paddock needs.
type Header struct {
	// SetupSects is the number of 512-byte setup sectors (0 means 4).
	SetupSects int
	// Protocol is the boot protocol version, e.g. 0x020f for 2.15.
	Protocol uint16
	// KernelVersion is the human-readable version string
	// ("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP ...").
	KernelVersion string
	LoadFlags     uint8
	XLoadFlags    uint16
	// PayloadOffset and PayloadLength locate the compressed kernel,
	// relative to the start of the protected-mode code.
	PayloadOffset, PayloadLength uint32
	// InitSize is the memory the kernel needs while decompressing.
	InitSize uint32
}

// KernelStart returns the file offset of the protected-mode code.
func (h *Header) KernelStart() int64 { return int64(h.SetupSects+1) * 512 }

// PayloadStart returns the file offset of the compressed payload.
func (h *Header) PayloadStart() int64 { return h.KernelStart() + int64(h.PayloadOffset) }

// Release returns the first word of KernelVersion, the `uname -r` release.
func (h *Header) Release() string {
	if i := bytes.IndexByte([]byte(h.KernelVersion), ' '); i >= 0 {
		return h.KernelVersion[:i]
	}
	return h.KernelVersion
}

// ErrNotBzImage is wrapped by Parse errors for files that are not bzImages.
var ErrNotBzImage = errors.New("not a bzImage")

// Parse reads and checks the setup header of a bzImage of the given size.
// The file is untrusted: every inconsistency is an error, never a panic.
func Parse(r io.ReaderAt, size int64) (*Header, error) {
	if size < headerEnd {
		return nil, fmt.Errorf("%w: %d bytes is too small for a setup header", ErrNotBzImage, size)
	}
	var b [headerEnd]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("read setup header: %w", err)
	}
	le := binary.LittleEndian
	if string(b[offHeaderMagic:offHeaderMagic+4]) != headerMagic {
		return nil, fmt.Errorf("%w: no %q magic at %#x", ErrNotBzImage, headerMagic, offHeaderMagic)
	}
	if f := le.Uint16(b[offBootFlag:]); f != bootFlag {
		return nil, fmt.Errorf("%w: boot flag %#x at %#x, want %#x", ErrNotBzImage, f, offBootFlag, bootFlag)
	}
	h := &Header{
		SetupSects:    int(b[offSetupSects]),
		Protocol:      le.Uint16(b[offVersion:]),
		LoadFlags:     b[offLoadFlags],
		XLoadFlags:    le.Uint16(b[offXLoadFlags:]),
		PayloadOffset: le.Uint32(b[offPayloadOffset:]),
		PayloadLength: le.Uint32(b[offPayloadLength:]),
		InitSize:      le.Uint32(b[offInitSize:]),
	}
	if h.SetupSects == 0 {
		h.SetupSects = 4
	}
	if h.Protocol < minProtocol {
		return nil, fmt.Errorf("boot protocol %d.%02d is older than 2.08 (no payload fields)", h.Protocol>>8, h.Protocol&0xff)
	}
	if h.KernelStart() >= size {
		return nil, fmt.Errorf("%d setup sectors extend past the end of the %d-byte file", h.SetupSects, size)
	}
	if h.PayloadLength < 5 {
		return nil, fmt.Errorf("payload length %d is too small", h.PayloadLength)
	}
	if end := h.PayloadStart() + int64(h.PayloadLength); end > size {
		return nil, fmt.Errorf("payload [%#x, %#x) extends past the end of the %d-byte file", h.PayloadStart(), end, size)
	}
	if p := le.Uint16(b[offKernelVersion:]); p != 0 {
		h.KernelVersion = readCString(r, int64(p)+0x200, size)
	}
	return h, nil
}

// readCString reads a NUL-terminated printable string at off, or "".
func readCString(r io.ReaderAt, off, size int64) string {
	if off >= size {
		return ""
	}
	buf := make([]byte, min(maxKernelVersionLen, size-off))
	n, _ := r.ReadAt(buf, off)
	buf = buf[:n]
	end := bytes.IndexByte(buf, 0)
	if end < 0 {
		return ""
	}
	for _, c := range buf[:end] {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return string(buf[:end])
}

// Payload returns the compressed stream (without the trailing size word)
// and the uncompressed size the kernel build recorded after it.
func (h *Header) Payload(r io.ReaderAt) (stream *io.SectionReader, uncompressed uint32, err error) {
	var sz [4]byte
	end := h.PayloadStart() + int64(h.PayloadLength)
	if _, err := r.ReadAt(sz[:], end-4); err != nil {
		return nil, 0, fmt.Errorf("read payload size: %w", err)
	}
	return io.NewSectionReader(r, h.PayloadStart(), int64(h.PayloadLength)-4), binary.LittleEndian.Uint32(sz[:]), nil
}

// Compression identifies a payload's compression format.
type Compression int

// Payload compression formats the kernel supports (CONFIG_KERNEL_*).
const (
	Unknown Compression = iota
	Gzip
	Bzip2
	LZMA
	XZ
	LZO
	LZ4
	Zstd
	// Uncompressed is an ELF payload (not produced by Linux's build, but
	// accepted).
	Uncompressed
)

var compressionNames = [...]string{"unknown", "gzip", "bzip2", "LZMA", "XZ", "LZO", "LZ4", "zstd", "uncompressed"}

func (c Compression) String() string {
	if c < 0 || int(c) >= len(compressionNames) {
		return fmt.Sprintf("Compression(%d)", int(c))
	}
	return compressionNames[c]
}

// DetectCompression identifies the format of a payload from its first bytes.
func DetectCompression(magic []byte) Compression {
	has := func(p string) bool { return bytes.HasPrefix(magic, []byte(p)) }
	switch {
	case has("\x1f\x8b"):
		return Gzip
	case has("BZh"):
		return Bzip2
	case has("\xfd7zXZ\x00"):
		return XZ
	case has("\x5d\x00\x00"):
		return LZMA
	case has("\x89LZO"):
		return LZO
	case has("\x02\x21\x4c\x18"):
		return LZ4
	case has("\x28\xb5\x2f\xfd"):
		return Zstd
	case has("\x7fELF"):
		return Uncompressed
	}
	return Unknown
}
