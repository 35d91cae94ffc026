package boot

// Guest-physical layout of everything the loader builds besides the kernel
// and the initrd. All of it lives in conventional memory between LowStart and
// LowEnd: below the EBDA (0x9FC00), away from the BIOS area 0xE0000-0xFFFFF
// that the machine keeps for its ACPI and SMBIOS tables, and above the
// real-mode IVT and BIOS data area (0x000-0x4FF), which stay zero (Linux
// reads the BDA's EBDA pointer and treats zero as "no EBDA").
//
//	0x00500-0x0052F  GDT: null, null, code (0x10), data (0x18), TSS (0x20, 16 bytes)
//	0x00540-0x0054F  IDT: empty (limit 0); an exception before the kernel
//	                 installs its own IDT triple-faults, which the machine
//	                 sees as a shutdown
//	0x07000-0x07FFF  bzImage: boot_params ("zero page")
//	                 PVH: hvm_start_info, one hvm_modlist_entry (initrd) at
//	                 +0x40, the memory map (hvm_memmap_table_entry[]) at +0x80
//	0x08000-0x08FFF  boot stack; RSP starts at its top, 0x9000
//	0x09000-0x09FFF  PML4 (bzImage only)
//	0x0A000-0x0AFFF  PDPT
//	0x0B000-0x0EFFF  four page directories: the first 4 GiB, 2 MiB pages
//	0x20000-0x2FFFF  kernel command line, NUL-terminated
//	0xE0000-0xFFFFF  not touched: the machine's ACPI tables (RSDP) and
//	                 SMBIOS tables (entry points from 0xF0000)
//	0x100000-        bzImage: the protected-mode kernel (PVH: the ELF's
//	                 PT_LOAD segments wherever p_paddr says, above 1 MiB)
//
// The initrd goes as high as possible in RAM below the protocol's limit.
const (
	// LowStart and LowEnd bound the loader's structures in low memory.
	LowStart = 0x500
	LowEnd   = 0x30000

	// GDTAddr is the boot GDT; GDTSize its size in bytes.
	GDTAddr = 0x500
	GDTSize = 6 * 8
	// IDTAddr is the empty boot IDT.
	IDTAddr = 0x540
	// ParamsAddr is the zero page (bzImage) or hvm_start_info (PVH).
	ParamsAddr = 0x7000
	// StackTop is the initial RSP; the stack page is [StackTop-0x1000, StackTop).
	StackTop = 0x9000
	// PML4Addr is the top-level page table and the initial CR3 (bzImage).
	PML4Addr = 0x9000
	// PDPTAddr is the page-directory-pointer table.
	PDPTAddr = 0xA000
	// PDAddr is the first of four page directories (one per GiB).
	PDAddr = 0xB000
	// CmdlineAddr is where the command line is written.
	CmdlineAddr = 0x20000
	// CmdlineMax is the size of the command-line area, terminating NUL included.
	CmdlineMax = 0x10000

	// ACPIStart and ACPIEnd bound the BIOS area the machine reserves for
	// ACPI and SMBIOS tables; the loader never writes there.
	ACPIStart = 0xE0000
	ACPIEnd   = 0x100000

	// KernelLoadAddr is where a bzImage's protected-mode kernel is loaded.
	KernelLoadAddr = 0x100000

	// pvhModlistAddr and pvhMemmapAddr follow hvm_start_info in the params page.
	pvhModlistAddr = ParamsAddr + 0x40
	pvhMemmapAddr  = ParamsAddr + 0x80

	// MaxE820Entries is the most memory-map entries either protocol carries
	// (the zero page has room for 128; the PVH map gets the same limit).
	MaxE820Entries = 128

	pageSize = 0x1000
	mib      = 1 << 20
	gib      = 1 << 30
	fourGiB  = 4 * gib
)
