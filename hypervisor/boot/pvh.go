package boot

import (
	"fmt"
	"io"
)

// hvm_start_info and friends (xen/include/public/arch-x86/hvm/start_info.h).
const (
	pvhMagic        = 0x336ec578 // XEN_HVM_START_MAGIC_VALUE
	pvhVersion      = 1          // adds memmap_paddr and memmap_entries
	pvhStartInfoLen = 56
	pvhModlistLen   = 32 // struct hvm_modlist_entry
	pvhMemmapLen    = 24 // struct hvm_memmap_table_entry

	siMagic         = 0
	siVersion       = 4
	siFlags         = 8
	siNrModules     = 12
	siModlistPaddr  = 16
	siCmdlinePaddr  = 24
	siRSDPPaddr     = 32
	siMemmapPaddr   = 40
	siMemmapEntries = 48

	// pvhCmdlineMax is Linux's COMMAND_LINE_SIZE on x86 minus the NUL: PVH
	// carries no limit of its own and Linux silently truncates longer lines.
	pvhCmdlineMax = 2047
)

// loadPVH boots an ELF vmlinux through its PVH entry point.
func (l *loader) loadPVH(r io.ReaderAt, size int64) (*Entry, error) {
	f, notes, err := l.readPVH(r, size)
	if err != nil {
		return nil, err
	}
	entry := notes.entry
	kernel, err := l.checkSegments(f, entry)
	if err != nil {
		return nil, err
	}
	if err := l.writeCmdline(pvhCmdlineMax, "Linux's COMMAND_LINE_SIZE for PVH"); err != nil {
		return nil, err
	}
	for _, p := range f.progs {
		if p.typ != ptLoad || p.memsz == 0 {
			continue
		}
		dst, err := l.slice(p.paddr, p.memsz, fmt.Sprintf("kernel segment %d", p.index))
		if err != nil {
			return nil, err
		}
		if err := l.readFull(r, dst[:p.filesz], int64(p.off), fmt.Sprintf("segment %d", p.index)); err != nil {
			return nil, err
		}
		clear(dst[p.filesz:])
	}
	initrdAddr, initrdSize, err := l.loadInitrd(fourGiB, kernel)
	if err != nil {
		return nil, err
	}
	if err := l.writeStartInfo(initrdAddr, initrdSize); err != nil {
		return nil, err
	}
	e := &Entry{
		Protocol: ProtocolPVH,
		RIP:      entry,
		RSP:      StackTop,
		RBX:      ParamsAddr,
		RFLAGS:   rflags1,
		CR0:      cr0PE | cr0ET,

		KernelStart: kernel.start,
		KernelEnd:   kernel.end,
		InitrdAddr:  initrdAddr,
		InitrdSize:  initrdSize,
		CmdlineAddr: CmdlineAddr,
		ParamsAddr:  ParamsAddr,
	}
	if err := l.writeGDT(e, false); err != nil {
		return nil, err
	}
	return e, nil
}

// readPVH reads an ELF file's headers and notes and checks that it has a
// PVH entry point.
func (l *loader) readPVH(r io.ReaderAt, size int64) (*elfFile, noteFacts, error) {
	f, err := l.readELF(r, size)
	if err != nil {
		return nil, noteFacts{}, err
	}
	notes, err := l.readNotes(r, f)
	if err != nil {
		return nil, noteFacts{}, err
	}
	if !notes.pvh {
		return nil, noteFacts{}, l.errorf("ELF file has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); boot the kernel's bzImage instead, or build it with CONFIG_PVH=y")
	}
	return f, notes, nil
}

// checkSegments validates the PT_LOAD segments against the file and guest
// RAM, checks that the entry point lies in one of them, and returns the
// range they cover.
func (l *loader) checkSegments(f *elfFile, entry uint64) (span, error) {
	kernel := span{start: ^uint64(0)}
	entryLoaded := false
	loads := 0
	for _, p := range f.progs {
		if p.typ != ptLoad || p.memsz == 0 {
			continue
		}
		if loads++; loads > maxLoadSegs {
			return span{}, l.errorf("ELF file has more than %d loadable segments; a kernel has a handful", maxLoadSegs)
		}
		seg := span{p.paddr, p.paddr + p.memsz}
		switch {
		case p.filesz > p.memsz:
			return span{}, l.errorf("segment %d: file size %#x exceeds memory size %#x", p.index, p.filesz, p.memsz)
		case !f.within(p.off, p.filesz):
			return span{}, l.errorf("truncated: segment %d (%d bytes at file offset %#x) runs past the end of the file (%d bytes)",
				p.index, p.filesz, p.off, f.size)
		case seg.end < seg.start:
			return span{}, l.errorf("segment %d: p_paddr %#x + p_memsz %#x wraps around", p.index, p.paddr, p.memsz)
		case seg.start < lowMemoryEnd:
			return span{}, l.errorf("segment %d at %#x overlaps the first MiB, which holds the loader's structures and ACPI tables", p.index, p.paddr)
		case !l.ram.contains(seg):
			return span{}, l.errorf("segment %d (%#x-%#x, %s) is not inside guest RAM (%s); give the VM more memory or check p_paddr",
				p.index, seg.start, seg.end-1, mibString(p.memsz), mibString(l.ram.total()))
		}
		kernel.start, kernel.end = min(kernel.start, seg.start), max(kernel.end, seg.end)
		if entry >= seg.start && entry < p.paddr+p.filesz {
			entryLoaded = true
		}
	}
	if kernel.end == 0 {
		return span{}, l.errorf("ELF file has no loadable segments")
	}
	if entry >= fourGiB || !entryLoaded {
		return span{}, l.errorf("PVH entry point %#x is not inside a loaded segment below 4 GiB", entry)
	}
	return kernel, nil
}

// writeStartInfo builds hvm_start_info (version 1) at ParamsAddr, the
// module list with the initrd, and the memory map.
func (l *loader) writeStartInfo(initrdAddr, initrdSize uint64) error {
	n := uint64(len(l.cfg.E820))
	b, err := l.zeroed(ParamsAddr, pvhMemmapAddr-ParamsAddr+n*pvhMemmapLen, "hvm_start_info")
	if err != nil {
		return err
	}
	le.PutUint32(b[siMagic:], pvhMagic)
	le.PutUint32(b[siVersion:], pvhVersion)
	le.PutUint64(b[siCmdlinePaddr:], CmdlineAddr)
	le.PutUint64(b[siRSDPPaddr:], l.cfg.RSDP)
	le.PutUint64(b[siMemmapPaddr:], pvhMemmapAddr)
	le.PutUint32(b[siMemmapEntries:], uint32(n))
	if initrdSize > 0 {
		le.PutUint32(b[siNrModules:], 1)
		le.PutUint64(b[siModlistPaddr:], pvhModlistAddr)
		m := b[pvhModlistAddr-ParamsAddr:]
		le.PutUint64(m[0:], initrdAddr)
		le.PutUint64(m[8:], initrdSize)
		// cmdline_paddr and reserved stay 0: the initrd has no command line.
	}
	mm := b[pvhMemmapAddr-ParamsAddr:]
	for i, e := range l.cfg.E820 {
		putE820(mm[i*pvhMemmapLen:], e) // the last 4 bytes (reserved) stay 0
	}
	return nil
}
