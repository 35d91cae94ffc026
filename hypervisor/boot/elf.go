package boot

import (
	"bytes"
	"fmt"
	"io"
)

// ELF64 constants (System V gABI, elf.h) for the parts the loader reads.
const (
	elfClass64     = 2
	elfData2LSB    = 1
	elfMachineX86  = 62 // EM_X86_64
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfShdrSize    = 64
	ptLoad         = 1
	ptNote         = 4
	shtNote        = 7
	maxNoteBytes   = 4 << 20 // all note data read while looking for the PVH note
	xenNotePhys32  = 18      // XEN_ELFNOTE_PHYS32_ENTRY
	xenNoteName    = "Xen"
	elfTypeExec    = 2
	elfTypeDyn     = 3
	maxNoteSegment = 1 << 20 // one note segment or section
	maxLoadSegs    = 64      // PT_LOAD segments; a vmlinux has four or five
)

// elfProg is one ELF64 program header.
type elfProg struct {
	typ                       uint32
	off, paddr, filesz, memsz uint64
	align                     uint64
	index                     int
}

// elfFile is the part of an ELF64 file the PVH loader needs.
type elfFile struct {
	progs     []elfProg
	shoff     uint64
	shnum     int
	shentsize int
	size      uint64
}

// readELF parses and checks the ELF header and program headers.
func (l *loader) readELF(r io.ReaderAt, size int64) (*elfFile, error) {
	var hdr [elfHeaderSize]byte
	if err := l.readFull(r, hdr[:], 0, "ELF header"); err != nil {
		return nil, err
	}
	switch {
	case hdr[4] != elfClass64:
		return nil, l.errorf("ELF class %d is not ELF64; paddock boots 64-bit x86 kernels only", hdr[4])
	case hdr[5] != elfData2LSB:
		return nil, l.errorf("ELF file is not little-endian (EI_DATA=%d)", hdr[5])
	}
	typ, machine := le.Uint16(hdr[16:]), le.Uint16(hdr[18:])
	if machine != elfMachineX86 {
		return nil, l.errorf("ELF file is for machine %d, not x86-64 (%d)", machine, elfMachineX86)
	}
	if typ != elfTypeExec && typ != elfTypeDyn {
		return nil, l.errorf("ELF type %d is not an executable", typ)
	}
	f := &elfFile{
		size:      uint64(size),
		shoff:     le.Uint64(hdr[40:]),
		shentsize: int(le.Uint16(hdr[58:])),
		shnum:     int(le.Uint16(hdr[60:])),
	}
	phoff, phentsize, phnum := le.Uint64(hdr[32:]), int(le.Uint16(hdr[54:])), int(le.Uint16(hdr[56:]))
	if phnum == 0 {
		return nil, l.errorf("ELF file has no program headers")
	}
	if phentsize != elfPhdrSize {
		return nil, l.errorf("ELF program header size is %d, want %d", phentsize, elfPhdrSize)
	}
	if !f.within(phoff, uint64(phnum)*elfPhdrSize) {
		return nil, l.errorf("truncated: %d program headers at %#x run past the end of the file (%d bytes)", phnum, phoff, size)
	}
	ph := make([]byte, phnum*elfPhdrSize)
	if err := l.readFull(r, ph, int64(phoff), "program headers"); err != nil {
		return nil, err
	}
	for i := 0; i < phnum; i++ {
		b := ph[i*elfPhdrSize:]
		f.progs = append(f.progs, elfProg{
			index:  i,
			typ:    le.Uint32(b[0:]),
			off:    le.Uint64(b[8:]),
			paddr:  le.Uint64(b[24:]),
			filesz: le.Uint64(b[32:]),
			memsz:  le.Uint64(b[40:]),
			align:  le.Uint64(b[48:]),
		})
	}
	return f, nil
}

// within reports whether the file range [off, off+n) exists.
func (f *elfFile) within(off, n uint64) bool {
	return off <= f.size && n <= f.size-off
}

// noteArea is one PT_NOTE segment or SHT_NOTE section.
type noteArea struct {
	off, size, align uint64
	what             string
}

// noteFacts is what the loader learns from a kernel's ELF notes.
type noteFacts struct {
	entry uint64 // the PVH entry point, when pvh
	pvh   bool   // the Xen PHYS32_ENTRY note is there
	linux bool   // a note says the file is Linux (see isLinuxNote)
}

// readNotes looks for XEN_ELFNOTE_PHYS32_ENTRY in the PT_NOTE segments
// and then, if the segments do not have it, in the SHT_NOTE sections; on
// the way it notes whether the file says it is Linux.
func (l *loader) readNotes(r io.ReaderAt, f *elfFile) (noteFacts, error) {
	var areas []noteArea
	for _, p := range f.progs {
		if p.typ == ptNote {
			areas = append(areas, noteArea{p.off, p.filesz, p.align, fmt.Sprintf("note segment %d", p.index)})
		}
	}
	budget := uint64(maxNoteBytes)
	var facts noteFacts
	if err := l.scanNotes(r, f, areas, &budget, &facts); facts.pvh || err != nil {
		return facts, err
	}
	areas, err := l.noteSections(r, f)
	if err != nil {
		return facts, err
	}
	err = l.scanNotes(r, f, areas, &budget, &facts)
	return facts, err
}

