package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// On-disk constants from QEMU's docs/interop/qcow2.txt.
const (
	magic = 0x514649fb // "QFI\xfb"

	headerV2Len = 72  // version 2 header length
	headerV3Min = 104 // minimum version 3 header length
	headerV3Len = 112 // what paddock writes: fields through compression_type, padded

	minClusterBits = 9  // 512 B
	maxClusterBits = 21 // 2 MiB: QEMU's implementation limit
	minExtL2Bits   = 14 // extended L2 entries need clusters of at least 16 KiB

	maxBackingNameLen = 1023
	maxRefcountOrder  = 6

	// Size caps, chosen like QEMU's so that no header field can make paddock
	// allocate unbounded memory. Every table is also capped by the file size.
	maxL1Bytes            = 32 << 20 // QCOW_MAX_L1_SIZE
	maxRefTableBytes      = 8 << 20  // QCOW_MAX_REFTABLE_SIZE
	maxSnapshots          = 65536    // QCOW_MAX_SNAPSHOTS
	maxSnapshotTableBytes = 64 << 20 // QCOW_MAX_SNAPSHOTS_SIZE
	maxSnapshotExtra      = 1024     // QCOW_MAX_SNAPSHOT_EXTRA_DATA
	snapshotExtraLen      = 24       // vm_state_size_large, disk_size, icount
	maxSnapshotNameLen    = 0xffff
)

// Incompatible feature bits.
const (
	IncompatDirty        = 1 << 0
	IncompatCorrupt      = 1 << 1
	IncompatDataFile     = 1 << 2
	IncompatCompression  = 1 << 3
	IncompatExtendedL2   = 1 << 4
	incompatKnownMask    = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2
	CompatLazyRefcounts  = 1 << 0
	AutoclearBitmaps     = 1 << 0
	AutoclearRawDataFile = 1 << 1
)

// Compression types (header byte 104).
const (
	CompressionZlib = 0
	CompressionZstd = 1
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857
	extBitmaps       = 0x23852875
	extCrypto        = 0x0537be77
	extDataFile      = 0x44415441
)

// Masks for table entries.
const (
	oflagCopied     = uint64(1) << 63
	oflagCompressed = uint64(1) << 62
	oflagZero       = uint64(1) << 0
	l1OffsetMask    = uint64(0x00fffffffffffe00)
	l2OffsetMask    = uint64(0x00fffffffffffe00)
	rtOffsetMask    = ^uint64(0x1ff)
	l1ReservedMask  = uint64(0x7f000000000001ff)
)

// ErrFormat is wrapped by every error that reports a malformed image.
var ErrFormat = errors.New("malformed qcow2 image")

// formatErr builds an error wrapping ErrFormat.
func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Header is the qcow2 file header (the fixed fields of cluster 0).
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	IncompatibleFeatures  uint64
	CompatibleFeatures    uint64
	AutoclearFeatures     uint64
	RefcountOrder         uint32
	HeaderLength          uint32
	CompressionType       uint8
	// Tail holds the header bytes after the compression_type field up to
	// HeaderLength: padding and any additional fields a newer writer
	// added. It is preserved verbatim when the header is rewritten.
	Tail []byte
}

