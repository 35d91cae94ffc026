package boot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeMem is guest memory made of one anonymous host mapping per RAM range
// of an E820 map, mapped on first use: multi-GiB layouts cost only the pages
// a test touches.
type fakeMem struct{ regions []*fakeRegion }

type fakeRegion struct {
	start, size uint64
	buf         []byte
}

func newFakeMem(t testing.TB, e820 []E820Entry) *fakeMem {
	m := &fakeMem{}
	t.Cleanup(func() {
		for _, r := range m.regions {
			if r.buf != nil {
				syscall.Munmap(r.buf)
			}
		}
	})
	for _, e := range e820 {
		if e.Type == E820RAM {
			m.regions = append(m.regions, &fakeRegion{start: e.Addr, size: e.Size})
		}
	}
	return m
}

func (m *fakeMem) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if gpa >= r.start && gpa-r.start <= r.size && n <= r.size-(gpa-r.start) {
			if r.buf == nil {
				b, err := syscall.Mmap(-1, 0, int(r.size), syscall.PROT_READ|syscall.PROT_WRITE,
					syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
				if err != nil {
					return nil, fmt.Errorf("test memory: mmap %d bytes: %w", r.size, err)
				}
				r.buf = b
			}
			off := gpa - r.start
			return r.buf[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("[%#x, %#x) is not guest RAM", gpa, gpa+n)
}

// fill sets every byte of RAM below 32 MiB to v, so tests can see what the
// loader wrote and what it cleared there.
func (m *fakeMem) fill(v byte) {
	const upTo = 32 * mib
	for _, r := range m.regions {
		if r.start >= upTo {
			continue
		}
		b, err := m.Slice(r.start, min(r.size, upTo-r.start))
		if err != nil {
			panic(err) // the region exists: a bug in fakeMem
		}
		b[0] = v
		for n := 1; n < len(b); n *= 2 {
			copy(b[n:], b[:n])
		}
	}
}

// read returns a copy of guest memory, failing the test if it is not RAM.
func (m *fakeMem) read(t testing.TB, gpa, n uint64) []byte {
	t.Helper()
	b, err := m.Slice(gpa, n)
	if err != nil {
		t.Fatalf("read guest memory: %v", err)
	}
	return bytes.Clone(b)
}

func (m *fakeMem) u16(t testing.TB, gpa uint64) uint16 { return le.Uint16(m.read(t, gpa, 2)) }
func (m *fakeMem) u32(t testing.TB, gpa uint64) uint32 { return le.Uint32(m.read(t, gpa, 4)) }
func (m *fakeMem) u64(t testing.TB, gpa uint64) uint64 { return le.Uint64(m.read(t, gpa, 8)) }

// pcMap is a PC-like memory map with ramMiB of RAM: conventional memory up to
// the EBDA, the BIOS area reserved, RAM from 1 MiB, and RAM above 4 GiB once
// the 32-bit hole (3 GiB-4 GiB) is reached.
func pcMap(ramMiB uint64) []E820Entry {
	ram := ramMiB * mib
	m := []E820Entry{
		{Addr: 0, Size: 0x9FC00, Type: E820RAM},
		{Addr: 0x9FC00, Size: 0x400, Type: E820Reserved},
		{Addr: 0xE0000, Size: 0x20000, Type: E820Reserved},
	}
	const hole = 3 * gib
	if ram <= hole {
		return append(m, E820Entry{Addr: mib, Size: ram - mib, Type: E820RAM})
	}
	return append(m,
		E820Entry{Addr: mib, Size: hole - mib, Type: E820RAM},
		E820Entry{Addr: hole, Size: gib, Type: E820Reserved},
		E820Entry{Addr: fourGiB, Size: ram - hole, Type: E820RAM})
}

// writeFile writes data to a new file in a test directory and returns its path.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pattern returns n bytes of a recognisable, seed-dependent pattern.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>8) ^ seed
	}
	return b
}

// bzSpec describes a synthetic bzImage; zero fields get a modern 64-bit
// kernel's values from bzDefaults.
type bzSpec struct {
	version       uint16
	setupSects    uint8 // as stored in the file (0 = the default 4)
	jumpLen       byte  // second byte of the jump at 0x200
	xloadflags    uint16
	initrdAddrMax uint32
	kernelAlign   uint32
	cmdlineSize   uint32
	prefAddress   uint64
	initSize      uint32
	syssize       uint32 // 0 = derived from the payload
	kernel        []byte // the protected-mode kernel
}

