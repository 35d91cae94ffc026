package boot

import (
	"bytes"
	"strings"
	"testing"
)

// loadBz builds img from spec, writes it and an optional initrd to files
// and loads them into a fresh guest with e820.
func loadBz(t *testing.T, spec bzSpec, e820 []E820Entry, mutate func(*Config)) (*fakeMem, *Entry, []byte, error) {
	t.Helper()
	img := spec.build()
	cfg := Config{KernelPath: writeFile(t, "bzImage", img), Cmdline: "console=ttyS0 root=/dev/vda", E820: e820, RSDP: 0xE0000}
	if mutate != nil {
		mutate(&cfg)
	}
	mem := newFakeMem(t, e820)
	mem.fill(0xcc) // stale contents: the loader must clear what it relies on
	e, err := Load(mem, cfg)
	return mem, e, img, err
}

func TestBzImageZeroPage(t *testing.T) {
	initrd := pattern(0x2345, 0x77)
	e820 := pcMap(256)
	spec := bzDefaults()
	mem, e, img, err := loadBz(t, spec, e820, func(c *Config) { c.InitrdPath = writeFile(t, "initrd", initrd) })
	if err != nil {
		t.Fatal(err)
	}
	zp := mem.read(t, ParamsAddr, bpSize)
	u8 := func(off int) uint64 { return uint64(zp[off]) }
	u16 := func(off int) uint64 { return uint64(le.Uint16(zp[off:])) }
	u32 := func(off int) uint64 { return uint64(le.Uint32(zp[off:])) }
	u64 := func(off int) uint64 { return le.Uint64(zp[off:]) }
	for _, c := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"0x1f1 setup_sects (0 in the file means 4)", u8(0x1f1), 4},
		{"0x1f2 root_flags (copied)", u16(0x1f2), 1},
		{"0x1fa vid_mode (copied)", u16(0x1fa), 0xffff},
		{"0x1fe boot_flag (copied)", u16(0x1fe), 0xaa55},
		{"0x202 header", u32(0x202), 0x53726448},
		{"0x206 version", u16(0x206), 0x020f},
		{"0x210 type_of_loader", u8(0x210), 0xff},
		{"0x211 loadflags: image bits + LOADED_HIGH + CAN_USE_HEAP", u8(0x211), 0x01 | 0x20 | 0x80},
		{"0x214 code32_start (copied)", u32(0x214), 0x100000},
		{"0x218 ramdisk_image", u32(0x218), e.InitrdAddr},
		{"0x21c ramdisk_size", u32(0x21c), uint64(len(initrd))},
		{"0x224 heap_end_ptr", u16(0x224), 0xfe00},
		{"0x228 cmd_line_ptr", u32(0x228), CmdlineAddr},
		{"0x22c initrd_addr_max (copied)", u32(0x22c), 0x7fffffff},
		{"0x236 xloadflags (copied)", u16(0x236), 3},
		{"0x238 cmdline_size (copied)", u32(0x238), 2047},
		{"0x23c hardware_subarch", u32(0x23c), 0},
		{"0x250 setup_data", u64(0x250), 0},
		{"0x258 pref_address (copied)", u64(0x258), 0x1000000},
		{"0x260 init_size (copied)", u32(0x260), 0x800000},
		{"0x070 acpi_rsdp_addr", u64(0x070), 0xE0000},
		{"0x0c0 ext_ramdisk_image", u32(0x0c0), 0},
		{"0x0c4 ext_ramdisk_size", u32(0x0c4), 0},
		{"0x0c8 ext_cmd_line_ptr", u32(0x0c8), 0},
		{"0x1e8 e820_entries", u8(0x1e8), uint64(len(e820))},
		{"0x1ef sentinel (must stay 0)", u8(0x1ef), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	for i, want := range e820 {
		b := zp[0x2d0+20*i:]
		got := E820Entry{le.Uint64(b), le.Uint64(b[8:]), E820Type(le.Uint32(b[16:]))}
		if got != want {
			t.Errorf("e820_table[%d] = %+v, want %+v", i, got, want)
		}
	}
	if tail := zp[0x2d0+20*len(e820) : 0xcd0]; !allBytes(tail, 0) {
		t.Errorf("e820_table after the last entry is not zero")
	}
	// The header is copied verbatim apart from the fields the loader owns.
	owned := map[int]bool{0x1f1: true, 0x210: true, 0x211: true}
	for _, r := range [][2]int{{0x218, 0x220}, {0x224, 0x226}, {0x228, 0x22c}, {0x23c, 0x240}, {0x250, 0x258}} {
		for i := r[0]; i < r[1]; i++ {
			owned[i] = true
		}
	}
	for i := 0x1f1; i < 0x26c; i++ {
		if !owned[i] && zp[i] != img[i] {
			t.Errorf("zero page byte %#x = %#x, kernel header has %#x", i, zp[i], img[i])
		}
	}
	// Nothing outside the header and the loader's fields: not the boot
	// sector, not the bytes after the header's end.
	for _, r := range [][2]int{{0, 0x70}, {0x78, 0xc0}, {0xcc, 0x1e8}, {0x1e9, 0x1f1}, {0x26c, 0x2d0}, {0xcd0, bpSize}} {
		if !allBytes(zp[r[0]:r[1]], 0) {
			t.Errorf("zero page %#x-%#x is not zero", r[0], r[1])
		}
	}
	if got := mem.read(t, e.InitrdAddr, uint64(len(initrd))); !bytes.Equal(got, initrd) {
		t.Errorf("initrd content differs in guest memory")
	}
	if got := mem.read(t, KernelLoadAddr, uint64(len(spec.kernel))); !bytes.Equal(got, spec.kernel) {
		t.Errorf("protected-mode kernel differs at %#x", KernelLoadAddr)
	}
	cmd := mem.read(t, CmdlineAddr, 28)
	if string(cmd) != "console=ttyS0 root=/dev/vda\x00" {
		t.Errorf("command line in memory = %q", cmd)
	}
}

