// Package acpi builds the ACPI tables of a paddock VM: RSDP, XSDT, FADT
// with FACS and DSDT, MADT and, with PCI, MCFG, as one blob the machine
// copies into guest memory. The platform is a full (not hardware-reduced)
// ACPI PC: a fixed-feature power button and PM1a event/control blocks in
// I/O space that the machine's power-management device implements, SCI on
// an ISA IRQ, a RESET_REG, and an \_S5 sleep type for power-off. Device
// events other than the power button (the VM generation ID's change)
// reach the guest through a Generic Event Device with an interrupt of
// its own, not through GPEs and the SCI.
//
// The tables follow ACPI 6.5 and are shaped after what Linux's ACPICA and
// arch/x86/kernel/acpi code read: no PM timer (Linux uses kvm-clock and the
// TSC; every PM timer read would be a VM exit), no GPE blocks, no processor
// objects in the DSDT (the MADT lists the CPUs), no CMOS century register.
package acpi

import (
	"errors"
	"fmt"
)

// Config describes the platform the tables advertise.
type Config struct {
	CPUs          int            // processors, APIC IDs 0..CPUs-1, all enabled
	IOAPICAddr    uint32         // 0xFEC00000
	IOAPICID      uint8          // the I/O APIC's id
	LAPICAddr     uint32         // 0xFEE00000
	SCI           uint8          // SCI IRQ, 9 (level, active high: add an interrupt source override)
	PM1aEventPort uint16         // PM1a_EVT_BLK (4 bytes: status, enable)
	PM1aCtrlPort  uint16         // PM1a_CNT_BLK (2 bytes)
	ResetPort     uint16         // FADT RESET_REG in system I/O space
	ResetValue    uint8          // value the OS writes to ResetPort to reset
	SleepTypeS5   uint8          // SLP_TYP value the DSDT's \_S5 package gives (the machine powers off on SLP_EN with this type)
	PCI           *PCIHostBridge // nil = no PCI in the DSDT/MCFG
	HasRTC        bool           // a CMOS RTC at 0x70 (else IAPC_BOOT_ARCH says none)
	HasI8042      bool           // FADT IAPC_BOOT_ARCH 8042 flag
	GED           *GED           // nil = no Generic Event Device
	VMGenID       *VMGenID       // nil = no VM Generation ID device; needs GED
}

// GED is a Generic Event Device (ACPI0013, ACPI 6.5 section 5.6.9): one
// interrupt whose handler, the device's _EVT method, reads the pending
// events from a one-byte register in I/O space and notifies the devices
// they concern. Linux binds it with its built-in evged driver. The
// register is read once per interrupt; the device clears what it
// returns and lowers its line.
type GED struct {
	GSI  uint32 // the interrupt: level-triggered, active high
	Port uint16 // the event register: one byte, a bit per event
}

// VMGenID is the VM Generation ID device of Microsoft's "Virtual Machine
// Generation ID" specification: a 128-bit ID in guest memory that
// changes whenever the VM starts again from saved state, announced by
// Notify(VGEN, 0x80) from the GED. Its _HID VMGENCTR and _CID
// VM_Gen_Counter are the two ids Linux's vmgenid driver matches (ACPICA
// upper-cases the _CID); ADDR gives the ID's address as a Package of two
// 32-bit integers, low then high.
type VMGenID struct {
	Addr  uint64 // the 16-byte ID: 8-byte aligned, in memory the OS does not use (reserved in E820)
	Event uint8  // the GED event bit (0 to 7) that says the ID changed
}

// vmgenIDLen is the size of the generation ID.
const vmgenIDLen = 16

// PCIHostBridge is the PCI root complex: segment 0 with ECAM
// configuration space and the windows it forwards to devices.
type PCIHostBridge struct {
	ECAMBase         uint64 // ECAM address of bus 0 (as MCFG defines it); buses BusStart..BusEnd take 1 MiB each from ECAMBase + BusStart<<20
	BusStart, BusEnd uint8  // bus numbers decoded by the bridge
	IOBase, IOSize   uint16 // I/O window (0 size = none)
	MMIO32Base       uint32 // 32-bit MMIO window
	MMIO32Size       uint32 // (0 size = none)
	MMIO64Base       uint64 // 64-bit MMIO window
	MMIO64Size       uint64 // (0 size = none)
	// INTx routes the legacy PCI interrupts of bus 0: INTx[p] is the GSI
	// that pin p (0 = INTA# .. 3 = INTD#) of device 0 raises, and device
	// d's pin p raises INTx[(d+p)%4] (the usual swizzle). It becomes
	// the bridge's _PRT (level-triggered, active-low, as PCI INTx is).
	// All zero: no _PRT.
	INTx [4]uint32
}