func bzDefaults() bzSpec {
	return bzSpec{
		version:       0x020f,
		setupSects:    0,
		jumpLen:       0x6a, // header ends at 0x26c, as in Linux 6.x
		xloadflags:    xlfKernel64 | 0x02,
		initrdAddrMax: 0x7fffffff,
		kernelAlign:   0x200000,
		cmdlineSize:   2047,
		prefAddress:   0x1000000,
		initSize:      0x800000,
		kernel:        pattern(0x3000, 0x5a),
	}
}

// build lays the image out as arch/x86/boot/tools/build.c does: boot
// sector + setup sectors, then the protected-mode kernel.
func (s bzSpec) build() []byte {
	sects := int(s.setupSects)
	if sects == 0 {
		sects = defaultSetupSect
	}
	img := make([]byte, (sects+1)*sectorSize)
	copy(img[0x100:], pattern(0xf0, 0x11)) // boot sector junk that must not be copied
	img[bpSentinel] = 0xff
	img[hSetupSects] = s.setupSects
	le.PutUint16(img[0x1f2:], 1)      // root_flags
	le.PutUint16(img[0x1fa:], 0xffff) // vid_mode
	le.PutUint16(img[0x1fc:], 0x0801) // root_dev
	le.PutUint16(img[0x1fe:], 0xaa55) // boot_flag
	img[hJump], img[hJump+1] = 0xeb, s.jumpLen
	copy(img[hHeader:], "HdrS")
	le.PutUint16(img[hVersion:], s.version)
	le.PutUint16(img[0x20e:], 0x3c0) // kernel_version string offset
	img[hLoadflags] = loadedHigh | 0x20
	le.PutUint32(img[0x214:], 0x100000) // code32_start
	le.PutUint32(img[hInitrdAddrMax:], s.initrdAddrMax)
	le.PutUint32(img[hKernelAlignment:], s.kernelAlign)
	img[hRelocatable] = 1
	img[0x235] = 21 // min_alignment
	le.PutUint16(img[hXLoadflags:], s.xloadflags)
	le.PutUint32(img[hCmdlineSize:], s.cmdlineSize)
	le.PutUint32(img[0x248:], 0x2cc) // payload_offset
	le.PutUint32(img[0x24c:], 0x1000)
	le.PutUint64(img[hPrefAddress:], s.prefAddress)
	le.PutUint32(img[hInitSize:], s.initSize)
	le.PutUint32(img[0x264:], 0x190) // handover_offset
	le.PutUint32(img[0x268:], 0x8c)  // kernel_info_offset
	copy(img[0x26c:], pattern(0x20, 0x22))
	syssize := s.syssize
	if syssize == 0 {
		syssize = uint32((len(s.kernel) + 15) / 16)
	}
	le.PutUint32(img[hSyssize:], syssize)
	return append(img, s.kernel...)
}

// elfSeg is a PT_LOAD segment of a synthetic ELF file.
type elfSeg struct {
	paddr uint64
	data  []byte
	memsz uint64 // 0 = len(data)
}

// elfNote is one ELF note.
type elfNote struct {
	name string
	typ  uint32
	desc []byte
}

// elfSpec describes a synthetic ELF64 x86-64 vmlinux.
type elfSpec struct {
	segs        []elfSeg
	notes       []elfNote
	noteAlign   uint64 // 4 (default) or 8
	noteSection bool   // put the notes in an SHT_NOTE section, not a PT_NOTE segment
	class       byte   // 0 = ELFCLASS64
	data        byte   // 0 = little-endian
	machine     uint16 // 0 = EM_X86_64
}

// pvhNote is a Xen PHYS32_ENTRY note with an 8-byte value, as Linux emits it.
func pvhNote(entry uint64) elfNote {
	d := make([]byte, 8)
	le.PutUint64(d, entry)
	return elfNote{name: xenNoteName, typ: xenNotePhys32, desc: d}
}