func allBytes(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

func TestBzImageEntry(t *testing.T) {
	mem, e, _, err := loadBz(t, bzDefaults(), pcMap(128), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{
		Protocol: ProtocolBzImage64,
		RIP:      0x100200, RSP: StackTop, RSI: ParamsAddr, RFLAGS: 0x2,
		CR0: 0x80000011, CR3: PML4Addr, CR4: 0x20, EFER: 0x500,
		GDTBase: GDTAddr, GDTLimit: 47, IDTBase: IDTAddr, IDTLimit: 0,
		CS: codeSegment(true), DS: dataSegment(), TR: tssSegment(),
		// The decompressor works in [pref_address, +init_size).
		KernelStart: 0x100000, KernelEnd: 0x1000000 + 0x800000,
		CmdlineAddr: CmdlineAddr, ParamsAddr: ParamsAddr,
	}
	if *e != want {
		t.Errorf("entry\n got %+v\nwant %+v", *e, want)
	}
	if e.Protocol.String() != "bzImage (64-bit boot protocol)" {
		t.Errorf("Protocol.String() = %q", e.Protocol)
	}
	if e.CS.Selector != 0x10 || e.DS.Selector != 0x18 || !e.CS.L || e.CS.DB {
		t.Errorf("CS %+v DS %+v: want __BOOT_CS 0x10 64-bit, __BOOT_DS 0x18", e.CS, e.DS)
	}
	checkGDT(t, mem, e)
	checkPageTables(t, mem)
	if zp := mem.read(t, ParamsAddr, bpSize); le.Uint32(zp[0x218:]) != 0 || le.Uint32(zp[0x21c:]) != 0 {
		t.Errorf("no initrd, but ramdisk_image/size = %#x/%#x", le.Uint32(zp[0x218:]), le.Uint32(zp[0x21c:]))
	}
}

// checkGDT decodes the boot GDT in guest memory and checks it against the
// segments in e, and the well-known encodings of flat segments.
func checkGDT(t *testing.T, mem *fakeMem, e *Entry) {
	t.Helper()
	g := mem.read(t, e.GDTBase, uint64(e.GDTLimit)+1)
	if le.Uint64(g[0:]) != 0 || le.Uint64(g[8:]) != 0 {
		t.Errorf("GDT entries 0 and 1 are not null")
	}
	wantCode := uint64(0x00CF9B000000FFFF) // 32-bit flat code
	if e.CS.L {
		wantCode = 0x00AF9B000000FFFF // 64-bit code: L=1, D=0
	}
	for _, c := range []struct {
		name string
		seg  Segment
		want uint64
	}{
		{"code", e.CS, wantCode},
		{"data", e.DS, 0x00CF93000000FFFF},
		{"tss", e.TR, 0x00008B0000000067},
	} {
		got := le.Uint64(g[c.seg.Selector:])
		if got != c.want {
			t.Errorf("GDT %s descriptor at %#x = %#016x, want %#016x", c.name, c.seg.Selector, got, c.want)
		}
		if dec := decodeDescriptor(got, c.seg.Selector); dec != c.seg {
			t.Errorf("GDT %s descriptor decodes to %+v, entry has %+v", c.name, dec, c.seg)
		}
	}
	if hi := le.Uint64(g[SelectorTSS+8:]); hi != 0 {
		t.Errorf("TSS descriptor upper half = %#x, want 0", hi)
	}
	if idt := mem.read(t, e.IDTBase, 16); !allBytes(idt, 0) {
		t.Errorf("IDT is not empty: % x", idt)
	}
}

// decodeDescriptor is the inverse of Segment.descriptor, written from the
// SDM's figure of a segment descriptor.
func decodeDescriptor(d uint64, sel uint16) Segment {
	limit := uint32(d&0xFFFF) | uint32(d>>48&0xF)<<16
	s := Segment{
		Base:     d>>16&0xFFFFFF | (d>>56&0xFF)<<24,
		Selector: sel,
		Type:     uint8(d >> 40 & 0xF),
		S:        d>>44&1 == 1,
		DPL:      d>>45&3 != 0,
		Present:  d>>47&1 == 1,
		L:        d>>53&1 == 1,
		DB:       d>>54&1 == 1,
		G:        d>>55&1 == 1,
	}
	if s.G {
		limit = limit<<12 | 0xFFF
	}
	s.Limit = limit
	return s
}

// checkPageTables walks the boot page tables for every 2 MiB page of the
// first 4 GiB and a few addresses past it.
func checkPageTables(t *testing.T, mem *fakeMem) {
	t.Helper()
	walk := func(va uint64) (uint64, bool) {
		pml4e := mem.u64(t, PML4Addr+8*(va>>39&511))
		if pml4e&1 == 0 {
			return 0, false
		}
		pdpte := mem.u64(t, pml4e&^0xFFF+8*(va>>30&511))
		if pdpte&1 == 0 || pdpte&0x80 != 0 {
			return 0, false
		}
		pde := mem.u64(t, pdpte&^0xFFF+8*(va>>21&511))
		if pde&1 == 0 || pde&0x80 == 0 || pde&2 == 0 {
			return 0, false
		}
		return pde&^0x1FFFFF | va&0x1FFFFF, true
	}
	for va := uint64(0); va < fourGiB; va += 2 * mib {
		for _, off := range []uint64{0, 0x1FFFFF} {
			pa, ok := walk(va + off)
			if !ok || pa != va+off {
				t.Fatalf("virtual %#x maps to %#x (present %v), want identity", va+off, pa, ok)
			}
		}
	}
	for _, va := range []uint64{fourGiB, 512 * gib} {
		if pa, ok := walk(va); ok {
			t.Errorf("virtual %#x is mapped (to %#x); only the first 4 GiB should be", va, pa)
		}
	}
	if pml4 := mem.read(t, PML4Addr, pageSize); !allBytes(pml4[8:], 0) {
		t.Errorf("PML4 has entries besides the first")
	}
}

func TestBzImageRSDPNeedsProtocol214(t *testing.T) {
	for _, c := range []struct {
		version uint16
		want    uint64
	}{{0x020d, 0}, {0x020e, 0xE0000}, {0x020f, 0xE0000}} {
		spec := bzDefaults()
		spec.version = c.version
		mem, _, _, err := loadBz(t, spec, pcMap(128), nil)
		if err != nil {
			t.Fatalf("version %#x: %v", c.version, err)
		}
		if got := mem.u64(t, ParamsAddr+0x70); got != c.want {
			t.Errorf("version %#x: acpi_rsdp_addr = %#x, want %#x", c.version, got, c.want)
		}
	}
}

func TestBzImageSetupSects(t *testing.T) {
	for _, sects := range []uint8{0, 1, 4, 39, 63} {
		spec := bzDefaults()
		spec.setupSects = sects
		mem, _, _, err := loadBz(t, spec, pcMap(128), nil)
		if err != nil {
			t.Fatalf("setup_sects %d: %v", sects, err)
		}
		want := sects
		if want == 0 {
			want = 4
		}
		if got := mem.read(t, ParamsAddr+0x1f1, 1)[0]; got != want {
			t.Errorf("setup_sects %d: zero page has %d, want %d", sects, got, want)
		}
		if got := mem.read(t, KernelLoadAddr, uint64(len(spec.kernel))); !bytes.Equal(got, spec.kernel) {
			t.Errorf("setup_sects %d: kernel loaded from the wrong file offset", sects)
		}
	}
}

func TestBzImageCmdline(t *testing.T) {
	for _, c := range []struct {
		name        string
		cmdlineSize uint32
		cmdline     string
		wantErr     string
	}{
		{"empty", 2047, "", ""},
		{"at the limit", 16, strings.Repeat("a", 16), ""},
		{"one past the limit", 16, strings.Repeat("a", 17), "cmdline is 17 bytes; kernel"},
		{"limit named", 16, strings.Repeat("a", 17), "at most 16 (cmdline_size"},
		{"NUL inside", 2047, "console=ttyS0\x00quiet", "cmdline contains a NUL byte at offset 13"},
		{"hostile cmdline_size", 0xffffffff, strings.Repeat("b", CmdlineMax), "at most 65535"},
		{"zero cmdline_size", 0, "x", "at most 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := bzDefaults()
			spec.cmdlineSize = c.cmdlineSize
			mem, _, _, err := loadBz(t, spec, pcMap(128), func(cfg *Config) { cfg.Cmdline = c.cmdline })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := mem.read(t, CmdlineAddr, uint64(len(c.cmdline))+1)
			if string(got) != c.cmdline+"\x00" {
				t.Errorf("command line = %q", got)
			}
		})
	}
}

func TestBzImageErrors(t *testing.T) {
	type tc struct {
		name    string
		spec    func(*bzSpec)
		img     func([]byte) []byte
		e820    []E820Entry
		wantErr string
	}
	for _, c := range []tc{
		{name: "protocol 2.11", spec: func(s *bzSpec) { s.version = 0x020b },
			wantErr: "boot protocol 2.11 is too old; paddock needs 2.12 or later"},
		{name: "32-bit only", spec: func(s *bzSpec) { s.xloadflags = 0 },
			wantErr: "xloadflags XLF_KERNEL_64 is clear"},
		{name: "no jump", img: func(b []byte) []byte { b[0x200] = 0x90; return b },
			wantErr: "no short jump at 0x200"},
		{name: "header too short", spec: func(s *bzSpec) { s.jumpLen = 0x30 },
			wantErr: "before the fields of boot protocol 2.12"},
		{name: "header too long", spec: func(s *bzSpec) { s.jumpLen = 0xff },
			wantErr: "past the zero page's room"},
		{name: "cut inside the header", img: func(b []byte) []byte { return b[:0x240] },
			wantErr: "truncated: setup header runs to 0x26c"},
		{name: "huge setup_sects", spec: func(s *bzSpec) { s.setupSects = 255 }, img: func(b []byte) []byte { return b[:0x1000] },
			wantErr: "setup code alone takes 131072 (setup_sects=255)"},
		{name: "syssize beyond the file", spec: func(s *bzSpec) { s.syssize = 0x10000 },
			wantErr: "syssize says the protected-mode kernel is 1048576 bytes"},
		{name: "no room for the entry", spec: func(s *bzSpec) { s.kernel = s.kernel[:0x100] },
			wantErr: "the 64-bit entry at +0x200 is past its end"},
		{name: "kernel larger than RAM", spec: func(s *bzSpec) { s.kernel = make([]byte, 40*mib); s.initSize = 0 }, e820: pcMap(16),
			wantErr: "kernel does not fit in guest RAM at 0x100000"},
		{name: "init_size past RAM", spec: func(s *bzSpec) { s.initSize = 0x4000000 }, e820: pcMap(64),
			wantErr: "decompresses itself into 0x1000000-0x4ffffff (init_size 64 MiB) which is not all guest RAM"},
		{name: "pref_address overflow", spec: func(s *bzSpec) { s.prefAddress = ^uint64(0) - 10 },
			wantErr: "overflows"},
		{name: "not a kernel", img: func(b []byte) []byte { return []byte("#!/bin/sh\necho hello\n") },
			wantErr: "not a Linux kernel (no bzImage header and not an ELF file)"},
		{name: "empty file", img: func(b []byte) []byte { return nil },
			wantErr: "not a Linux kernel"},
		{name: "e820 too long", e820: func() []E820Entry {
			m := pcMap(128)
			for i := 0; len(m) <= MaxE820Entries; i++ {
				m = append(m, E820Entry{Addr: 0x100000000 + uint64(i)*pageSize, Size: pageSize, Type: E820Reserved})
			}
			return m
		}(), wantErr: "e820 map has 129 entries; the boot protocols carry at most 128"},
		{name: "e820 overlap", e820: append(pcMap(128), E820Entry{Addr: 0x2000000, Size: mib, Type: E820Reserved}),
			wantErr: "overlap"},
		{name: "e820 empty entry", e820: append(pcMap(128), E820Entry{Addr: 0x80000000, Type: E820Reserved}),
			wantErr: "entry 4 at 0x80000000 is empty"},
		{name: "e820 wraps", e820: append(pcMap(128), E820Entry{Addr: ^uint64(0) - 5, Size: 10, Type: E820Reserved}),
			wantErr: "wraps around"},
		{name: "e820 without low RAM", e820: []E820Entry{{Addr: mib, Size: 127 * mib, Type: E820RAM}},
			wantErr: "low-memory area 0x500-0x2ffff is not RAM"},
		{name: "e820 empty", e820: []E820Entry{}, wantErr: "e820 map is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := bzDefaults()
			if c.spec != nil {
				c.spec(&spec)
			}
			expectLoadError(t, spec.build(), c.img, c.e820, "", c.wantErr, !strings.HasPrefix(c.name, "e820"))
		})
	}
}

func TestLoadMissingKernel(t *testing.T) {
	_, err := Load(newFakeMem(t, pcMap(64)), Config{KernelPath: "/nonexistent/vmlinuz", E820: pcMap(64)})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vmlinuz") {
		t.Fatalf("error = %v, want it to name the file", err)
	}
	_, err = Load(newFakeMem(t, pcMap(64)), Config{KernelPath: t.TempDir(), E820: pcMap(64)})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory as kernel: error = %v", err)
	}
}

func TestSplitFields(t *testing.T) {
	zp := make([]byte, bpSize)
	putSplit(zp, hRamdiskImage, bpExtRamdiskImage, 0x1_2345_6000)
	putSplit(zp, hRamdiskSize, bpExtRamdiskSize, 0x2_0000_0100)
	for _, c := range []struct {
		off  int
		want uint32
	}{{0x218, 0x23456000}, {0x0c0, 1}, {0x21c, 0x100}, {0x0c4, 2}} {
		if got := le.Uint32(zp[c.off:]); got != c.want {
			t.Errorf("offset %#x = %#x, want %#x", c.off, got, c.want)
		}
	}
}