// ParseHeader decodes and validates the fixed header at the start of buf.
// It checks everything that can be checked without the file size; see
// Header.validateLayout for the rest. buf must hold at least the first
// HeaderLength bytes (105 are enough to learn HeaderLength).
func ParseHeader(buf []byte) (Header, error) {
	var h Header
	if len(buf) < headerV2Len {
		return h, formatErr("header truncated: %d bytes", len(buf))
	}
	be := binary.BigEndian
	if be.Uint32(buf[0:]) != magic {
		return h, formatErr("bad magic %#08x", be.Uint32(buf[0:]))
	}
	h.Version = be.Uint32(buf[4:])
	h.BackingFileOffset = be.Uint64(buf[8:])
	h.BackingFileSize = be.Uint32(buf[16:])
	h.ClusterBits = be.Uint32(buf[20:])
	h.Size = be.Uint64(buf[24:])
	h.CryptMethod = be.Uint32(buf[32:])
	h.L1Size = be.Uint32(buf[36:])
	h.L1TableOffset = be.Uint64(buf[40:])
	h.RefcountTableOffset = be.Uint64(buf[48:])
	h.RefcountTableClusters = be.Uint32(buf[56:])
	h.NbSnapshots = be.Uint32(buf[60:])
	h.SnapshotsOffset = be.Uint64(buf[64:])
	switch h.Version {
	case 2:
		h.RefcountOrder = 4
		h.HeaderLength = headerV2Len
	case 3:
		if len(buf) < headerV3Min {
			return h, formatErr("version 3 header truncated: %d bytes", len(buf))
		}
		h.IncompatibleFeatures = be.Uint64(buf[72:])
		h.CompatibleFeatures = be.Uint64(buf[80:])
		h.AutoclearFeatures = be.Uint64(buf[88:])
		h.RefcountOrder = be.Uint32(buf[96:])
		h.HeaderLength = be.Uint32(buf[100:])
		if h.HeaderLength < headerV3Min || h.HeaderLength%8 != 0 {
			return h, formatErr("header_length %d is not a multiple of 8 of at least %d", h.HeaderLength, headerV3Min)
		}
	default:
		return h, fmt.Errorf("%w: qcow2 version %d (only 2 and 3 exist)", ErrUnsupported, h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return h, fmt.Errorf("%w: cluster_bits %d (cluster sizes 512 B to 2 MiB are supported)", ErrUnsupported, h.ClusterBits)
	}
	if uint64(h.HeaderLength) > uint64(1)<<h.ClusterBits {
		return h, formatErr("header_length %d exceeds the cluster size", h.HeaderLength)
	}
	if uint64(len(buf)) < uint64(h.HeaderLength) {
		return h, formatErr("header truncated: %d of %d bytes", len(buf), h.HeaderLength)
	}
	if h.Version == 3 && h.HeaderLength > headerV3Min {
		h.CompressionType = buf[104]
		h.Tail = bytes.Clone(buf[105:h.HeaderLength])
	}
	if h.RefcountOrder > maxRefcountOrder {
		return h, formatErr("refcount_order %d exceeds %d", h.RefcountOrder, maxRefcountOrder)
	}
	if h.IncompatibleFeatures&IncompatCompression != 0 {
		if h.CompressionType == CompressionZlib {
			return h, formatErr("compression type bit set but compression_type is zlib")
		}
	} else if h.CompressionType != CompressionZlib {
		return h, formatErr("compression_type %d without the compression type feature bit", h.CompressionType)
	}
	if h.IncompatibleFeatures&IncompatExtendedL2 != 0 && h.ClusterBits < minExtL2Bits {
		return h, formatErr("extended L2 entries need clusters of at least 16 KiB, have %d bytes", 1<<h.ClusterBits)
	}
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize > maxBackingNameLen {
			return h, formatErr("backing_file_size %d exceeds %d", h.BackingFileSize, maxBackingNameLen)
		}
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if end > uint64(1)<<h.ClusterBits || h.BackingFileOffset < uint64(h.HeaderLength) {
			return h, formatErr("backing file name at %#x+%d is outside the header cluster", h.BackingFileOffset, h.BackingFileSize)
		}
	}
	return h, nil
}

// Marshal encodes the fixed header (HeaderLength bytes).
func (h *Header) Marshal() []byte {
	n := h.HeaderLength
	if h.Version == 2 {
		n = headerV2Len
	}
	buf := make([]byte, n)
	be := binary.BigEndian
	be.PutUint32(buf[0:], magic)
	be.PutUint32(buf[4:], h.Version)
	be.PutUint64(buf[8:], h.BackingFileOffset)
	be.PutUint32(buf[16:], h.BackingFileSize)
	be.PutUint32(buf[20:], h.ClusterBits)
	be.PutUint64(buf[24:], h.Size)
	be.PutUint32(buf[32:], h.CryptMethod)
	be.PutUint32(buf[36:], h.L1Size)
	be.PutUint64(buf[40:], h.L1TableOffset)
	be.PutUint64(buf[48:], h.RefcountTableOffset)
	be.PutUint32(buf[56:], h.RefcountTableClusters)
	be.PutUint32(buf[60:], h.NbSnapshots)
	be.PutUint64(buf[64:], h.SnapshotsOffset)
	if h.Version == 2 {
		return buf
	}
	be.PutUint64(buf[72:], h.IncompatibleFeatures)
	be.PutUint64(buf[80:], h.CompatibleFeatures)
	be.PutUint64(buf[88:], h.AutoclearFeatures)
	be.PutUint32(buf[96:], h.RefcountOrder)
	be.PutUint32(buf[100:], h.HeaderLength)
	if n > headerV3Min {
		buf[104] = h.CompressionType
		copy(buf[105:], h.Tail)
	}
	return buf
}