func (s elfSpec) build() []byte {
	align := s.noteAlign
	if align == 0 {
		align = 4
	}
	pad := func(b []byte, a uint64) []byte {
		for uint64(len(b))%a != 0 {
			b = append(b, 0)
		}
		return b
	}
	var notes []byte
	for _, n := range s.notes {
		var h [12]byte
		le.PutUint32(h[0:], uint32(len(n.name)+1))
		le.PutUint32(h[4:], uint32(len(n.desc)))
		le.PutUint32(h[8:], n.typ)
		notes = append(notes, h[:]...)
		notes = pad(append(append(notes, n.name...), 0), align)
		notes = pad(append(notes, n.desc...), align)
	}
	nph := len(s.segs)
	if !s.noteSection && len(notes) > 0 {
		nph++
	}
	f := make([]byte, elfHeaderSize+nph*elfPhdrSize)
	copy(f, "\x7fELF")
	f[4], f[5], f[6] = orByte(s.class, elfClass64), orByte(s.data, elfData2LSB), 1
	le.PutUint16(f[16:], elfTypeExec)
	le.PutUint16(f[18:], orU16(s.machine, elfMachineX86))
	le.PutUint32(f[20:], 1)
	le.PutUint64(f[24:], 0xffffffff81000000) // e_entry: the virtual entry, unused by PVH
	le.PutUint64(f[32:], elfHeaderSize)
	le.PutUint16(f[52:], elfHeaderSize)
	le.PutUint16(f[54:], elfPhdrSize)
	le.PutUint16(f[56:], uint16(nph))
	phdr := func(i int, typ uint32, off, paddr, filesz, memsz, a uint64) {
		b := f[elfHeaderSize+i*elfPhdrSize:]
		le.PutUint32(b[0:], typ)
		le.PutUint32(b[4:], 5)
		le.PutUint64(b[8:], off)
		le.PutUint64(b[16:], paddr+0xffffffff80000000)
		le.PutUint64(b[24:], paddr)
		le.PutUint64(b[32:], filesz)
		le.PutUint64(b[40:], memsz)
		le.PutUint64(b[48:], a)
	}
	f = pad(f, 16)
	noteOff := uint64(len(f))
	f = append(f, notes...)
	for i, sg := range s.segs {
		f = pad(f, 16)
		memsz := sg.memsz
		if memsz == 0 {
			memsz = uint64(len(sg.data))
		}
		phdr(i, ptLoad, uint64(len(f)), sg.paddr, uint64(len(sg.data)), memsz, 0x200000)
		f = append(f, sg.data...)
	}
	if len(notes) > 0 && !s.noteSection {
		phdr(len(s.segs), ptNote, noteOff, 0, uint64(len(notes)), uint64(len(notes)), align)
	}
	if s.noteSection && len(notes) > 0 {
		f = pad(f, 8)
		le.PutUint64(f[40:], uint64(len(f))) // e_shoff
		le.PutUint16(f[58:], elfShdrSize)
		le.PutUint16(f[60:], 2) // the null section and the notes
		f = append(f, make([]byte, 2*elfShdrSize)...)
		sh := f[len(f)-elfShdrSize:]
		le.PutUint32(sh[4:], shtNote)
		le.PutUint64(sh[24:], noteOff)
		le.PutUint64(sh[32:], uint64(len(notes)))
		le.PutUint64(sh[48:], align)
	}
	return f
}

func orByte(v, def byte) byte {
	if v == 0 {
		return def
	}
	return v
}

func orU16(v, def uint16) uint16 {
	if v == 0 {
		return def
	}
	return v
}

// defaultELF is a small vmlinux: text at 16 MiB holding the PVH entry, and a
// data segment whose bss tail must be zeroed.
func defaultELF() elfSpec {
	return elfSpec{
		segs: []elfSeg{
			{paddr: 0x1000000, data: pattern(0x2000, 0x33)},
			{paddr: 0x1200000, data: pattern(0x800, 0x44), memsz: 0x3000},
		},
		notes: []elfNote{
			{name: "GNU", typ: 3, desc: pattern(20, 0x55)}, // build id
			{name: xenNoteName, typ: 1, desc: []byte("xen-3.0\x00")},
			pvhNote(0x1000040),
		},
	}
}

// expectLoadError loads the kernel image img (after mutate, if not nil) into
// a guest with e820 (a 128 MiB PC map if nil) and checks that Load fails with
// an error containing wantErr and, if namesFile, the kernel's path.
func expectLoadError(t *testing.T, img []byte, mutate func([]byte) []byte, e820 []E820Entry, cmdline, wantErr string, namesFile bool) {
	t.Helper()
	if mutate != nil {
		img = mutate(img)
	}
	if e820 == nil {
		e820 = pcMap(128)
	}
	path := writeFile(t, "kernel", img)
	_, err := Load(newFakeMem(t, e820), Config{KernelPath: path, E820: e820, Cmdline: cmdline})
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("error = %v, want it to contain %q", err, wantErr)
	}
	if namesFile && !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the kernel file", err)
	}
}
