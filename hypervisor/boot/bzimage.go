package boot

import (
	"errors"
	"io"
)

// Offsets in struct boot_params, the zero page
// (arch/x86/include/uapi/asm/bootparam.h, Documentation/arch/x86/zero-page.rst).
const (
	bpACPIRSDPAddr    = 0x070
	bpExtRamdiskImage = 0x0c0
	bpExtRamdiskSize  = 0x0c4
	bpExtCmdLinePtr   = 0x0c8
	bpE820Entries     = 0x1e8
	bpSentinel        = 0x1ef
	bpE820Table       = 0x2d0
	bpSize            = 0x1000
	bpE820EntrySize   = 20
)

// Offsets of struct setup_header fields, the same in the kernel file and in
// the zero page (Documentation/arch/x86/boot.rst, "THE REAL-MODE KERNEL HEADER").
const (
	hSetupSects      = 0x1f1
	hSyssize         = 0x1f4
	hJump            = 0x200
	hHeader          = 0x202
	hVersion         = 0x206
	hTypeOfLoader    = 0x210
	hLoadflags       = 0x211
	hRamdiskImage    = 0x218
	hRamdiskSize     = 0x21c
	hHeapEndPtr      = 0x224
	hCmdLinePtr      = 0x228
	hInitrdAddrMax   = 0x22c
	hKernelAlignment = 0x230
	hRelocatable     = 0x234
	hXLoadflags      = 0x236
	hCmdlineSize     = 0x238
	hHardwareSubarch = 0x23c
	hSetupData       = 0x250
	hPrefAddress     = 0x258
	hInitSize        = 0x260
	// hEnd212 is where the header of protocol 2.12 ends (after handover_offset).
	hEnd212 = 0x268
	// hMaxEnd is where the zero page's room for the setup header ends.
	hMaxEnd = 0x290
)

// Setup-header flag bits and values the loader uses.
const (
	minProtocol      = 0x020c // 2.12: xloadflags, the 64-bit entry is documented
	protocolRSDP     = 0x020e // 2.14: boot_params.acpi_rsdp_addr is read
	loadedHigh       = 0x01   // loadflags: protected-mode code at 0x100000
	canUseHeap       = 0x80   // loadflags: heap_end_ptr is valid
	xlfKernel64      = 0x01   // xloadflags: 64-bit entry at load address + 0x200
	loaderUndefined  = 0xff   // type_of_loader: boot loader without an assigned id
	heapEndPtr       = 0xfe00 // heap_end_ptr: the usual end of the setup heap
	entry64Offset    = 0x200  // the 64-bit entry point, from the load address
	defaultSetupSect = 4      // setup_sects == 0 means 4
	sectorSize       = 512
)

// setupHeader is what the loader reads from a bzImage's setup header.
type setupHeader struct {
	raw             []byte // file bytes 0x1f1 up to the header's end, copied into the zero page
	setupSects      uint64 // effective: 0 in the file means 4
	version         uint16
	syssize         uint32 // protected-mode size in 16-byte units (0 = unknown)
	initrdAddrMax   uint32
	kernelAlignment uint32
	relocatable     bool
	xloadflags      uint16
	cmdlineSize     uint32
	prefAddress     uint64
	initSize        uint32
}

