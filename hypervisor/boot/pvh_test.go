package boot

import (
	"bytes"
	"strings"
	"testing"
)

// loadELF writes the ELF built from spec (and an optional initrd) and loads it.
func loadELF(t *testing.T, spec elfSpec, e820 []E820Entry, mutate func(*Config)) (*fakeMem, *Entry, error) {
	t.Helper()
	cfg := Config{KernelPath: writeFile(t, "vmlinux", spec.build()), Cmdline: "console=hvc0", E820: e820, RSDP: 0xE0000}
	if mutate != nil {
		mutate(&cfg)
	}
	mem := newFakeMem(t, e820)
	mem.fill(0xcc)
	e, err := Load(mem, cfg)
	return mem, e, err
}

func TestPVHStartInfo(t *testing.T) {
	initrd := pattern(0x1801, 0x66)
	e820 := pcMap(256)
	mem, e, err := loadELF(t, defaultELF(), e820, func(c *Config) { c.InitrdPath = writeFile(t, "initrd", initrd) })
	if err != nil {
		t.Fatal(err)
	}
	if e.RBX != ParamsAddr {
		t.Fatalf("RBX = %#x, want the start_info address %#x", e.RBX, ParamsAddr)
	}
	si := mem.read(t, e.RBX, pvhStartInfoLen)
	modlist := le.Uint64(si[16:])
	memmap := le.Uint64(si[40:])
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"magic", uint64(le.Uint32(si[0:])), 0x336ec578},
		{"version", uint64(le.Uint32(si[4:])), 1},
		{"flags", uint64(le.Uint32(si[8:])), 0},
		{"nr_modules", uint64(le.Uint32(si[12:])), 1},
		{"cmdline_paddr", le.Uint64(si[24:]), e.CmdlineAddr},
		{"rsdp_paddr", le.Uint64(si[32:]), 0xE0000},
		{"memmap_entries", uint64(le.Uint32(si[48:])), uint64(len(e820))},
		{"reserved", uint64(le.Uint32(si[52:])), 0},
		{"modlist[0].paddr", mem.u64(t, modlist), e.InitrdAddr},
		{"modlist[0].size", mem.u64(t, modlist+8), uint64(len(initrd))},
		{"modlist[0].cmdline_paddr", mem.u64(t, modlist+16), 0},
		{"modlist[0].reserved", mem.u64(t, modlist+24), 0},
	} {
		if c.got != c.want {
			t.Errorf("start_info %s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	// The structures must not overlap each other or leave the params page.
	if modlist < ParamsAddr+pvhStartInfoLen || memmap < modlist+pvhModlistLen ||
		memmap+uint64(len(e820))*pvhMemmapLen > ParamsAddr+pageSize {
		t.Errorf("start_info at %#x, modlist at %#x, memmap at %#x overlap or leave the page", uint64(ParamsAddr), modlist, memmap)
	}
	for i, want := range e820 {
		b := mem.read(t, memmap+uint64(i)*24, 24)
		got := E820Entry{le.Uint64(b), le.Uint64(b[8:]), E820Type(le.Uint32(b[16:]))}
		if got != want || le.Uint32(b[20:]) != 0 {
			t.Errorf("memmap[%d] = %+v (reserved %#x), want %+v", i, got, le.Uint32(b[20:]), want)
		}
	}
	if got := mem.read(t, e.CmdlineAddr, 13); string(got) != "console=hvc0\x00" {
		t.Errorf("cmdline = %q", got)
	}
	if got := mem.read(t, e.InitrdAddr, uint64(len(initrd))); !bytes.Equal(got, initrd) {
		t.Errorf("initrd content differs in guest memory")
	}
}

func TestPVHEntryAndSegments(t *testing.T) {
	spec := defaultELF()
	mem, e, err := loadELF(t, spec, pcMap(128), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{
		Protocol: ProtocolPVH,
		RIP:      0x1000040, RSP: StackTop, RBX: ParamsAddr, RFLAGS: 0x2,
		CR0:     0x11, // PE (and ET); paging off
		GDTBase: GDTAddr, GDTLimit: 47, IDTBase: IDTAddr,
		CS: codeSegment(false), DS: dataSegment(), TR: tssSegment(),
		KernelStart: 0x1000000, KernelEnd: 0x1203000,
		CmdlineAddr: CmdlineAddr, ParamsAddr: ParamsAddr,
	}
	if *e != want {
		t.Errorf("entry\n got %+v\nwant %+v", *e, want)
	}
	if e.CS.L || !e.CS.DB || e.CS.Limit != 0xFFFFFFFF || e.CS.Base != 0 {
		t.Errorf("CS = %+v, want 32-bit flat", e.CS)
	}
	if e.Protocol.String() != "PVH" {
		t.Errorf("Protocol.String() = %q", e.Protocol)
	}
	if s := e.String(); s != "PVH: entry 0x1000040, kernel 0x1000000-0x1202fff, cmdline at 0x20000, params at 0x7000" {
		t.Errorf("Entry.String() = %q", s)
	}
	checkGDT(t, mem, e)
	for _, s := range spec.segs {
		if got := mem.read(t, s.paddr, uint64(len(s.data))); !bytes.Equal(got, s.data) {
			t.Errorf("segment at %#x differs in guest memory", s.paddr)
		}
		if s.memsz > uint64(len(s.data)) {
			if bss := mem.read(t, s.paddr+uint64(len(s.data)), s.memsz-uint64(len(s.data))); !allBytes(bss, 0) {
				t.Errorf("bss of the segment at %#x is not zeroed", s.paddr)
			}
		}
	}
	si := mem.read(t, ParamsAddr, pvhStartInfoLen)
	if n, ml := le.Uint32(si[12:]), le.Uint64(si[16:]); n != 0 || ml != 0 {
		t.Errorf("no initrd, but nr_modules = %d, modlist_paddr = %#x", n, ml)
	}
}

func TestPVHNoteForms(t *testing.T) {
	entry4 := elfNote{name: xenNoteName, typ: xenNotePhys32, desc: []byte{0x40, 0x00, 0x00, 0x01}}
	for _, c := range []struct {
		name string
		mod  func(*elfSpec)
	}{
		{"8-byte value in a PT_NOTE segment", nil},
		{"4-byte value", func(s *elfSpec) { s.notes = []elfNote{entry4} }},
		{"8-byte aligned notes", func(s *elfSpec) { s.noteAlign = 8 }},
		{"only in an SHT_NOTE section", func(s *elfSpec) { s.noteSection = true }},
		{"after other Xen notes", func(s *elfSpec) {
			s.notes = append([]elfNote{{name: xenNoteName, typ: 2, desc: []byte("linux\x00")}}, s.notes...)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := defaultELF()
			if c.mod != nil {
				c.mod(&spec)
			}
			_, e, err := loadELF(t, spec, pcMap(128), nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.RIP != 0x1000040 {
				t.Errorf("RIP = %#x, want the note's entry 0x1000040", e.RIP)
			}
		})
	}
}

func TestPVHErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		mod     func(*elfSpec)
		img     func([]byte) []byte
		e820    []E820Entry
		cmdline string
		wantErr string
	}{
		{name: "no PVH note", mod: func(s *elfSpec) { s.notes = s.notes[:2] },
			wantErr: "no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); boot the kernel's bzImage instead"},
		{name: "no notes at all", mod: func(s *elfSpec) { s.notes = nil }, wantErr: "no PVH entry note"},
		{name: "ELF32", mod: func(s *elfSpec) { s.class = 1 }, wantErr: "ELF class 1 is not ELF64"},
		{name: "big-endian", mod: func(s *elfSpec) { s.data = 2 }, wantErr: "not little-endian"},
		{name: "aarch64", mod: func(s *elfSpec) { s.machine = 183 }, wantErr: "machine 183, not x86-64"},
		{name: "entry outside the segments", mod: func(s *elfSpec) { s.notes = []elfNote{pvhNote(0x5000000)} },
			wantErr: "PVH entry point 0x5000000 is not inside a loaded segment"},
		{name: "entry in the bss", mod: func(s *elfSpec) { s.notes = []elfNote{pvhNote(0x1201000)} },
			wantErr: "not inside a loaded segment"},
		{name: "entry above 4 GiB", mod: func(s *elfSpec) {
			s.segs = append(s.segs, elfSeg{paddr: fourGiB + mib, data: pattern(0x100, 1)})
			s.notes = []elfNote{pvhNote(fourGiB + mib)}
		}, e820: pcMap(6 * 1024), wantErr: "below 4 GiB"},
		{name: "odd note value size", mod: func(s *elfSpec) {
			s.notes = []elfNote{{name: xenNoteName, typ: xenNotePhys32, desc: []byte{1, 2}}}
		}, wantErr: "2-byte value, want 4 or 8"},
		{name: "segment outside RAM", mod: func(s *elfSpec) { s.segs[1].paddr = 0x9000000 }, e820: pcMap(128),
			wantErr: "segment 1 (0x9000000-0x9002fff, 12 KiB"},
		{name: "segment in the first MiB", mod: func(s *elfSpec) { s.segs[1].paddr = 0x7000 },
			wantErr: "segment 1 at 0x7000 overlaps the first MiB"},
		{name: "segment over the ACPI area", mod: func(s *elfSpec) { s.segs[1].paddr = 0xF0000 },
			wantErr: "overlaps the first MiB"},
		{name: "segment wraps", mod: func(s *elfSpec) {
			s.segs[1].paddr = ^uint64(0) - 0x100
		}, wantErr: "wraps around"},
		{name: "filesz > memsz", img: func(b []byte) []byte {
			le.PutUint64(b[elfHeaderSize+elfPhdrSize+40:], 0x10) // segment 1's p_memsz
			return b
		}, wantErr: "segment 1: file size 0x800 exceeds memory size 0x10"},
		{name: "segment past EOF", img: func(b []byte) []byte {
			le.PutUint64(b[elfHeaderSize+8:], 1<<40) // segment 0's p_offset
			return b
		}, wantErr: "truncated: segment 0"},
		{name: "file cut short", img: func(b []byte) []byte { return b[:len(b)-0x100] },
			wantErr: "truncated: segment 1"},
		{name: "cut in the header", img: func(b []byte) []byte { return b[:40] }, wantErr: "truncated: ELF header"},
		{name: "program headers past EOF", img: func(b []byte) []byte { le.PutUint64(b[32:], 1<<62); return b },
			wantErr: "program headers at 0x4000000000000000 run past the end of the file"},
		{name: "bad phentsize", img: func(b []byte) []byte { le.PutUint16(b[54:], 32); return b },
			wantErr: "program header size is 32, want 56"},
		{name: "no program headers", img: func(b []byte) []byte { le.PutUint16(b[56:], 0); return b },
			wantErr: "no program headers"},
		{name: "note runs past its segment", img: func(b []byte) []byte {
			// The first note (GNU build id) claims a huge descriptor.
			off := le.Uint64(b[elfHeaderSize+2*elfPhdrSize+8:])
			le.PutUint32(b[off+4:], 0x7fffffff)
			return b
		}, wantErr: "note segment 2: note at 0x0 (name 4 bytes, desc 2147483647 bytes) runs past the end"},
		{name: "note segment past EOF", img: func(b []byte) []byte {
			le.PutUint64(b[elfHeaderSize+2*elfPhdrSize+32:], 1<<40) // p_filesz
			return b
		}, wantErr: "truncated: note segment 2"},
		{name: "too many segments", mod: func(s *elfSpec) {
			for i := 0; i < maxLoadSegs; i++ {
				s.segs = append(s.segs, elfSeg{paddr: 0x2000000 + uint64(i)*pageSize, data: []byte{1}})
			}
		}, wantErr: "more than 64 loadable segments"},
		{name: "no loadable segments", mod: func(s *elfSpec) { s.segs = nil; s.notes = []elfNote{pvhNote(0x1000000)} },
			wantErr: "no loadable segments"},
		{name: "cmdline over COMMAND_LINE_SIZE", cmdline: strings.Repeat("c", 2048),
			wantErr: "cmdline is 2048 bytes; kernel"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := defaultELF()
			if c.mod != nil {
				c.mod(&spec)
			}
			expectLoadError(t, spec.build(), c.img, c.e820, c.cmdline, c.wantErr, true)
		})
	}
}

func TestParseNotes(t *testing.T) {
	note := func(name string, namesz, descsz, typ uint32, desc []byte, pad int) []byte {
		var b []byte
		b = le.AppendUint32(b, namesz)
		b = le.AppendUint32(b, descsz)
		b = le.AppendUint32(b, typ)
		b = append(b, name...)
		for len(b)%pad != 0 {
			b = append(b, 0)
		}
		b = append(b, desc...)
		for len(b)%pad != 0 {
			b = append(b, 0)
		}
		return b
	}
	for _, c := range []struct {
		name    string
		buf     []byte
		align   uint64
		entry   uint64
		found   bool
		wantErr bool
	}{
		{"4-byte", note("Xen\x00", 4, 4, 18, []byte{0x78, 0x56, 0x34, 0x12}, 4), 4, 0x12345678, true, false},
		{"8-byte", note("Xen\x00", 4, 8, 18, []byte{1, 0, 0, 1, 0, 0, 0, 0}, 4), 4, 0x01000001, true, false},
		{"other type", note("Xen\x00", 4, 4, 17, []byte{1, 2, 3, 4}, 4), 4, 0, false, false},
		{"other name", note("Xe\x00", 3, 4, 18, []byte{1, 2, 3, 4}, 4), 4, 0, false, false},
		{"aligned to 8", note("Xen\x00", 4, 4, 18, []byte{4, 3, 2, 1}, 8), 8, 0x01020304, true, false},
		{"last padding cut off", note("GNU\x00", 4, 2, 1, []byte{1, 2}, 4)[:18], 4, 0, false, false},
		{"name past end", note("Xen\x00", 400, 4, 18, nil, 4), 4, 0, false, true},
		{"desc past end", note("Xen\x00", 4, 0xffffffff, 18, nil, 4), 4, 0, false, true},
		{"short header", []byte{1, 2, 3}, 4, 0, false, false},
	} {
		var facts noteFacts
		err := parseNotes(c.buf, c.align, &facts)
		entry, found := facts.entry, facts.pvh
		if entry != c.entry || found != c.found || (err != nil) != c.wantErr {
			t.Errorf("%s: got %#x, %v, %v; want %#x, %v, error %v", c.name, entry, found, err, c.entry, c.found, c.wantErr)
		}
	}
}
