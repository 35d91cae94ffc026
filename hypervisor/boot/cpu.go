package boot

import "encoding/binary"

var le = binary.LittleEndian

// GDT selectors. The boot protocols name 0x10 (__BOOT_CS) and 0x18
// (__BOOT_DS); the TSS follows them.
const (
	SelectorCode = 0x10
	SelectorData = 0x18
	SelectorTSS  = 0x20
)

// Descriptor types (the 4-bit type field), all with the accessed bit set so
// that the CPU never needs to write the GDT.
const (
	typeCodeExecReadAccessed = 0xB
	typeDataReadWriteAccess  = 0x3
	typeTSSBusy              = 0xB // 32-bit (and, in long mode, 64-bit) busy TSS
)

// Page-table entry bits.
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7 // a 2 MiB page in a page directory
)

// codeSegment is the flat 4 GiB boot code segment: 64-bit when long is
// set (L=1, D=0), 32-bit otherwise (L=0, D=1).
func codeSegment(long bool) Segment {
	return Segment{
		Limit: 0xFFFFFFFF, Selector: SelectorCode, Type: typeCodeExecReadAccessed,
		Present: true, S: true, L: long, DB: !long, G: true,
	}
}

// dataSegment is the flat 4 GiB boot data segment.
func dataSegment() Segment {
	return Segment{
		Limit: 0xFFFFFFFF, Selector: SelectorData, Type: typeDataReadWriteAccess,
		Present: true, S: true, DB: true, G: true,
	}
}

// tssSegment is the boot task register: a busy TSS at 0 with the minimal
// 0x67-byte limit. VM entry needs a usable TR; nothing ever switches to it.
func tssSegment() Segment {
	return Segment{Limit: 0x67, Selector: SelectorTSS, Type: typeTSSBusy, Present: true}
}

// descriptor encodes s as an 8-byte segment descriptor (Intel SDM vol. 3,
// 3.4.5). For a system segment in long mode the base's upper half goes in
// the following 8 bytes, which systemHigh returns.
func (s Segment) descriptor() uint64 {
	limit := s.Limit
	if s.G {
		limit >>= 12
	}
	d := uint64(limit&0xFFFF) |
		(s.Base&0xFFFFFF)<<16 |
		uint64(s.Type&0xF)<<40 |
		uint64((limit>>16)&0xF)<<48 |
		(s.Base>>24&0xFF)<<56
	d |= bit(s.S, 44) | bit(s.DPL, 45) | bit(s.DPL, 46) | bit(s.Present, 47) |
		bit(s.L, 53) | bit(s.DB, 54) | bit(s.G, 55)
	return d
}

// systemHigh is the second half of a 16-byte long-mode system descriptor.
func (s Segment) systemHigh() uint64 { return s.Base >> 32 }

func bit(b bool, n uint) uint64 {
	if b {
		return 1 << n
	}
	return 0
}

// writeGDT writes the boot GDT and the empty IDT and fills the descriptor
// table registers and segments of e. long selects a 64-bit code segment.
func (l *loader) writeGDT(e *Entry, long bool) error {
	e.CS, e.DS, e.TR = codeSegment(long), dataSegment(), tssSegment()
	g, err := l.zeroed(GDTAddr, GDTSize, "GDT")
	if err != nil {
		return err
	}
	le.PutUint64(g[SelectorCode:], e.CS.descriptor())
	le.PutUint64(g[SelectorData:], e.DS.descriptor())
	le.PutUint64(g[SelectorTSS:], e.TR.descriptor())
	le.PutUint64(g[SelectorTSS+8:], e.TR.systemHigh())
	if _, err := l.zeroed(IDTAddr, 16, "IDT"); err != nil {
		return err
	}
	e.GDTBase, e.GDTLimit = GDTAddr, GDTSize-1
	e.IDTBase, e.IDTLimit = IDTAddr, 0
	return nil
}

// writePageTables identity-maps the first 4 GiB with 2 MiB pages:
// PML4[0] -> PDPT, PDPT[i] -> PD i, PD i[j] -> i GiB + j*2 MiB.
func (l *loader) writePageTables() error {
	pml4, err := l.zeroed(PML4Addr, pageSize, "PML4")
	if err != nil {
		return err
	}
	pdpt, err := l.zeroed(PDPTAddr, pageSize, "PDPT")
	if err != nil {
		return err
	}
	pds, err := l.zeroed(PDAddr, 4*pageSize, "page directories")
	if err != nil {
		return err
	}
	le.PutUint64(pml4, PDPTAddr|ptePresent|pteWritable)
	for i := uint64(0); i < 4; i++ {
		le.PutUint64(pdpt[8*i:], (PDAddr+i*pageSize)|ptePresent|pteWritable)
	}
	for j := uint64(0); j < 4*512; j++ {
		le.PutUint64(pds[8*j:], (j<<21)|ptePresent|pteWritable|ptePageSize)
	}
	return nil
}
