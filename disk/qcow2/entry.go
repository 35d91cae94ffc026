package qcow2

import "encoding/binary"

// This file holds the pure bit helpers for L1, L2 and refcount entries.
// Nothing here does I/O.

// Kind classifies how a guest byte range is stored in one image layer.
type Kind uint8

const (
	// KindUnallocated: not stored in this layer; reads fall through to the
	// backing file, or read as zeros without one.
	KindUnallocated Kind = iota
	// KindZero: reads as zeros, hiding any backing file.
	KindZero
	// KindData: stored uncompressed at a host offset.
	KindData
	// KindCompressed: stored as a compressed cluster.
	KindCompressed
)

func (k Kind) String() string {
	switch k {
	case KindUnallocated:
		return "unallocated"
	case KindZero:
		return "zero"
	case KindData:
		return "data"
	case KindCompressed:
		return "compressed"
	}
	return "invalid"
}

// l2Entry is one L2 entry; bitmap is the subcluster bitmap of an extended
// entry (always 0 for standard entries).
type l2Entry struct {
	e      uint64
	bitmap uint64
}

// geometry holds the parameters that decode table entries. It is derived
// from the header once and never changes for an open image.
type geometry struct {
	clusterBits uint32
	l2Bits      uint32
	extL2       bool
	cs          int64  // cluster size
	units       int    // allocation units per cluster: 32 subclusters, or 1
	unitSize    int64  // cs / units
	unitBits    uint32 // log2(unitSize)
	l2Entries   int64  // entries per L2 table
	entrySize   int64  // 8 or 16 bytes
	csizeShift  uint32 // compressed descriptor: position of the sector count
	csizeMask   uint64
	coffMask    uint64
	refOrder    uint32
	refPerBlock int64 // refcount entries per refcount block
	refBits     uint32
}

// newGeometry derives the decoding parameters from a validated header.
func newGeometry(h *Header) geometry {
	g := geometry{
		clusterBits: h.ClusterBits,
		l2Bits:      h.l2Bits(),
		extL2:       h.extendedL2(),
		cs:          h.clusterSize(),
		entrySize:   h.l2EntrySize(),
		refOrder:    h.RefcountOrder,
	}
	g.units = 1
	g.unitBits = g.clusterBits
	if g.extL2 {
		g.units = 32
		g.unitBits = g.clusterBits - 5
	}
	g.unitSize = int64(1) << g.unitBits
	g.l2Entries = int64(1) << g.l2Bits
	g.csizeShift = 62 - (g.clusterBits - 8)
	g.csizeMask = (uint64(1) << (g.clusterBits - 8)) - 1
	g.coffMask = (uint64(1) << g.csizeShift) - 1
	g.refBits = uint32(1) << h.RefcountOrder
	g.refPerBlock = g.cs * 8 / int64(g.refBits)
	return g
}

// maxRefcount is the largest refcount the image's width can store.
func (g *geometry) maxRefcount() uint64 {
	if g.refBits == 64 {
		return ^uint64(0)
	}
	return uint64(1)<<g.refBits - 1
}

// l1Index and l2Index locate a guest offset in the two-level table.
func (g *geometry) l1Index(guest int64) int64 { return guest >> (g.clusterBits + g.l2Bits) }
func (g *geometry) l2Index(guest int64) int64 { return (guest >> g.clusterBits) & (g.l2Entries - 1) }

// readL2Entry decodes entry i of an L2 table held in buf.
func (g *geometry) readL2Entry(buf []byte, i int64) l2Entry {
	o := i * g.entrySize
	le := l2Entry{e: binary.BigEndian.Uint64(buf[o:])}
	if g.extL2 {
		le.bitmap = binary.BigEndian.Uint64(buf[o+8:])
	}
	return le
}

// writeL2Entry encodes entry i of an L2 table held in buf.
func (g *geometry) writeL2Entry(buf []byte, i int64, le l2Entry) {
	o := i * g.entrySize
	binary.BigEndian.PutUint64(buf[o:], le.e)
	if g.extL2 {
		binary.BigEndian.PutUint64(buf[o+8:], le.bitmap)
	}
}

// isCompressed reports whether an L2 entry describes a compressed cluster.
func isCompressed(e uint64) bool { return e&oflagCompressed != 0 }

// hostCluster returns the host cluster offset of a standard L2 entry.
func hostCluster(e uint64) int64 { return int64(e & l2OffsetMask) }

// compressedRange returns where the compressed bytes of an entry live:
// their host offset and how many bytes to read. The final sector may hold
// the start of another compressed cluster; decompression stops once a
// full cluster is produced.
func (g *geometry) compressedRange(e uint64) (off, n int64) {
	coff := e & g.coffMask
	sectors := (e>>g.csizeShift)&g.csizeMask + 1
	return int64(coff), int64(sectors*512 - coff&511)
}