// clusterSize returns 1 << ClusterBits.
func (h *Header) clusterSize() int64 { return int64(1) << h.ClusterBits }

// extendedL2 reports whether L2 entries carry subcluster bitmaps.
func (h *Header) extendedL2() bool { return h.IncompatibleFeatures&IncompatExtendedL2 != 0 }

// l2EntrySize is 16 with extended L2 entries, 8 otherwise.
func (h *Header) l2EntrySize() int64 {
	if h.extendedL2() {
		return 16
	}
	return 8
}

// l2Bits is log2 of the number of entries in one L2 table.
func (h *Header) l2Bits() uint32 {
	if h.extendedL2() {
		return h.ClusterBits - 4
	}
	return h.ClusterBits - 3
}

// l1EntriesFor returns how many L1 entries are needed to map size bytes.
func l1EntriesFor(size uint64, clusterBits, l2Bits uint32) uint64 {
	shift := clusterBits + l2Bits
	n := size >> shift
	if size&(uint64(1)<<shift-1) != 0 {
		n++
	}
	return n
}

// maxVirtualSize is the largest virtual size whose L1 table fits in QEMU's
// 32 MiB limit for the given geometry.
func maxVirtualSize(clusterBits, l2Bits uint32) uint64 {
	shift := clusterBits + l2Bits
	if shift >= 64-22 {
		return 1 << 63
	}
	v := uint64(maxL1Bytes/8) << shift
	if v > 1<<63 {
		v = 1 << 63
	}
	return v
}

// ValidateLayout checks the header's table locations against the file
// size and the sanity caps, among them the largest virtual size the
// geometry can address. It is what stops a hostile header from making
// paddock allocate or read huge tables.
func (h *Header) ValidateLayout(fileSize int64) error {
	cs := uint64(h.clusterSize())
	fsz := uint64(fileSize)
	if h.Size > maxVirtualSize(h.ClusterBits, h.l2Bits()) {
		return formatErr("virtual size %d is too large for %d-byte clusters", h.Size, cs)
	}
	need := l1EntriesFor(h.Size, h.ClusterBits, h.l2Bits())
	if uint64(h.L1Size) < need {
		return formatErr("L1 table has %d entries, virtual size %d needs %d", h.L1Size, h.Size, need)
	}
	if uint64(h.L1Size)*8 > maxL1Bytes {
		return formatErr("L1 table of %d entries exceeds the 32 MiB limit", h.L1Size)
	}
	if err := checkTable("L1 table", h.L1TableOffset, uint64(h.L1Size)*8, cs, fsz); err != nil {
		return err
	}
	if h.RefcountTableClusters == 0 {
		return formatErr("refcount table has no clusters")
	}
	if uint64(h.RefcountTableClusters)*cs > maxRefTableBytes {
		return formatErr("refcount table of %d clusters exceeds the 8 MiB limit", h.RefcountTableClusters)
	}
	if err := checkTable("refcount table", h.RefcountTableOffset, uint64(h.RefcountTableClusters)*cs, cs, fsz); err != nil {
		return err
	}
	if h.NbSnapshots > maxSnapshots {
		return formatErr("%d snapshots exceed the limit of %d", h.NbSnapshots, maxSnapshots)
	}
	if h.NbSnapshots > 0 {
		// Each entry is at least 40 bytes; the table is bounded below.
		if err := checkTable("snapshot table", h.SnapshotsOffset, uint64(h.NbSnapshots)*40, cs, fsz); err != nil {
			return err
		}
	}
	return nil
}

// checkTable verifies that a table of n bytes at off is cluster aligned
// and inside a file of fsz bytes.
func checkTable(what string, off, n, cs, fsz uint64) error {
	if n == 0 {
		return nil
	}
	if off == 0 || off%cs != 0 {
		return formatErr("%s offset %#x is not cluster aligned", what, off)
	}
	if off > fsz || n > fsz-off {
		return formatErr("%s at %#x (%d bytes) extends past the end of the file (%d bytes)", what, off, n, fsz)
	}
	return nil
}

