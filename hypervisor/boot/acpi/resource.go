package acpi

import "encoding/binary"

// Resource data descriptors (ACPI 6.5, section 6.4 "Resource Data Types for
// ACPI"). A resourceTemplate collects descriptors; bytes() closes it with an
// End Tag and its checksum, and aml.resourceTemplate wraps it in a Buffer,
// as ASL's ResourceTemplate() does.
type resourceTemplate struct{ b []byte }

// Small and large resource item tags.
const (
	tagIO            = 0x47 // small item 0x08, length 7
	tagEnd           = 0x79 // small item 0x0F, length 1
	tagMemory32Fixed = 0x86 // large item 0x06
	tagDWordAddress  = 0x87 // large item 0x07
	tagWordAddress   = 0x88 // large item 0x08
	tagQWordAddress  = 0x8A // large item 0x0A
	tagExtendedIRQ   = 0x89 // large item 0x09
)

// Address space resource types (byte 3 of an address space descriptor).
const (
	spaceMemory = 0
	spaceIO     = 1
	spaceBus    = 2
)

// General flags of an address space descriptor (byte 4).
const (
	flagConsumer = 1 << 0 // ResourceConsumer; clear = ResourceProducer
	flagMinFixed = 1 << 2 // _MIF
	flagMaxFixed = 1 << 3 // _MAF
	// bit 1 clear = PosDecode
)

// Type-specific flags (byte 5).
const (
	ioRangeEntire     = 3      // _RNG: ISA and non-ISA ranges
	memReadWrite      = 1 << 0 // _RW
	memCacheable      = 1 << 1 // _MEM = 1 (0 is NonCacheable)
	ioDecode16        = 1 << 0 // IO descriptor: 16-bit decode
	fixedMemReadWrite = 1 << 0 // Memory32Fixed: ReadWrite
)

// io appends IO(Decode16, min, max, align, length).
func (r *resourceTemplate) io(min, max uint16, align, length uint8) *resourceTemplate {
	r.b = append(r.b, tagIO, ioDecode16)
	r.b = binary.LittleEndian.AppendUint16(r.b, min)
	r.b = binary.LittleEndian.AppendUint16(r.b, max)
	r.b = append(r.b, align, length)
	return r
}

// memory32Fixed appends Memory32Fixed(ReadWrite, base, length).
func (r *resourceTemplate) memory32Fixed(base, length uint32) *resourceTemplate {
	r.b = append(r.b, tagMemory32Fixed)
	r.b = binary.LittleEndian.AppendUint16(r.b, 9)
	r.b = append(r.b, fixedMemReadWrite)
	r.b = binary.LittleEndian.AppendUint32(r.b, base)
	r.b = binary.LittleEndian.AppendUint32(r.b, length)
	return r
}

// Extended interrupt descriptor flags (ACPI 6.5, 6.4.3.6).
const (
	irqConsumer  = 1 << 0 // ResourceConsumer
	irqEdge      = 1 << 1 // Edge; clear = Level
	irqActiveLow = 1 << 2 // ActiveLow; clear = ActiveHigh
	// bit 3 clear = Exclusive, bit 4 clear = not wake capable
)

// interrupt appends Interrupt(ResourceConsumer, Level or Edge,
// ActiveHigh or ActiveLow, Exclusive){gsi}: an extended interrupt
// descriptor with one interrupt number.
func (r *resourceTemplate) interrupt(edge, activeLow bool, gsi uint32) *resourceTemplate {
	flags := byte(irqConsumer)
	if edge {
		flags |= irqEdge
	}
	if activeLow {
		flags |= irqActiveLow
	}
	r.b = append(r.b, tagExtendedIRQ)
	r.b = binary.LittleEndian.AppendUint16(r.b, 6) // flags, count, one DWord
	r.b = append(r.b, flags, 1)
	r.b = binary.LittleEndian.AppendUint32(r.b, gsi)
	return r
}

// address appends a Word, DWord or QWord address space descriptor (width
// 2, 4 or 8 bytes per field; callers pass only these) with MinFixed, MaxFixed, PosDecode,
// granularity 0 and translation 0 for [min, min+length).
func (r *resourceTemplate) address(width int, space, general, specific byte, min, length uint64) *resourceTemplate {
	tag := byte(tagQWordAddress)
	switch width {
	case 2:
		tag = tagWordAddress
	case 4:
		tag = tagDWordAddress
	}
	r.b = append(r.b, tag)
	r.b = binary.LittleEndian.AppendUint16(r.b, uint16(3+5*width))
	r.b = append(r.b, space, general|flagMinFixed|flagMaxFixed, specific)
	for _, v := range []uint64{0, min, min + length - 1, 0, length} {
		for i := 0; i < width; i++ {
			r.b = append(r.b, byte(v>>(8*i)))
		}
	}
	return r
}

// wordBusNumber appends WordBusNumber(ResourceProducer, MinFixed, MaxFixed,
// PosDecode, 0, start, end, 0, end-start+1).
func (r *resourceTemplate) wordBusNumber(start, end uint8) *resourceTemplate {
	return r.address(2, spaceBus, 0, 0, uint64(start), uint64(end)-uint64(start)+1)
}

// wordIO appends WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode,
// EntireRange, 0, base, base+size-1, 0, size).
func (r *resourceTemplate) wordIO(base, size uint16) *resourceTemplate {
	return r.address(2, spaceIO, 0, ioRangeEntire, uint64(base), uint64(size))
}

// dwordMemory appends DWordMemory(ResourceProducer, PosDecode, MinFixed,
// MaxFixed, NonCacheable, ReadWrite, 0, base, base+size-1, 0, size).
func (r *resourceTemplate) dwordMemory(base, size uint32) *resourceTemplate {
	return r.address(4, spaceMemory, 0, memReadWrite, uint64(base), uint64(size))
}

// qwordMemory appends QWordMemory(producer or consumer, PosDecode,
// MinFixed, MaxFixed, Cacheable, ReadWrite, 0, base, base+size-1, 0, size).
func (r *resourceTemplate) qwordMemory(consumer bool, base, size uint64) *resourceTemplate {
	general := byte(0)
	if consumer {
		general = flagConsumer
	}
	return r.address(8, spaceMemory, general, memReadWrite|memCacheable, base, size)
}

// bytes returns the descriptors closed by an End Tag whose checksum makes
// the whole template sum to zero.
func (r *resourceTemplate) bytes() []byte {
	out := append(append([]byte{}, r.b...), tagEnd)
	return append(out, -sum(out))
}

// resourceTemplate encodes ResourceTemplate(){...} for r: a Buffer.
func (a *aml) resourceTemplate(r *resourceTemplate) []byte { return a.buffer(r.bytes()) }

// sum adds bytes modulo 256.
func sum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return s
}