// ecam returns the part of the ECAM area the bridge's buses use.
func (p *PCIHostBridge) ecam() (base, size uint64) {
	return p.ECAMBase + uint64(p.BusStart)<<20, (uint64(p.BusEnd) - uint64(p.BusStart) + 1) << 20
}

// PCI configuration mechanism #1 ports, which the host bridge claims.
const (
	pciConfigPort = 0xCF8
	pciConfigLen  = 8
)

// maxCPUs is the most processors xAPIC ids can number (0xFF is broadcast).
const maxCPUs = 255

// Build lays out RSDP, XSDT, FADT (with FACS and DSDT, X_ fields set), MADT,
// and MCFG when PCI != nil, as one blob to be copied to guest-physical base
// (16-byte aligned). It returns the blob and the RSDP address (= base).
func Build(cfg Config, base uint64) (blob []byte, rsdp uint64, err error) {
	if err := cfg.validate(base); err != nil {
		return nil, 0, err
	}
	a := &aml{}
	dsdt := buildDSDT(a, &cfg)
	if a.err != nil {
		return nil, 0, a.err
	}
	l := &layout{base: base}
	l.reserve(rsdpLen, 16)
	facsAddr := l.place(buildFACS(), facsAlign)
	dsdtAddr := l.place(dsdt, tableAlign)
	tables := []uint64{
		l.place(buildFADT(&cfg, facsAddr, dsdtAddr), tableAlign),
		l.place(buildMADT(&cfg), tableAlign),
	}
	if cfg.PCI != nil {
		tables = append(tables, l.place(buildMCFG(cfg.PCI), tableAlign))
	}
	xsdtAddr := l.place(buildXSDT(tables), tableAlign)
	copy(l.buf, buildRSDP(xsdtAddr))
	if end := base + uint64(len(l.buf)); end > 1<<32 {
		return nil, 0, fmt.Errorf("acpi: tables at %#x end at %#x, above 4 GiB (the FADT's 32-bit DSDT pointer cannot reach them)", base, end)
	}
	return l.buf, base, nil
}

// layout places tables one after another in the blob.
type layout struct {
	base uint64
	buf  []byte
}

// reserve appends n zero bytes at the next align-aligned guest address.
func (l *layout) reserve(n int, align uint64) uint64 {
	for (l.base+uint64(len(l.buf)))%align != 0 {
		l.buf = append(l.buf, 0)
	}
	addr := l.base + uint64(len(l.buf))
	l.buf = append(l.buf, make([]byte, n)...)
	return addr
}

// place appends table at the next align-aligned guest address and returns it.
func (l *layout) place(table []byte, align uint64) uint64 {
	addr := l.reserve(0, align)
	l.buf = append(l.buf, table...)
	return addr
}