// readSetupHeader reads and checks the setup header of a bzImage.
func (l *loader) readSetupHeader(r io.ReaderAt) (*setupHeader, error) {
	buf := make([]byte, hMaxEnd)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, l.errorf("read setup header: %w", err)
	}
	buf = buf[:n]
	if n < hVersion+2 {
		return nil, l.errorf("truncated: setup header cut off at %#x", n)
	}
	h := &setupHeader{version: le.Uint16(buf[hVersion:])}
	if h.version < minProtocol {
		return nil, l.errorf("boot protocol %d.%02d is too old; paddock needs 2.12 or later (Linux 3.8+)",
			h.version>>8, h.version&0xff)
	}
	if buf[hJump] != 0xeb {
		return nil, l.errorf("setup header: no short jump at %#x (found %#02x), so its length is unknown", hJump, buf[hJump])
	}
	end := hHeader + int(buf[hJump+1])
	switch {
	case end < hEnd212:
		return nil, l.errorf("setup header ends at %#x, before the fields of boot protocol 2.12 (%#x)", end, hEnd212)
	case end > hMaxEnd:
		return nil, l.errorf("setup header runs to %#x, past the zero page's room for it (%#x)", end, hMaxEnd)
	case n < end:
		return nil, l.errorf("truncated: setup header runs to %#x but the file ends at %#x", end, n)
	}
	h.raw = buf[hSetupSects:end]
	h.setupSects = uint64(buf[hSetupSects])
	if h.setupSects == 0 {
		h.setupSects = defaultSetupSect
	}
	h.syssize = le.Uint32(buf[hSyssize:])
	h.initrdAddrMax = le.Uint32(buf[hInitrdAddrMax:])
	h.kernelAlignment = le.Uint32(buf[hKernelAlignment:])
	h.relocatable = buf[hRelocatable] != 0
	h.xloadflags = le.Uint16(buf[hXLoadflags:])
	h.cmdlineSize = le.Uint32(buf[hCmdlineSize:])
	h.prefAddress = le.Uint64(buf[hPrefAddress:])
	h.initSize = le.Uint32(buf[hInitSize:])
	if h.xloadflags&xlfKernel64 == 0 {
		return nil, l.errorf("bzImage has no 64-bit entry point (xloadflags XLF_KERNEL_64 is clear); paddock boots 64-bit x86 kernels only")
	}
	return h, nil
}

// decompressSpan is the memory the kernel's decompressor uses, as
// arch/x86/boot/compressed/head_64.S computes it for the 64-bit entry: it
// starts at the load address rounded up to kernel_alignment (relocatable
// kernels) but never below pref_address (LOAD_PHYSICAL_ADDR), and is
// init_size bytes long. ok is false if the header's values overflow.
func (h *setupHeader) decompressSpan(load uint64) (s span, ok bool) {
	start := load
	if h.relocatable && h.kernelAlignment > 1 {
		a := uint64(h.kernelAlignment)
		start = (load + a - 1) / a * a
	}
	start = max(start, h.prefAddress)
	end := start + uint64(h.initSize)
	return span{start, end}, end >= start
}

// loadBzImage boots a bzImage through the 64-bit boot protocol.
func (l *loader) loadBzImage(r io.ReaderAt, size int64) (*Entry, error) {
	h, err := l.readSetupHeader(r)
	if err != nil {
		return nil, err
	}
	setupSize, kernelSize, err := l.bzImageSizes(h, size)
	if err != nil {
		return nil, err
	}
	image := span{KernelLoadAddr, KernelLoadAddr + kernelSize}
	if !l.ram.contains(image) {
		return nil, l.errorf("the %s kernel does not fit in guest RAM at %#x; give the VM more memory",
			mibString(kernelSize), uint64(KernelLoadAddr))
	}
	decomp, ok := h.decompressSpan(KernelLoadAddr)
	if !ok {
		return nil, l.errorf("pref_address %#x + init_size %#x overflows", h.prefAddress, h.initSize)
	}
	if !l.ram.contains(decomp) {
		return nil, l.errorf("the kernel decompresses itself into %#x-%#x (init_size %s) which is not all guest RAM; give the VM more memory",
			decomp.start, decomp.end-1, mibString(uint64(h.initSize)))
	}
	kernel := span{KernelLoadAddr, max(image.end, decomp.end)}

	if err := l.writeCmdline(uint64(h.cmdlineSize), "cmdline_size in its setup header"); err != nil {
		return nil, err
	}
	dst, err := l.slice(image.start, image.size(), "kernel")
	if err != nil {
		return nil, err
	}
	if err := l.readFull(r, dst, int64(setupSize), "protected-mode kernel"); err != nil {
		return nil, err
	}
	initrdLimit := min(uint64(h.initrdAddrMax)+1, fourGiB)
	initrdAddr, initrdSize, err := l.loadInitrd(initrdLimit, kernel)
	if err != nil {
		return nil, err
	}
	if err := l.writeZeroPage(h, initrdAddr, initrdSize); err != nil {
		return nil, err
	}
	e := &Entry{
		Protocol: ProtocolBzImage64,
		RIP:      KernelLoadAddr + entry64Offset,
		RSP:      StackTop,
		RSI:      ParamsAddr,
		RFLAGS:   rflags1,
		CR0:      cr0PE | cr0ET | cr0PG,
		CR3:      PML4Addr,
		CR4:      cr4PAE,
		EFER:     eferLME | eferLMA,

		KernelStart: kernel.start,
		KernelEnd:   kernel.end,
		InitrdAddr:  initrdAddr,
		InitrdSize:  initrdSize,
		CmdlineAddr: CmdlineAddr,
		ParamsAddr:  ParamsAddr,
	}
	if err := l.writeGDT(e, true); err != nil {
		return nil, err
	}
	if err := l.writePageTables(); err != nil {
		return nil, err
	}
	return e, nil
}

