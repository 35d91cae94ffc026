package acpi

import "encoding/binary"

var le = binary.LittleEndian

// Identity written into every table header.
const (
	oemID           = "PADDCK"
	oemTableID      = "PADDOCK "
	oemRevision     = 1
	creatorID       = "PDCK"
	creatorRevision = 1
	hypervisorID    = "PADDCKVM" // FADT Hypervisor Vendor Identity
)

// Sizes, alignments and revisions (ACPI 6.5, chapter 5).
const (
	headerLen  = 36
	rsdpLen    = 36
	fadtLen    = 276 // ACPI 6.0 and later
	facsLen    = 64
	facsAlign  = 64 // the FACS must be 64-byte aligned
	tableAlign = 16

	rsdpRevision = 2 // ACPI 2.0+ RSDP with XSDT
	xsdtRevision = 1
	fadtRevision = 6 // FADT major version
	fadtMinor    = 5 // ACPI 6.5
	facsVersion  = 2
	dsdtRevision = 2 // 64-bit AML integers
	madtRevision = 5 // ACPI 6.3+
	mcfgRevision = 1

	pm1EventLen = 4 // PM1a_EVT_BLK: 16-bit status + 16-bit enable
	pm1CtrlLen  = 2 // PM1a_CNT_BLK: 16-bit control
)

// sdt returns a table: the standard 36-byte header for signature sig,
// then body, with Length and Checksum set.
func sdt(sig string, revision byte, body []byte) []byte {
	t := make([]byte, headerLen, headerLen+len(body))
	copy(t[0:4], sig)
	t[8] = revision
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	le.PutUint32(t[24:], oemRevision)
	copy(t[28:32], creatorID)
	le.PutUint32(t[32:], creatorRevision)
	t = append(t, body...)
	le.PutUint32(t[4:], uint32(len(t)))
	t[9] = -sum(t)
	return t
}

// buildRSDP returns the Root System Description Pointer (ACPI 6.5, 5.2.5):
// revision 2, pointing at the XSDT only (RsdtAddress 0).
func buildRSDP(xsdt uint64) []byte {
	r := make([]byte, rsdpLen)
	copy(r[0:8], "RSD PTR ")
	copy(r[9:15], oemID)
	r[15] = rsdpRevision
	le.PutUint32(r[20:], rsdpLen)
	le.PutUint64(r[24:], xsdt)
	r[8] = -sum(r[:20])  // checksum of the ACPI 1.0 part
	r[32] = -sum(r[:36]) // extended checksum of the whole structure
	return r
}

// buildXSDT returns the Extended System Description Table: 64-bit pointers
// to the other tables (the DSDT and FACS hang off the FADT).
func buildXSDT(tables []uint64) []byte {
	body := make([]byte, 0, 8*len(tables))
	for _, t := range tables {
		body = le.AppendUint64(body, t)
	}
	return sdt("XSDT", xsdtRevision, body)
}

// buildFACS returns the Firmware ACPI Control Structure (ACPI 6.5, 5.2.10):
// no waking vector (no S3), global lock free.
func buildFACS() []byte {
	f := make([]byte, facsLen)
	copy(f[0:4], "FACS")
	le.PutUint32(f[4:], facsLen)
	f[32] = facsVersion
	return f
}

// Generic Address Structure fields (ACPI 6.5, 5.2.3.2).
const (
	gasSystemIO   = 1
	gasAccessByte = 1
	gasAccessWord = 2
)

// putGAS writes a Generic Address Structure for an I/O port register of
// bits bits, accessed access at a time.
func putGAS(b []byte, bits, access byte, port uint16) {
	b[0], b[1], b[2], b[3] = gasSystemIO, bits, 0, access
	le.PutUint64(b[4:], uint64(port))
}

// FADT flags (ACPI 6.5, table 5.10) and IA-PC boot architecture flags
// (table 5.11).
const (
	fadtWBINVD         = 1 << 0  // WBINVD works
	fadtProcC1         = 1 << 2  // C1 (HLT) on all processors
	fadtSleepButton    = 1 << 5  // no fixed-feature sleep button
	fadtFixRTC         = 1 << 6  // no RTC wake status in PM1
	fadtResetRegSup    = 1 << 10 // RESET_REG is valid
	fadtForceAPICPhys  = 1 << 19 // FORCE_APIC_PHYSICAL_DESTINATION_MODE
	bootLegacyDevices  = 1 << 0
	boot8042           = 1 << 1
	bootNoVGA          = 1 << 2
	bootNoCMOSRTC      = 1 << 5
	latencyUnsupported = 0x0FFF // P_LVL2_LAT > 100, P_LVL3_LAT > 1000: no C2/C3
)

// FADT field offsets (ACPI 6.5, table 5.9).
const (
	fadtFirmwareCtrl  = 36
	fadtDSDT          = 40
	fadtSCIInt        = 46
	fadtSMICmd        = 48
	fadtPM1aEvtBlk    = 56
	fadtPM1aCntBlk    = 64
	fadtPM1EvtLen     = 88
	fadtPM1CntLen     = 89
	fadtPLvl2Lat      = 96
	fadtPLvl3Lat      = 98
	fadtCentury       = 108
	fadtIAPCBootArch  = 109
	fadtFlags         = 112
	fadtResetReg      = 116
	fadtResetValue    = 128
	fadtMinorVersion  = 131
	fadtXFirmwareCtrl = 132
	fadtXDSDT         = 140
	fadtXPM1aEvtBlk   = 148
	fadtXPM1aCntBlk   = 172
	fadtHypervisorID  = 268
)

