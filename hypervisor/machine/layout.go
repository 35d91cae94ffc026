package machine

import (
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/boot"
)

// The guest-physical address map of a paddock machine (x86-64).
//
//	0x0000_0000 - 0x0009_FBFF  RAM (the boot loader's structures live here)
//	0x0009_FC00 - 0x0009_FFFF  reserved (where a PC has its EBDA)
//	0x000A_0000 - 0x000D_FFFF  RAM in the memslot, reserved in e820 (legacy VGA/ROM hole)
//	0x000E_0000 - 0x000E_EFFF  ACPI tables (RSDP scanned for here), reserved
//	0x000E_F000 - 0x000E_F00F  the VM generation ID (the DSDT's VGEN.ADDR), reserved
//	0x000F_0000 - 0x000F_FFFF  SMBIOS entry points and tables (scanned for
//	                           here), reserved
//	0x0010_0000 - lowRAMEnd    RAM: kernel, initrd, the rest of low memory
//	0xC000_0000 - 0xDFFF_FFFF  32-bit PCI MMIO window
//	0xE000_0000 - 0xEFFF_FFFF  PCIe ECAM (256 buses)
//	0xFEC0_0000                IOAPIC
//	0xFEE0_0000                LAPIC
//	0xFFFB_C000 - 0xFFFB_FFFF  KVM identity map page + TSS (VMX needs them)
//	0x1_0000_0000 -            RAM above 4 GiB, when the guest has more than lowRAMMax
//	after high RAM             64-bit PCI MMIO window
const (
	// LowRAMMax is the largest amount of RAM placed below 4 GiB; the rest
	// of the guest's memory starts at HighRAMStart.
	LowRAMMax    = 0xC000_0000
	HighRAMStart = 0x1_0000_0000

	ebdaStart   = 0x9_FC00
	legacyStart = 0xA_0000
	// ACPIStart is where the ACPI tables (RSDP first) are copied.
	ACPIStart = 0xE_0000
	// VMGenIDAddr is where the VM generation ID lives, after the ACPI
	// tables, in the reserved area: guest memory the guest's OS does
	// not use, as the specification asks. Linux maps it from the DSDT's
	// VGEN.ADDR.
	VMGenIDAddr = 0xE_F000
	// SMBIOSStart is where the SMBIOS entry points and tables are
	// copied: the start of the area a guest scans for the entry point.
	SMBIOSStart = 0xF_0000
	// biosEnd ends the reserved area of the tables (ACPI, then SMBIOS).
	biosEnd = 0x10_0000

	// PCIIOStart and PCIIOSize bound the I/O-port window for PCI BARs,
	// clear of the legacy devices and the ACPI blocks at 0x600.
	PCIIOStart = 0xc000
	PCIIOSize  = 0x4000

	// PCIMMIO32Start and PCIMMIO32Size bound the 32-bit PCI BAR window.
	PCIMMIO32Start = 0xC000_0000
	PCIMMIO32Size  = 0x2000_0000
	// ECAMStart is the PCIe enhanced configuration space (bus 0 only is
	// populated; 1 MiB per bus).
	ECAMStart = 0xE000_0000
	ECAMSize  = 0x1000_0000

	IOAPICAddr = 0xFEC0_0000
	LAPICAddr  = 0xFEE0_0000

	identityMapAddr = 0xFFFB_C000
	tssAddr         = 0xFFFB_D000

	// PCIMMIO64Size is the size of the 64-bit PCI window placed after
	// the end of high RAM (aligned to 1 GiB).
	PCIMMIO64Size = 64 << 30

	// MinMemory is the least RAM a machine can have: boot's limit, the
	// one configs validates VM files against.
	MinMemory = boot.MinMemory
)

// region is a range of guest RAM backed by one memslot.
type region struct {
	gpa  uint64
	size uint64
}

func (r region) end() uint64 { return r.gpa + r.size }

// ramRegions splits a guest's RAM around the 32-bit MMIO hole.
func ramRegions(memory uint64) []region {
	if memory <= LowRAMMax {
		return []region{{0, memory}}
	}
	return []region{{0, LowRAMMax}, {HighRAMStart, memory - LowRAMMax}}
}

// pciMMIO64Start returns the first address of the 64-bit PCI window: after
// the end of RAM (or 4 GiB), rounded up to 1 GiB.
func pciMMIO64Start(memory uint64) uint64 {
	end := uint64(HighRAMStart)
	if memory > LowRAMMax {
		end = HighRAMStart + memory - LowRAMMax
	}
	return (end + (1<<30 - 1)) &^ (1<<30 - 1)
}

// e820Map returns the memory map the guest firmware interface reports: the
// RAM regions with the legacy holes and the ACPI area carved out, and the
// ECAM window reserved (Linux only trusts MMCONFIG in a reserved range).
func e820Map(memory uint64) ([]boot.E820Entry, error) {
	if memory < MinMemory {
		return nil, fmt.Errorf("memory %d MiB is below the minimum of %d MiB", memory>>20, MinMemory>>20)
	}
	regs := ramRegions(memory)
	m := []boot.E820Entry{
		{Addr: 0, Size: ebdaStart, Type: boot.E820RAM},
		{Addr: ebdaStart, Size: legacyStart - ebdaStart, Type: boot.E820Reserved},
		{Addr: ACPIStart, Size: biosEnd - ACPIStart, Type: boot.E820Reserved},
		{Addr: biosEnd, Size: regs[0].end() - biosEnd, Type: boot.E820RAM},
		{Addr: ECAMStart, Size: ECAMSize, Type: boot.E820Reserved},
	}
	if len(regs) > 1 {
		m = append(m, boot.E820Entry{Addr: regs[1].gpa, Size: regs[1].size, Type: boot.E820RAM})
	}
	return m, nil
}