// bzImageSizes returns the sizes of a bzImage's setup code and of its
// protected-mode kernel, checked against the file's size and the header's
// syssize.
func (l *loader) bzImageSizes(h *setupHeader, size int64) (setupSize, kernelSize uint64, err error) {
	setupSize = (h.setupSects + 1) * sectorSize
	if uint64(size) <= setupSize {
		return 0, 0, l.errorf("truncated: file is %d bytes but its setup code alone takes %d (setup_sects=%d)",
			size, setupSize, h.setupSects)
	}
	kernelSize = uint64(size) - setupSize
	if h.syssize != 0 {
		declared := uint64(h.syssize) * 16
		if declared > kernelSize+15 { // syssize is rounded up to 16 bytes
			return 0, 0, l.errorf("truncated: syssize says the protected-mode kernel is %d bytes, the file holds %d",
				declared, kernelSize)
		}
		kernelSize = min(kernelSize, declared) // anything after it (e.g. a signature) is not kernel
	}
	if kernelSize <= entry64Offset {
		return 0, 0, l.errorf("protected-mode kernel is only %d bytes; the 64-bit entry at +%#x is past its end", kernelSize, entry64Offset)
	}
	return setupSize, kernelSize, nil
}

// writeZeroPage builds boot_params: a zeroed page holding a copy of the
// kernel's setup header with the fields a boot loader must fill in, the
// E820 map and the RSDP address.
func (l *loader) writeZeroPage(h *setupHeader, initrdAddr, initrdSize uint64) error {
	zp, err := l.zeroed(ParamsAddr, bpSize, "zero page")
	if err != nil {
		return err
	}
	copy(zp[hSetupSects:], h.raw)
	zp[hSetupSects] = byte(h.setupSects)
	zp[hTypeOfLoader] = loaderUndefined
	zp[hLoadflags] |= loadedHigh | canUseHeap
	le.PutUint16(zp[hHeapEndPtr:], heapEndPtr)
	le.PutUint32(zp[hHardwareSubarch:], 0) // a PC
	le.PutUint64(zp[hSetupData:], 0)       // no setup_data list
	putSplit(zp, hCmdLinePtr, bpExtCmdLinePtr, CmdlineAddr)
	putSplit(zp, hRamdiskImage, bpExtRamdiskImage, initrdAddr)
	putSplit(zp, hRamdiskSize, bpExtRamdiskSize, initrdSize)
	if h.version >= protocolRSDP {
		le.PutUint64(zp[bpACPIRSDPAddr:], l.cfg.RSDP)
	}
	zp[bpE820Entries] = byte(len(l.cfg.E820))
	for i, e := range l.cfg.E820 {
		putE820(zp[bpE820Table+bpE820EntrySize*i:], e)
	}
	return nil
}

// putSplit stores v's low 32 bits at lo and its high 32 bits at hi, the way
// the zero page extends its 32-bit header fields (ext_ramdisk_image etc.).
func putSplit(zp []byte, lo, hi int, v uint64) {
	le.PutUint32(zp[lo:], uint32(v))
	le.PutUint32(zp[hi:], uint32(v>>32))
}
