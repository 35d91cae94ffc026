package kvm

// Architectural x86-64 constants that code setting up vCPU state needs
// (Intel SDM vol. 3, AMD APM vol. 2). They describe the CPU, not KVM.

// CR0 bits.
const (
	CR0PE = 1 << 0  // protection enable
	CR0MP = 1 << 1  // monitor coprocessor
	CR0EM = 1 << 2  // x87 emulation
	CR0TS = 1 << 3  // task switched
	CR0ET = 1 << 4  // extension type (reads as 1)
	CR0NE = 1 << 5  // native x87 error reporting
	CR0WP = 1 << 16 // supervisor write protect
	CR0AM = 1 << 18 // alignment mask
	CR0NW = 1 << 29 // not write-through
	CR0CD = 1 << 30 // cache disable
	CR0PG = 1 << 31 // paging
)

// CR4 bits.
const (
	CR4VME        = 1 << 0
	CR4PVI        = 1 << 1
	CR4TSD        = 1 << 2
	CR4DE         = 1 << 3
	CR4PSE        = 1 << 4
	CR4PAE        = 1 << 5
	CR4MCE        = 1 << 6
	CR4PGE        = 1 << 7
	CR4PCE        = 1 << 8
	CR4OSFXSR     = 1 << 9
	CR4OSXMMEXCPT = 1 << 10
	CR4UMIP       = 1 << 11
	CR4LA57       = 1 << 12
	CR4VMXE       = 1 << 13
	CR4SMXE       = 1 << 14
	CR4FSGSBASE   = 1 << 16
	CR4PCIDE      = 1 << 17
	CR4OSXSAVE    = 1 << 18
	CR4SMEP       = 1 << 20
	CR4SMAP       = 1 << 21
	CR4PKE        = 1 << 22
)

// EFER (MSREFER) bits.
const (
	EFERSCE   = 1 << 0  // SYSCALL enable
	EFERLME   = 1 << 8  // long mode enable
	EFERLMA   = 1 << 10 // long mode active
	EFERNXE   = 1 << 11 // no-execute enable
	EFERSVME  = 1 << 12
	EFERFFXSR = 1 << 14
)

// RFLAGS bits.
const (
	RFLAGSCF       = 1 << 0
	RFLAGSReserved = 1 << 1 // always 1
	RFLAGSPF       = 1 << 2
	RFLAGSAF       = 1 << 4
	RFLAGSZF       = 1 << 6
	RFLAGSSF       = 1 << 7
	RFLAGSTF       = 1 << 8
	RFLAGSIF       = 1 << 9
	RFLAGSDF       = 1 << 10
	RFLAGSOF       = 1 << 11
	RFLAGSIOPL     = 3 << 12
	RFLAGSNT       = 1 << 14
	RFLAGSRF       = 1 << 16
	RFLAGSVM       = 1 << 17
	RFLAGSAC       = 1 << 18
	RFLAGSVIF      = 1 << 19
	RFLAGSVIP      = 1 << 20
	RFLAGSID       = 1 << 21
)

// XCR0 state component bits.
const (
	XCR0X87       = 1 << 0
	XCR0SSE       = 1 << 1
	XCR0AVX       = 1 << 2
	XCR0BNDRegs   = 1 << 3
	XCR0BNDCSR    = 1 << 4
	XCR0OpMask    = 1 << 5
	XCR0ZMMHi256  = 1 << 6
	XCR0Hi16ZMM   = 1 << 7
	XCR0PKRU      = 1 << 9
	XCR0TileCfg   = 1 << 17
	XCR0TileData  = 1 << 18
	XCR0AVX512All = XCR0OpMask | XCR0ZMMHi256 | XCR0Hi16ZMM
)

// Segment descriptor types (Segment.Type, with Segment.S set for code and
// data, clear for system segments).
const (
	SegTypeDataRW         = 0x3 // read/write data, accessed
	SegTypeCodeExecRead   = 0xb // execute/read code, accessed
	SegTypeLDT            = 0x2 // system: LDT
	SegTypeTSS16Busy      = 0x3 // system: busy 16-bit TSS
	SegTypeTSSAvailable64 = 0x9 // system: available 32/64-bit TSS
	SegTypeTSSBusy64      = 0xb // system: busy 32/64-bit TSS
)