// Extension is one header extension, kept verbatim.
type Extension struct {
	Type uint32
	Data []byte
}

// ParseExtensions decodes the header extensions stored in cluster0 from
// offset start until the end marker. end bounds the area (the backing file
// name, when present, follows the extensions). Extensions may not repeat,
// except unknown ones, which are preserved as they are.
func ParseExtensions(cluster0 []byte, start, end int) ([]Extension, error) {
	if end > len(cluster0) {
		end = len(cluster0)
	}
	var exts []Extension
	seen := map[uint32]bool{}
	off := start
	for {
		if off+8 > end {
			// QEMU tolerates a header cluster with no room for the end
			// marker only when the area is exactly full.
			if off == end {
				return exts, nil
			}
			return nil, formatErr("header extension at %#x overruns the header area", off)
		}
		typ := binary.BigEndian.Uint32(cluster0[off:])
		n := int(binary.BigEndian.Uint32(cluster0[off+4:]))
		if typ == extEnd {
			return exts, nil
		}
		if n < 0 || n > end-off-8 {
			return nil, formatErr("header extension %#08x at %#x has length %d beyond the header area", typ, off, n)
		}
		if seen[typ] && isKnownExtension(typ) {
			return nil, formatErr("header extension %#08x appears twice", typ)
		}
		seen[typ] = true
		exts = append(exts, Extension{Type: typ, Data: bytes.Clone(cluster0[off+8 : off+8+n])})
		off += 8 + (n+7)&^7
	}
}

func isKnownExtension(t uint32) bool {
	switch t {
	case extBackingFormat, extFeatureTable, extBitmaps, extCrypto, extDataFile:
		return true
	}
	return false
}

// marshalExtensions encodes exts followed by the end marker.
func marshalExtensions(exts []Extension) []byte {
	var b []byte
	for _, e := range exts {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[0:], e.Type)
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(e.Data)))
		b = append(b, hdr[:]...)
		b = append(b, e.Data...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	return append(b, make([]byte, 8)...)
}

// featureName is one entry of the feature name table extension.
type featureName struct {
	kind byte // 0 incompatible, 1 compatible, 2 autoclear
	bit  byte
	name string
}

// knownFeatures is what paddock writes in the feature name table, the
// same set QEMU writes, so that older tools can name the bits.
var knownFeatures = [...]featureName{
	{0, 0, "dirty bit"},
	{0, 1, "corrupt bit"},
	{0, 2, "external data file"},
	{0, 3, "compression type"},
	{0, 4, "extended L2 entries"},
	{1, 0, "lazy refcounts"},
	{2, 0, "bitmaps"},
	{2, 1, "raw external data"},
}

// marshalFeatureTable encodes knownFeatures as extension data.
func marshalFeatureTable() []byte {
	b := make([]byte, 48*len(knownFeatures))
	for i, f := range knownFeatures {
		b[i*48] = f.kind
		b[i*48+1] = f.bit
		copy(b[i*48+2:i*48+48], f.name)
	}
	return b
}

// parseFeatureTable decodes a feature name table; malformed tails are
// ignored (the table only serves error messages).
func parseFeatureTable(data []byte) []featureName {
	var out []featureName
	for i := 0; i+48 <= len(data); i += 48 {
		name := data[i+2 : i+48]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		out = append(out, featureName{kind: data[i], bit: data[i+1], name: string(name)})
	}
	return out
}

// bitmapsExt is the decoded bitmaps header extension.
type bitmapsExt struct {
	nbBitmaps uint32
	dirSize   uint64
	dirOffset uint64
}

// parseBitmapsExt decodes the bitmaps extension data.
func parseBitmapsExt(data []byte) (bitmapsExt, error) {
	if len(data) < 24 {
		return bitmapsExt{}, formatErr("bitmaps extension is %d bytes, need 24", len(data))
	}
	be := binary.BigEndian
	return bitmapsExt{
		nbBitmaps: be.Uint32(data[0:]),
		dirSize:   be.Uint64(data[8:]),
		dirOffset: be.Uint64(data[16:]),
	}, nil
}