// compressedEntry encodes a compressed cluster descriptor for n bytes of
// compressed data at host offset off. Precondition: n > 0 and the sector
// count fits (n <= 2*cs - 512 suffices).
func (g *geometry) compressedEntry(off, n int64) uint64 {
	extra := uint64((off+n-1)>>9 - off>>9)
	return oflagCompressed | extra<<g.csizeShift | uint64(off)
}

// compressedClusters returns the first host cluster and the number of host
// clusters touched by a compressed entry; each holds one reference for it.
func (g *geometry) compressedClusters(e uint64) (first, count int64) {
	off, n := g.compressedRange(e)
	first = off >> g.clusterBits
	last := (off + n - 1) >> g.clusterBits
	return first, last - first + 1
}

// Subcluster bitmap helpers (extended L2 entries).

func allocBits(bitmap uint64) uint32 { return uint32(bitmap) }
func zeroBits(bitmap uint64) uint32  { return uint32(bitmap >> 32) }
func makeBitmap(alloc, zero uint32) uint64 {
	return uint64(alloc) | uint64(zero)<<32
}

// unitMask returns a mask of units [first, first+n).
func unitMask(first, n int) uint32 {
	if n >= 32 {
		return ^uint32(0) << uint(first)
	}
	return ((uint32(1) << uint(n)) - 1) << uint(first)
}

// validateL2 reports a malformed L2 entry. cluster is the guest cluster
// index, used only in the message.
func (g *geometry) validateL2(le l2Entry, cluster int64) error {
	if isCompressed(le.e) {
		off, _ := g.compressedRange(le.e)
		if off>>56 != 0 {
			return formatErr("compressed cluster %d has host offset %#x beyond 64 PB", cluster, off)
		}
		return nil
	}
	host := le.e & l2OffsetMask
	if host%uint64(g.cs) != 0 {
		return formatErr("L2 entry %#016x of guest cluster %d is not cluster aligned", le.e, cluster)
	}
	if !g.extL2 {
		return nil
	}
	a, z := allocBits(le.bitmap), zeroBits(le.bitmap)
	if a&z != 0 {
		return formatErr("guest cluster %d has subclusters both allocated and zero (bitmap %#016x)", cluster, le.bitmap)
	}
	if host == 0 && a != 0 {
		return formatErr("guest cluster %d has allocated subclusters but no host cluster", cluster)
	}
	return nil
}

// unitKind returns the kind of allocation unit u (a subcluster, or the
// whole cluster without extended L2) of a validated entry.
func (g *geometry) unitKind(le l2Entry, u int) Kind {
	if isCompressed(le.e) {
		return KindCompressed
	}
	if !g.extL2 {
		switch {
		case le.e&oflagZero != 0:
			return KindZero
		case le.e&l2OffsetMask != 0:
			return KindData
		}
		return KindUnallocated
	}
	switch {
	case allocBits(le.bitmap)&(1<<uint(u)) != 0:
		return KindData
	case zeroBits(le.bitmap)&(1<<uint(u)) != 0:
		return KindZero
	}
	return KindUnallocated
}

// unitRun returns the kind of unit first and how many consecutive units,
// at most max, share it.
func (g *geometry) unitRun(le l2Entry, first, max int) (Kind, int) {
	k := g.unitKind(le, first)
	n := 1
	for first+n < g.units && n < max && g.unitKind(le, first+n) == k {
		n++
	}
	return k, n
}

// refcountGet returns entry i of a refcount block of the given order.
func refcountGet(block []byte, i int64, order uint32) uint64 {
	switch order {
	case 0, 1, 2:
		bits := uint(1) << order
		perByte := int64(8 >> order)
		shift := uint(i%perByte) * bits
		return uint64(block[i/perByte]>>shift) & (1<<bits - 1)
	case 3:
		return uint64(block[i])
	case 4:
		return uint64(binary.BigEndian.Uint16(block[i*2:]))
	case 5:
		return uint64(binary.BigEndian.Uint32(block[i*4:]))
	default:
		return binary.BigEndian.Uint64(block[i*8:])
	}
}

// refcountSet stores v into entry i of a refcount block. Precondition: v
// fits the width.
func refcountSet(block []byte, i int64, order uint32, v uint64) {
	switch order {
	case 0, 1, 2:
		bits := uint(1) << order
		perByte := int64(8 >> order)
		shift := uint(i%perByte) * bits
		mask := byte(1<<bits-1) << shift
		block[i/perByte] = block[i/perByte]&^mask | byte(v<<shift)&mask
	case 3:
		block[i] = byte(v)
	case 4:
		binary.BigEndian.PutUint16(block[i*2:], uint16(v))
	case 5:
		binary.BigEndian.PutUint32(block[i*4:], uint32(v))
	default:
		binary.BigEndian.PutUint64(block[i*8:], v)
	}
}

// alignUp rounds v up to a multiple of a (a power of two).
func alignUp(v, a int64) int64 { return (v + a - 1) &^ (a - 1) }

// alignDown rounds v down to a multiple of a (a power of two).
func alignDown(v, a int64) int64 { return v &^ (a - 1) }
