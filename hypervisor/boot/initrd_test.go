package boot

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestInitrdPlacement(t *testing.T) {
	const small = 3*mib + 100 // not a whole number of pages
	hole := func(ramMiB uint64) []E820Entry { return pcMap(ramMiB) }
	contiguous := func(top uint64) []E820Entry {
		return []E820Entry{{Addr: 0, Size: 0x9FC00, Type: E820RAM}, {Addr: mib, Size: top - mib, Type: E820RAM}}
	}
	for _, c := range []struct {
		name     string
		pvh      bool
		maxAddr  uint32 // initrd_addr_max for the bzImage (0 = default 0x7fffffff)
		e820     []E820Entry
		size     uint64
		wantAddr uint64
	}{
		// Top of RAM, rounded down to a page.
		{name: "bzImage, 256 MiB", e820: hole(256), size: small, wantAddr: 256*mib - 3*mib - pageSize},
		{name: "bzImage, whole pages", e820: hole(256), size: 2 * mib, wantAddr: 254 * mib},
		// RAM goes past initrd_addr_max: the initrd ends at the limit.
		{name: "bzImage, 6 GiB split around the hole", e820: hole(6 * 1024), size: small, wantAddr: 2*gib - 3*mib - pageSize},
		{name: "bzImage, initrd_addr_max 4 GiB-1, RAM split", maxAddr: 0xffffffff, e820: hole(6 * 1024), size: small,
			wantAddr: 3*gib - 3*mib - pageSize},
		{name: "bzImage, initrd_addr_max 4 GiB-1, RAM past 4 GiB", maxAddr: 0xffffffff, e820: contiguous(5 * gib), size: small,
			wantAddr: 4*gib - 3*mib - pageSize},
		{name: "bzImage, odd initrd_addr_max", maxAddr: 0x37ffffff, e820: hole(2048), size: 2 * mib,
			wantAddr: 0x38000000 - 2*mib},
		// PVH: below 4 GiB, so the top of the RAM below the hole.
		{name: "PVH, 6 GiB split around the hole", pvh: true, e820: hole(6 * 1024), size: small, wantAddr: 3*gib - 3*mib - pageSize},
		{name: "PVH, RAM past 4 GiB", pvh: true, e820: contiguous(5 * gib), size: small, wantAddr: 4*gib - 3*mib - pageSize},
		{name: "PVH, 64 MiB", pvh: true, e820: hole(64), size: small, wantAddr: 64*mib - 3*mib - pageSize},
		// RAM ends inside the kernel's decompression area (16 MiB + init_size 8 MiB):
		// the initrd goes below it, after the loaded image.
		// RAM ends 4 MiB after the kernel's decompression area (16 MiB +
		// init_size 8 MiB): the initrd goes there. (If it does not fit,
		// nothing else is free: the kernel span starts at 1 MiB.)
		{name: "bzImage squeezed above the kernel", e820: contiguous(28 * mib), size: 3 * mib,
			wantAddr: 25 * mib},
	} {
		t.Run(c.name, func(t *testing.T) {
			initrd := pattern(int(c.size), 0x99)
			mutate := func(cfg *Config) { cfg.InitrdPath = writeFile(t, "initrd.img", initrd) }
			var (
				mem *fakeMem
				e   *Entry
				err error
			)
			if c.pvh {
				mem, e, err = loadELF(t, defaultELF(), c.e820, mutate)
			} else {
				spec := bzDefaults()
				if c.maxAddr != 0 {
					spec.initrdAddrMax = c.maxAddr
				}
				mem, e, _, err = loadBz(t, spec, c.e820, mutate)
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.InitrdAddr != c.wantAddr || e.InitrdSize != c.size {
				t.Errorf("initrd at %#x size %#x, want %#x size %#x", e.InitrdAddr, e.InitrdSize, c.wantAddr, c.size)
			}
			if s := e.String(); !strings.Contains(s, fmt.Sprintf(", initrd %#x-%#x (", e.InitrdAddr, e.InitrdAddr+c.size-1)) {
				t.Errorf("Entry.String() = %q does not give the initrd", s)
			}
			if e.InitrdAddr%pageSize != 0 {
				t.Errorf("initrd at %#x is not page-aligned", e.InitrdAddr)
			}
			r := span{e.InitrdAddr, e.InitrdAddr + e.InitrdSize}
			if r.overlaps(span{e.KernelStart, e.KernelEnd}) || r.overlaps(span{0, mib}) {
				t.Errorf("initrd %#x-%#x overlaps the kernel %#x-%#x or the first MiB", r.start, r.end, e.KernelStart, e.KernelEnd)
			}
			if got := mem.read(t, e.InitrdAddr, c.size); !bytes.Equal(got, initrd) {
				t.Errorf("initrd content differs in guest memory")
			}
		})
	}
}

func TestInitrdErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		pvh     bool
		e820    []E820Entry
		initrd  func(t *testing.T) string
		wantErr []string
	}{
		{name: "bzImage, too big for RAM", e820: pcMap(64),
			initrd:  func(t *testing.T) string { return writeFile(t, "big.img", make([]byte, 50*mib)) },
			wantErr: []string{"big.img (50 MiB) does not fit in guest RAM below 0x80000000", "(largest free range 40 MiB); give the VM more memory"}},
		{name: "PVH, too big for RAM", pvh: true, e820: pcMap(64),
			initrd:  func(t *testing.T) string { return writeFile(t, "big.img", make([]byte, 50*mib+5)) },
			wantErr: []string{"big.img (50.0 MiB) does not fit in guest RAM below 0x100000000", "largest free range 46.0 MiB"}},
		{name: "bzImage, only room inside the kernel", e820: []E820Entry{{Addr: 0, Size: 0x9FC00, Type: E820RAM}, {Addr: mib, Size: 27 * mib, Type: E820RAM}},
			initrd:  func(t *testing.T) string { return writeFile(t, "initrd.img", make([]byte, 5*mib)) },
			wantErr: []string{"(5 MiB) does not fit", "largest free range 4 MiB"}},
		{name: "empty", e820: pcMap(64),
			initrd:  func(t *testing.T) string { return writeFile(t, "empty.img", nil) },
			wantErr: []string{"empty.img: file is empty"}},
		{name: "missing", e820: pcMap(64),
			initrd:  func(t *testing.T) string { return "/nonexistent/initrd.img" },
			wantErr: []string{"initrd /nonexistent/initrd.img: no such file or directory"}},
		{name: "directory", e820: pcMap(64),
			initrd:  func(t *testing.T) string { return t.TempDir() },
			wantErr: []string{"not a regular file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mutate := func(cfg *Config) { cfg.InitrdPath = c.initrd(t) }
			var err error
			if c.pvh {
				_, _, err = loadELF(t, defaultELF(), c.e820, mutate)
			} else {
				_, _, _, err = loadBz(t, bzDefaults(), c.e820, mutate)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPlaceInitrd(t *testing.T) {
	free := spans{{0x200000, 0x300000}, {0x500000, 0x580000}, {0x1000000, 0x1000800}}
	for _, c := range []struct {
		size          uint64
		addr, largest uint64
		ok            bool
	}{
		{0x1000, 0x57f000, 0x100000, true}, // the highest range is too small once aligned
		{0x80000, 0x500000, 0x100000, true},
		{0x80001, 0x27f000, 0x100000, true},
		{0x100000, 0x200000, 0x100000, true},
		{0x100001, 0, 0x100000, false},
		{0, 0, 0x100000, false},
	} {
		addr, largest, ok := placeInitrd(free, c.size)
		if addr != c.addr || largest != c.largest || ok != c.ok {
			t.Errorf("size %#x: got %#x, %#x, %v; want %#x, %#x, %v", c.size, addr, largest, ok, c.addr, c.largest, c.ok)
		}
	}
}

func TestSpans(t *testing.T) {
	ram, err := checkE820([]E820Entry{
		{Addr: mib, Size: mib, Type: E820RAM},
		{Addr: 0, Size: 0x9FC00, Type: E820RAM},
		{Addr: 2 * mib, Size: 2 * mib, Type: E820RAM}, // adjacent: merged
		{Addr: 0xE0000, Size: 0x20000, Type: E820Reserved},
		{Addr: 8 * mib, Size: mib, Type: E820ACPI},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := spans{{0, 0x9FC00}, {mib, 4 * mib}}
	if len(ram) != len(want) || ram[0] != want[0] || ram[1] != want[1] {
		t.Fatalf("RAM = %v, want %v", ram, want)
	}
	if !ram.contains(span{1536 * 1024, 3 * mib}) || ram.contains(span{0x9F000, 0xA0000}) {
		t.Errorf("contains is wrong for %v", ram)
	}
	got := ram.below(3*mib).subtract(span{0, mib}, span{2 * mib, 2*mib + 4096})
	if len(got) != 2 || got[0] != (span{mib, 2 * mib}) || got[1] != (span{2*mib + 4096, 3 * mib}) {
		t.Errorf("below/subtract = %v", got)
	}
	if s := E820Type(3).String() + "," + E820Type(9).String(); s != "ACPI data,type 9" {
		t.Errorf("E820Type.String = %q", s)
	}
}