// noteSections lists the SHT_NOTE sections, if the file has section headers.
func (l *loader) noteSections(r io.ReaderAt, f *elfFile) ([]noteArea, error) {
	if f.shoff == 0 || f.shnum == 0 {
		return nil, nil
	}
	if f.shentsize != elfShdrSize {
		return nil, l.errorf("ELF section header size is %d, want %d", f.shentsize, elfShdrSize)
	}
	if !f.within(f.shoff, uint64(f.shnum)*elfShdrSize) {
		return nil, l.errorf("truncated: %d section headers at %#x run past the end of the file (%d bytes)", f.shnum, f.shoff, f.size)
	}
	sh := make([]byte, f.shnum*elfShdrSize)
	if err := l.readFull(r, sh, int64(f.shoff), "section headers"); err != nil {
		return nil, err
	}
	var areas []noteArea
	for i := 0; i < f.shnum; i++ {
		b := sh[i*elfShdrSize:]
		if le.Uint32(b[4:]) == shtNote {
			areas = append(areas, noteArea{le.Uint64(b[24:]), le.Uint64(b[32:]), le.Uint64(b[48:]), fmt.Sprintf("note section %d", i)})
		}
	}
	return areas, nil
}

// scanNotes reads the note areas, charging what it reads to budget, and
// adds what their notes say to facts. It stops after the area that holds
// the PVH entry.
func (l *loader) scanNotes(r io.ReaderAt, f *elfFile, areas []noteArea, budget *uint64, facts *noteFacts) error {
	for _, a := range areas {
		if a.size == 0 {
			continue
		}
		if !f.within(a.off, a.size) {
			return l.errorf("truncated: %s at %#x (%d bytes) runs past the end of the file", a.what, a.off, a.size)
		}
		if a.size > maxNoteSegment || a.size > *budget {
			return l.errorf("%s is %d bytes; notes that large are not a kernel's", a.what, a.size)
		}
		*budget -= a.size
		buf := make([]byte, a.size)
		if err := l.readFull(r, buf, int64(a.off), a.what); err != nil {
			return err
		}
		if err := parseNotes(buf, a.align, facts); err != nil {
			return l.errorf("%s: %w", a.what, err)
		}
		if facts.pvh {
			return nil
		}
	}
	return nil
}

// Notes that say an ELF file is Linux: every vmlinux since 4.18 carries
// notes owned by "Linux" (the build salt, include/linux/build-salt.h), and
// one built for Xen or PVH says XEN_ELFNOTE_GUEST_OS "linux".
const (
	linuxNoteName  = "Linux"
	xenNoteGuestOS = 6 // XEN_ELFNOTE_GUEST_OS
)

// isLinuxNote reports whether a note says its file is Linux.
func isLinuxNote(name string, typ uint32, desc []byte) bool {
	return name == linuxNoteName ||
		name == xenNoteName && typ == xenNoteGuestOS && string(bytes.TrimRight(desc, "\x00")) == "linux"
}

// parseNotes walks the notes in buf and adds to facts the value of the Xen
// PHYS32_ENTRY note, which is 4 or 8 bytes, and whether a note says the
// file is Linux. Each note is namesz, descsz and type (4 bytes each), then
// the name and the descriptor, each starting at an offset from the note's
// start that is a multiple of the area's alignment (4, or 8 for 8-byte
// aligned note areas), as binutils reads them. Once the PVH entry is
// found, a malformed note after it ends the walk without an error.
func parseNotes(buf []byte, align uint64, facts *noteFacts) error {
	pad := uint64(4)
	if align == 8 {
		pad = 8
	}
	roundUp := func(n uint64) uint64 { return (n + pad - 1) &^ (pad - 1) }
	size := uint64(len(buf))
	for off := uint64(0); size-off >= 12; {
		namesz, descsz, typ := uint64(le.Uint32(buf[off:])), uint64(le.Uint32(buf[off+4:])), le.Uint32(buf[off+8:])
		rest := size - off
		descOff := roundUp(12 + namesz) // namesz < 2^32: no overflow
		if descOff > rest || descsz > rest-descOff {
			if facts.pvh {
				return nil
			}
			return fmt.Errorf("note at %#x (name %d bytes, desc %d bytes) runs past the end", off, namesz, descsz)
		}
		name := string(bytes.TrimRight(buf[off+12:off+12+namesz], "\x00"))
		desc := buf[off+descOff : off+descOff+descsz]
		switch {
		case name == xenNoteName && typ == xenNotePhys32 && !facts.pvh:
			switch descsz {
			case 4:
				facts.entry = uint64(le.Uint32(desc))
			case 8:
				facts.entry = le.Uint64(desc)
			default:
				return fmt.Errorf("the PVH entry note (Xen, PHYS32_ENTRY) has a %d-byte value, want 4 or 8", descsz)
			}
			facts.pvh = true
		case isLinuxNote(name, typ, desc):
			facts.linux = true
		}
		next := roundUp(descOff + descsz)
		if next > rest {
			break // the last note's padding may be cut off
		}
		off += next
	}
	return nil
}