// Model-specific registers.
const (
	MSRTSC              = 0x10  // IA32_TIME_STAMP_COUNTER
	MSRPlatformID       = 0x17  // IA32_PLATFORM_ID
	MSRAPICBase         = 0x1b  // IA32_APIC_BASE
	MSRFeatureControl   = 0x3a  // IA32_FEATURE_CONTROL
	MSRTSCAdjust        = 0x3b  // IA32_TSC_ADJUST
	MSRSpecCtrl         = 0x48  // IA32_SPEC_CTRL
	MSRPredCmd          = 0x49  // IA32_PRED_CMD
	MSRUcodeRev         = 0x8b  // IA32_BIOS_SIGN_ID
	MSRPlatformInfo     = 0xce  // MSR_PLATFORM_INFO
	MSRMTRRCap          = 0xfe  // IA32_MTRRCAP
	MSRArchCapabilities = 0x10a // IA32_ARCH_CAPABILITIES
	MSRSysenterCS       = 0x174 // IA32_SYSENTER_CS
	MSRSysenterESP      = 0x175 // IA32_SYSENTER_ESP
	MSRSysenterEIP      = 0x176 // IA32_SYSENTER_EIP
	MSRMCGCap           = 0x179 // IA32_MCG_CAP
	MSRMCGStatus        = 0x17a // IA32_MCG_STATUS
	MSRMCGCtl           = 0x17b // IA32_MCG_CTL
	MSRMiscEnable       = 0x1a0 // IA32_MISC_ENABLE
	MSRMTRRPhysBase0    = 0x200 // IA32_MTRR_PHYSBASE0; PHYSMASKn = 0x201+2n
	MSRMTRRPhysMask0    = 0x201 // IA32_MTRR_PHYSMASK0
	MSRMTRRFix64K00000  = 0x250 // IA32_MTRR_FIX64K_00000
	MSRMTRRFix16K80000  = 0x258 // IA32_MTRR_FIX16K_80000
	MSRMTRRFix16KA0000  = 0x259 // IA32_MTRR_FIX16K_A0000
	MSRMTRRFix4KC0000   = 0x268 // IA32_MTRR_FIX4K_C0000, up to FIX4K_F8000 = 0x26f
	MSRPAT              = 0x277 // IA32_PAT
	MSRMTRRDefType      = 0x2ff // IA32_MTRR_DEF_TYPE
	MSRTSCDeadline      = 0x6e0 // IA32_TSC_DEADLINE
	MSRX2APICBase       = 0x800 // first x2APIC register MSR (0x800 + offset/16)
	MSRXSS              = 0xda0 // IA32_XSS

	MSREFER         = 0xc0000080 // IA32_EFER
	MSRSTAR         = 0xc0000081 // SYSCALL target segments
	MSRLSTAR        = 0xc0000082 // 64-bit SYSCALL target
	MSRCSTAR        = 0xc0000083 // compatibility-mode SYSCALL target
	MSRSFMask       = 0xc0000084 // SYSCALL RFLAGS mask
	MSRFSBase       = 0xc0000100
	MSRGSBase       = 0xc0000101
	MSRKernelGSBase = 0xc0000102 // swapped with GS base by SWAPGS
	MSRTSCAux       = 0xc0000103
)