// validate checks cfg and base, naming every bad field.
func (cfg *Config) validate(base uint64) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("acpi: "+format, args...)) }
	if base == 0 || base%16 != 0 {
		bad("base %#x: must be non-zero and 16-byte aligned (the RSDP's alignment)", base)
	}
	if cfg.CPUs < 1 || cfg.CPUs > maxCPUs {
		bad("CPUs = %d: must be 1 to %d (xAPIC ids)", cfg.CPUs, maxCPUs)
	}
	if cfg.IOAPICAddr == 0 {
		bad("IOAPICAddr is 0")
	}
	if cfg.LAPICAddr == 0 {
		bad("LAPICAddr is 0")
	}
	if cfg.SCI == 0 || cfg.SCI == 2 || cfg.SCI > 15 {
		bad("SCI = %d: must be an ISA IRQ from 1 to 15 other than 2 (the timer's GSI)", cfg.SCI)
	}
	if cfg.SleepTypeS5 > 7 {
		bad("SleepTypeS5 = %d: SLP_TYP is 3 bits (0 to 7)", cfg.SleepTypeS5)
	}
	type portRange struct {
		field string
		port  uint16
		len   int
	}
	ports := []portRange{
		{"PM1aEventPort", cfg.PM1aEventPort, pm1EventLen},
		{"PM1aCtrlPort", cfg.PM1aCtrlPort, pm1CtrlLen},
		{"ResetPort", cfg.ResetPort, 1},
	}
	if g := cfg.GED; g != nil {
		ports = append(ports, portRange{"GED.Port", g.Port, 1})
		if g.GSI == 0 || g.GSI == timerGSI || g.GSI == uint32(cfg.SCI) {
			bad("GED.GSI = %d: must be a GSI other than 0, 2 (the timer's) and the SCI", g.GSI)
		}
	}
	if v := cfg.VMGenID; v != nil {
		switch {
		case cfg.GED == nil:
			bad("VMGenID needs a GED to notify it")
		case v.Addr == 0 || v.Addr%8 != 0 || v.Addr+vmgenIDLen < v.Addr:
			bad("VMGenID.Addr %#x: must be non-zero, 8-byte aligned, and not wrap around", v.Addr)
		}
		if v.Event > 7 {
			bad("VMGenID.Event = %d: the GED's register has bits 0 to 7", v.Event)
		}
	}
	for i, p := range ports {
		if p.port == 0 || int(p.port)+p.len > 0x10000 {
			bad("%s = %#x: must be a non-zero port with room for %d bytes", p.field, p.port, p.len)
			continue
		}
		for _, q := range ports[:i] {
			if q.port != 0 && p.port < q.port+uint16(q.len) && q.port < p.port+uint16(p.len) {
				bad("%s %#x-%#x overlaps %s %#x-%#x", p.field, p.port, int(p.port)+p.len-1, q.field, q.port, int(q.port)+q.len-1)
			}
		}
	}
	if cfg.PCI != nil {
		errs = append(errs, cfg.PCI.validate()...)
	}
	return errors.Join(errs...)
}

// validate checks the host bridge's windows, naming the bad fields.
func (p *PCIHostBridge) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("acpi: PCI."+format, args...)) }
	if p.BusStart > p.BusEnd {
		bad("BusStart %d is above BusEnd %d", p.BusStart, p.BusEnd)
		return errs
	}
	ecamBase, ecamSize := p.ecam()
	switch {
	case p.ECAMBase == 0 || p.ECAMBase%(1<<20) != 0:
		bad("ECAMBase %#x: must be non-zero and 1 MiB aligned", p.ECAMBase)
	case ecamBase+ecamSize < ecamBase:
		bad("ECAMBase %#x: the ECAM area of buses %d-%d wraps around", p.ECAMBase, p.BusStart, p.BusEnd)
	}
	if p.IOSize > 0 {
		end := int(p.IOBase) + int(p.IOSize)
		if end > 0x10000 {
			bad("IOBase %#x + IOSize %#x: runs past port 0xFFFF", p.IOBase, p.IOSize)
		} else if int(p.IOBase) < pciConfigPort+pciConfigLen && pciConfigPort < end {
			bad("IOBase %#x + IOSize %#x: overlaps the configuration ports 0xCF8-0xCFF", p.IOBase, p.IOSize)
		}
	}
	if p.MMIO32Size > 0 && uint64(p.MMIO32Base)+uint64(p.MMIO32Size) > 1<<32 {
		bad("MMIO32Base %#x + MMIO32Size %#x: runs past 4 GiB", p.MMIO32Base, p.MMIO32Size)
	}
	if p.INTx != [4]uint32{} {
		for i, g := range p.INTx {
			if g == 0 {
				bad("INTx[%d] is 0: set every pin's GSI or none", i)
			}
		}
	}
	if p.MMIO64Size > 0 && p.MMIO64Base+p.MMIO64Size < p.MMIO64Base {
		bad("MMIO64Base %#x + MMIO64Size %#x: wraps around", p.MMIO64Base, p.MMIO64Size)
	}
	windows := []struct {
		field      string
		base, size uint64
	}{
		{"MMIO32Base", uint64(p.MMIO32Base), uint64(p.MMIO32Size)},
		{"MMIO64Base", p.MMIO64Base, p.MMIO64Size},
	}
	for _, w := range windows {
		if w.size > 0 && w.base < ecamBase+ecamSize && ecamBase < w.base+w.size {
			bad("%s window %#x-%#x overlaps the ECAM area %#x-%#x", w.field, w.base, w.base+w.size-1, ecamBase, ecamBase+ecamSize-1)
		}
	}
	if a, b := windows[0], windows[1]; a.size > 0 && b.size > 0 && a.base < b.base+b.size && b.base < a.base+a.size {
		bad("MMIO32 and MMIO64 windows overlap")
	}
	return errs
}