// buildFADT returns the Fixed ACPI Description Table. The power button is
// a fixed feature (PWR_BUTTON clear); SMI_CMD is 0, so the platform is
// always in ACPI mode and PM1 control must read back SCI_EN set. The FACS is
// given only in X_FIRMWARE_CTRL (the spec wants FIRMWARE_CTRL zero then);
// the DSDT in both DSDT and X_DSDT, which agree.
func buildFADT(cfg *Config, facs, dsdt uint64) []byte {
	f := make([]byte, fadtLen)
	le.PutUint32(f[fadtDSDT:], uint32(dsdt))
	le.PutUint16(f[fadtSCIInt:], uint16(cfg.SCI))
	le.PutUint32(f[fadtPM1aEvtBlk:], uint32(cfg.PM1aEventPort))
	le.PutUint32(f[fadtPM1aCntBlk:], uint32(cfg.PM1aCtrlPort))
	f[fadtPM1EvtLen] = pm1EventLen
	f[fadtPM1CntLen] = pm1CtrlLen
	le.PutUint16(f[fadtPLvl2Lat:], latencyUnsupported)
	le.PutUint16(f[fadtPLvl3Lat:], latencyUnsupported)
	f[fadtCentury] = 0 // no century register: the RTC device need not have one
	boot := uint16(bootNoVGA)
	if cfg.HasI8042 {
		boot |= boot8042
	}
	if cfg.HasRTC || cfg.HasI8042 {
		boot |= bootLegacyDevices
	}
	if !cfg.HasRTC {
		boot |= bootNoCMOSRTC
	}
	le.PutUint16(f[fadtIAPCBootArch:], boot)
	flags := uint32(fadtWBINVD | fadtProcC1 | fadtSleepButton | fadtFixRTC | fadtResetRegSup)
	if cfg.CPUs > 8 {
		flags |= fadtForceAPICPhys // logical flat mode addresses 8 CPUs at most
	}
	le.PutUint32(f[fadtFlags:], flags)
	putGAS(f[fadtResetReg:], 8, gasAccessByte, cfg.ResetPort)
	f[fadtResetValue] = cfg.ResetValue
	f[fadtMinorVersion] = fadtMinor
	le.PutUint64(f[fadtXFirmwareCtrl:], facs)
	le.PutUint64(f[fadtXDSDT:], dsdt)
	putGAS(f[fadtXPM1aEvtBlk:], 8*pm1EventLen, gasAccessWord, cfg.PM1aEventPort)
	putGAS(f[fadtXPM1aCntBlk:], 8*pm1CtrlLen, gasAccessWord, cfg.PM1aCtrlPort)
	copy(f[fadtHypervisorID:], hypervisorID)
	return sdt("FACP", fadtRevision, f[headerLen:])
}

// MADT structure types and flags (ACPI 6.5, 5.2.12).
const (
	madtPCATCompat     = 1 << 0 // dual 8259s present (KVM's irqchip has them)
	madtLocalAPIC      = 0
	madtIOAPIC         = 1
	madtOverride       = 2
	madtLocalAPICNMI   = 4
	lapicEnabled       = 1 << 0
	isaBus             = 0
	mpsConforming      = 0x0
	mpsActiveHigh      = 0x1
	mpsLevel           = 0x3 << 2
	allProcessors      = 0xFF
	timerIRQ, timerGSI = 0, 2
	lint1              = 1
)

// buildMADT returns the Multiple APIC Description Table: one enabled local
// APIC per CPU (processor UID = APIC ID = index), the I/O APIC at GSI 0,
// overrides for the timer (IRQ0 -> GSI2) and the SCI (level, active high),
// and NMI on LINT1 of every processor.
func buildMADT(cfg *Config) []byte {
	b := le.AppendUint32(nil, cfg.LAPICAddr)
	b = le.AppendUint32(b, madtPCATCompat)
	for i := 0; i < cfg.CPUs; i++ {
		b = append(b, madtLocalAPIC, 8, byte(i), byte(i))
		b = le.AppendUint32(b, lapicEnabled)
	}
	b = append(b, madtIOAPIC, 12, cfg.IOAPICID, 0)
	b = le.AppendUint32(b, cfg.IOAPICAddr)
	b = le.AppendUint32(b, 0) // GSI base
	override := func(irq uint8, gsi uint32, flags uint16) {
		b = append(b, madtOverride, 10, isaBus, irq)
		b = le.AppendUint32(b, gsi)
		b = le.AppendUint16(b, flags)
	}
	override(timerIRQ, timerGSI, mpsConforming)
	override(cfg.SCI, uint32(cfg.SCI), mpsActiveHigh|mpsLevel)
	b = append(b, madtLocalAPICNMI, 6, allProcessors)
	b = le.AppendUint16(b, mpsConforming)
	b = append(b, lint1)
	return sdt("APIC", madtRevision, b)
}

// buildMCFG returns the PCI Express memory-mapped configuration table
// (PCI Firmware Specification 3.2, 4.1.2): one allocation for segment 0.
func buildMCFG(p *PCIHostBridge) []byte {
	b := make([]byte, 8) // reserved
	b = le.AppendUint64(b, p.ECAMBase)
	b = le.AppendUint16(b, 0) // segment group
	b = append(b, p.BusStart, p.BusEnd)
	b = le.AppendUint32(b, 0) // reserved
	return sdt("MCFG", mcfgRevision, b)
}