// MSR field values.
const (
	APICBaseBSP     = 1 << 8          // IA32_APIC_BASE: this is the bootstrap processor
	APICBaseX2APIC  = 1 << 10         // IA32_APIC_BASE: x2APIC mode
	APICBaseEnable  = 1 << 11         // IA32_APIC_BASE: APIC globally enabled
	APICBaseDefault = 0xfee00000      // the architectural APIC MMIO base
	APICBaseAddress = 0xffffffffff000 // IA32_APIC_BASE: mask of the base address (bits 51:12)

	MiscEnableFastString = 1 << 0 // IA32_MISC_ENABLE: fast REP MOVS/STOS

	MTRRDefTypeEnable      = 1 << 11 // IA32_MTRR_DEF_TYPE.E
	MTRRDefTypeFixedEnable = 1 << 10 // IA32_MTRR_DEF_TYPE.FE
	MTRRTypeUncachable     = 0
	MTRRTypeWriteBack      = 6

	PATDefault = 0x0007040600070406 // IA32_PAT at reset
)

// Local APIC register offsets, in the xAPIC MMIO page and in LAPICState.
const (
	LAPICID             = 0x20
	LAPICVersion        = 0x30
	LAPICTPR            = 0x80
	LAPICAPR            = 0x90
	LAPICPPR            = 0xa0
	LAPICEOI            = 0xb0
	LAPICRRD            = 0xc0
	LAPICLDR            = 0xd0
	LAPICDFR            = 0xe0
	LAPICSVR            = 0xf0
	LAPICISR            = 0x100 // 8 registers, 16 bytes apart
	LAPICTMR            = 0x180 // 8 registers, 16 bytes apart
	LAPICIRR            = 0x200 // 8 registers, 16 bytes apart
	LAPICESR            = 0x280
	LAPICLVTCMCI        = 0x2f0
	LAPICICRLow         = 0x300
	LAPICICRHigh        = 0x310
	LAPICLVTTimer       = 0x320
	LAPICLVTThermal     = 0x330
	LAPICLVTPerf        = 0x340
	LAPICLVTLINT0       = 0x350
	LAPICLVTLINT1       = 0x360
	LAPICLVTError       = 0x370
	LAPICTimerInitCount = 0x380
	LAPICTimerCurCount  = 0x390
	LAPICTimerDivide    = 0x3e0
)

// Local APIC register fields: delivery modes as they sit in bits 10:8 of an
// LVT entry or the ICR, and the other LVT/ICR/SVR bits.
const (
	APICDeliveryFixed          = 0 << 8
	APICDeliveryLowestPriority = 1 << 8
	APICDeliverySMI            = 2 << 8
	APICDeliveryNMI            = 4 << 8
	APICDeliveryINIT           = 5 << 8
	APICDeliveryStartUp        = 6 << 8
	APICDeliveryExtINT         = 7 << 8
	APICDeliveryModeMask       = 7 << 8

	APICDestLogical      = 1 << 11 // ICR: logical destination mode
	APICDeliveryPending  = 1 << 12 // LVT/ICR: delivery status
	APICActiveLow        = 1 << 13 // LVT LINT0/1: input polarity
	APICRemoteIRR        = 1 << 14 // LVT LINT0/1: remote IRR
	APICICRLevelAssert   = 1 << 14 // ICR: level assert (de-assert when clear)
	APICLevelTriggered   = 1 << 15 // LVT LINT0/1 and ICR: trigger mode
	APICLVTMasked        = 1 << 16 // LVT: masked
	APICTimerPeriodic    = 1 << 17 // LVT timer mode: periodic
	APICTimerTSCDeadline = 2 << 17 // LVT timer mode: TSC deadline
	APICDestSelf         = 1 << 18 // ICR shorthand: self
	APICDestAllInclSelf  = 2 << 18 // ICR shorthand: all including self
	APICDestAllExclSelf  = 3 << 18 // ICR shorthand: all excluding self

	APICSVREnable = 1 << 8 // SVR: APIC software enable
)

// MSI message format: the address selects the destination APIC, the data
// word carries the vector and delivery mode (same encoding as the LAPIC
// delivery modes above).
const (
	MSIAddressBase      = 0xfee00000
	MSIAddressDestShift = 12      // destination APIC ID in bits 19:12
	MSIAddressLogical   = 1 << 2  // destination mode: logical
	MSIDataLevelAssert  = 1 << 14 // level assert (level-triggered MSIs)
	MSIDataLevelTrigger = 1 << 15 // trigger mode: level
)
