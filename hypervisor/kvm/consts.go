package kvm

import "unsafe"

// This file holds every constant taken from the kernel's KVM UAPI
// (linux/kvm.h, asm/kvm.h, asm/kvm_para.h). The tests compare each of them
// with the value the installed headers give. Architectural x86 constants
// (control register bits, MSR numbers, LAPIC registers) are in x86.go.

// APIVersion is the only KVM API version this package speaks
// (KVM_API_VERSION); it has not changed since Linux 2.6.22.
const APIVersion = 12

// ioctl request encoding, as in the kernel's include/uapi/asm-generic/ioctl.h:
// dir(2) | size(14) | type(8) | nr(8), from the high bit down.
const (
	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30

	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	// iocSizeMax is the largest argument size the 14-bit field can encode.
	iocSizeMax = 1<<14 - 1

	kvmio = 0xAE // KVMIO, the ioctl type of every KVM request

	// ioN, ioR, ioW and ioWR are _IO, _IOR, _IOW and _IOWR without the size
	// and number: each request below ORs in unsafe.Sizeof(arg)<<iocSizeShift
	// and its number.
	ioN  = iocNone<<iocDirShift | kvmio<<iocTypeShift
	ioR  = iocRead<<iocDirShift | kvmio<<iocTypeShift
	ioW  = iocWrite<<iocDirShift | kvmio<<iocTypeShift
	ioWR = (iocRead|iocWrite)<<iocDirShift | kvmio<<iocTypeShift
)

// ioctl requests on the /dev/kvm descriptor.
const (
	kvmGetAPIVersion          = ioN | 0x00
	kvmCreateVM               = ioN | 0x01
	kvmGetMSRIndexList        = ioWR | unsafe.Sizeof(msrListHeader{})<<iocSizeShift | 0x02
	kvmCheckExtension         = ioN | 0x03
	kvmGetVCPUMmapSize        = ioN | 0x04
	kvmGetSupportedCPUID      = ioWR | unsafe.Sizeof(cpuid2Header{})<<iocSizeShift | 0x05
	kvmGetEmulatedCPUID       = ioWR | unsafe.Sizeof(cpuid2Header{})<<iocSizeShift | 0x09
	kvmGetMSRFeatureIndexList = ioWR | unsafe.Sizeof(msrListHeader{})<<iocSizeShift | 0x0a
	kvmGetMSRs                = ioWR | unsafe.Sizeof(msrsHeader{})<<iocSizeShift | 0x88
	kvmSetMSRs                = ioW | unsafe.Sizeof(msrsHeader{})<<iocSizeShift | 0x89
	kvmSetCPUID2              = ioW | unsafe.Sizeof(cpuid2Header{})<<iocSizeShift | 0x90
	kvmGetCPUID2              = ioWR | unsafe.Sizeof(cpuid2Header{})<<iocSizeShift | 0x91
	kvmSetUserMemoryRegion    = ioW | unsafe.Sizeof(MemoryRegion{})<<iocSizeShift | 0x46
	kvmSetTSSAddr             = ioN | 0x47
	kvmSetIdentityMapAddr     = ioW | unsafe.Sizeof(uint64(0))<<iocSizeShift | 0x48
	kvmCreateVCPU             = ioN | 0x41
	kvmGetDirtyLog            = ioW | unsafe.Sizeof(dirtyLog{})<<iocSizeShift | 0x42
	kvmCreateIRQChip          = ioN | 0x60
	kvmIRQLine                = ioW | unsafe.Sizeof(irqLevel{})<<iocSizeShift | 0x61
	kvmGetIRQChip             = ioWR | unsafe.Sizeof(IRQChip{})<<iocSizeShift | 0x62
	kvmSetIRQChip             = ioR | unsafe.Sizeof(IRQChip{})<<iocSizeShift | 0x63
	kvmSetGSIRouting          = ioW | unsafe.Sizeof(irqRoutingHeader{})<<iocSizeShift | 0x6a
	kvmIRQFD                  = ioW | unsafe.Sizeof(irqfd{})<<iocSizeShift | 0x76
	kvmCreatePIT2             = ioW | unsafe.Sizeof(pitConfig{})<<iocSizeShift | 0x77
	kvmIOEventFD              = ioW | unsafe.Sizeof(ioeventfd{})<<iocSizeShift | 0x79
	kvmSetClock               = ioW | unsafe.Sizeof(ClockData{})<<iocSizeShift | 0x7b
	kvmGetClock               = ioR | unsafe.Sizeof(ClockData{})<<iocSizeShift | 0x7c
	kvmGetPIT2                = ioR | unsafe.Sizeof(PITState2{})<<iocSizeShift | 0x9f
	kvmSetPIT2                = ioW | unsafe.Sizeof(PITState2{})<<iocSizeShift | 0xa0
	kvmSetTSCKHz              = ioN | 0xa2
	kvmGetTSCKHz              = ioN | 0xa3
	kvmSignalMSI              = ioW | unsafe.Sizeof(msi{})<<iocSizeShift | 0xa5
	kvmEnableCap              = ioW | unsafe.Sizeof(enableCap{})<<iocSizeShift | 0xa3
	kvmRun                    = ioN | 0x80
	kvmGetRegs                = ioR | unsafe.Sizeof(Regs{})<<iocSizeShift | 0x81
	kvmSetRegs                = ioW | unsafe.Sizeof(Regs{})<<iocSizeShift | 0x82
	kvmGetSregs               = ioR | unsafe.Sizeof(Sregs{})<<iocSizeShift | 0x83
	kvmSetSregs               = ioW | unsafe.Sizeof(Sregs{})<<iocSizeShift | 0x84
	kvmTranslate              = ioWR | unsafe.Sizeof(Translation{})<<iocSizeShift | 0x85
	kvmInterrupt              = ioW | unsafe.Sizeof(uint32(0))<<iocSizeShift | 0x86
	kvmGetFPU                 = ioR | unsafe.Sizeof(FPU{})<<iocSizeShift | 0x8c
	kvmSetFPU                 = ioW | unsafe.Sizeof(FPU{})<<iocSizeShift | 0x8d
	kvmGetLAPIC               = ioR | unsafe.Sizeof(LAPICState{})<<iocSizeShift | 0x8e
	kvmSetLAPIC               = ioW | unsafe.Sizeof(LAPICState{})<<iocSizeShift | 0x8f
	kvmGetMPState             = ioR | unsafe.Sizeof(MPState(0))<<iocSizeShift | 0x98
	kvmSetMPState             = ioW | unsafe.Sizeof(MPState(0))<<iocSizeShift | 0x99
	kvmNMI                    = ioN | 0x9a
	kvmSetGuestDebug          = ioW | unsafe.Sizeof(GuestDebug{})<<iocSizeShift | 0x9b
	kvmGetVCPUEvents          = ioR | unsafe.Sizeof(VCPUEvents{})<<iocSizeShift | 0x9f
	kvmSetVCPUEvents          = ioW | unsafe.Sizeof(VCPUEvents{})<<iocSizeShift | 0xa0
	kvmGetDebugRegs           = ioR | unsafe.Sizeof(DebugRegs{})<<iocSizeShift | 0xa1
	kvmSetDebugRegs           = ioW | unsafe.Sizeof(DebugRegs{})<<iocSizeShift | 0xa2
	kvmGetXSave               = ioR | xsaveLegacySize<<iocSizeShift | 0xa4
	kvmSetXSave               = ioW | xsaveLegacySize<<iocSizeShift | 0xa5
	kvmGetXCRs                = ioR | unsafe.Sizeof(XCRs{})<<iocSizeShift | 0xa6
	kvmSetXCRs                = ioW | unsafe.Sizeof(XCRs{})<<iocSizeShift | 0xa7
	kvmKVMClockCtrl           = ioN | 0xad
	kvmGetXSave2              = ioR | xsaveLegacySize<<iocSizeShift | 0xcf
)

// xsaveLegacySize is sizeof(struct kvm_xsave): the 4 KiB legacy region. The
// flexible array that follows it (used by KVM_GET_XSAVE2) adds no size.
const xsaveLegacySize = uintptr(4096)

// Capabilities (KVM_CAP_*), for System.CheckExtension, VM.CheckExtension and
// VM.EnableCap.
const (
	CapIRQChip                Cap = 0
	CapHLT                    Cap = 1
	CapUserMemory             Cap = 3
	CapSetTSSAddr             Cap = 4
	CapVAPIC                  Cap = 6
	CapExtCPUID               Cap = 7
	CapClockSource            Cap = 8
	CapNrVCPUs                Cap = 9
	CapNrMemslots             Cap = 10
	CapPIT                    Cap = 11
	CapNopIODelay             Cap = 12
	CapMPState                Cap = 14
	CapCoalescedMMIO          Cap = 15
	CapSyncMMU                Cap = 16
	CapUserNMI                Cap = 22
	CapSetGuestDebug          Cap = 23
	CapReinjectControl        Cap = 24
	CapIRQRouting             Cap = 25
	CapIRQInjectStatus        Cap = 26
	CapMCE                    Cap = 31
	CapIRQFD                  Cap = 32
	CapPIT2                   Cap = 33
	CapSetBootCPUID           Cap = 34
	CapPITState2              Cap = 35
	CapIOEventFD              Cap = 36
	CapSetIdentityMapAddr     Cap = 37
	CapAdjustClock            Cap = 39
	CapInternalErrorData      Cap = 40
	CapVCPUEvents             Cap = 41
	CapIntrShadow             Cap = 49
	CapDebugRegs              Cap = 50
	CapEnableCap              Cap = 54
	CapXSave                  Cap = 55
	CapXCRS                   Cap = 56
	CapAsyncPF                Cap = 59
	CapTSCControl             Cap = 60
	CapGetTSCKHz              Cap = 61
	CapMaxVCPUs               Cap = 66
	CapOneReg                 Cap = 70
	CapTSCDeadlineTimer       Cap = 72
	CapSyncRegs               Cap = 74
	CapKVMClockCtrl           Cap = 76
	CapSignalMSI              Cap = 77
	CapReadonlyMem            Cap = 81
	CapIRQFDResample          Cap = 82
	CapDeviceCtrl             Cap = 89
	CapExtEmulCPUID           Cap = 95
	CapIOAPICPolarityIgnored  Cap = 97
	CapEnableCapVM            Cap = 98
	CapIOEventFDNoLength      Cap = 100
	CapVMAttributes           Cap = 101
	CapCheckExtensionVM       Cap = 105
	CapDisableQuirks          Cap = 116
	CapX86SMM                 Cap = 117
	CapMultiAddressSpace      Cap = 118
	CapGuestDebugHWBPs        Cap = 119
	CapGuestDebugHWWPs        Cap = 120
	CapSplitIRQChip           Cap = 121
	CapIOEventFDAnyLength     Cap = 122
	CapVCPUAttributes         Cap = 127
	CapMaxVCPUID              Cap = 128
	CapX2APICAPI              Cap = 129
	CapMSIDevID               Cap = 131
	CapImmediateExit          Cap = 136
	CapX86DisableExits        Cap = 143
	CapGetMSRFeatures         Cap = 153
	CapNestedState            Cap = 157
	CapMSRPlatformInfo        Cap = 159
	CapCoalescedPIO           Cap = 162
	CapExceptionPayload       Cap = 164
	CapManualDirtyLogProtect2 Cap = 168
	CapPMUEventFilter         Cap = 173
	CapHaltPoll               Cap = 182
	CapSmallerMaxPhyAddr      Cap = 185
	CapStealTime              Cap = 187
	CapX86UserSpaceMSR        Cap = 188
	CapX86MSRFilter           Cap = 189
	CapEnforcePVFeatureCPUID  Cap = 190
	CapDirtyLogRing           Cap = 192
	CapX86BusLockExit         Cap = 193
	CapSetGuestDebug2         Cap = 195
	CapSregs2                 Cap = 200
	CapExitHypercall          Cap = 201
	CapBinaryStatsFD          Cap = 203
	CapExitOnEmulationFailure Cap = 204
	CapVMGPABits              Cap = 207
	CapXSave2                 Cap = 208
	CapSysAttributes          Cap = 209
	CapPMUCapability          Cap = 212
	CapDisableQuirks2         Cap = 213
	CapVMTSCControl           Cap = 214
	CapSystemEventData        Cap = 215
	CapX86TripleFaultEvent    Cap = 218
	CapX86NotifyVMExit        Cap = 219
	CapVMDisableNXHugePages   Cap = 220
	CapDirtyLogRingAcqRel     Cap = 223
)

// Exit reasons (KVM_EXIT_*), as VCPU.ExitReason reports them after Run.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitSetTPR        ExitReason = 11
	ExitTPRAccess     ExitReason = 12
	ExitNMI           ExitReason = 16
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
	ExitIOAPICEOI     ExitReason = 26
	ExitHyperV        ExitReason = 27
	ExitX86RDMSR      ExitReason = 29
	ExitX86WRMSR      ExitReason = 30
	ExitDirtyRingFull ExitReason = 31
	ExitAPResetHold   ExitReason = 32
	ExitX86BusLock    ExitReason = 33
	ExitXen           ExitReason = 34
	ExitNotify        ExitReason = 37
	ExitMemoryFault   ExitReason = 39 // KVM_EXIT_MEMORY_FAULT, Linux 6.8+
)

// kvm_run.io.direction values.
const (
	exitIOIn  = 0 // KVM_EXIT_IO_IN
	exitIOOut = 1 // KVM_EXIT_IO_OUT
)

// kvm_run.flags bits (KVM_RUN_X86_*).
const (
	RunFlagSMM     = 1 << 0 // KVM_RUN_X86_SMM: the vCPU is in system management mode
	RunFlagBusLock = 1 << 1 // KVM_RUN_X86_BUS_LOCK: the exit follows a bus lock
)

// System event types (KVM_SYSTEM_EVENT_*), in SystemEvent.Type.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
	SystemEventWakeup   = 4
	SystemEventSuspend  = 5
	SystemEventSEVTerm  = 6
)

// Internal error sub-reasons (KVM_INTERNAL_ERROR_*), in InternalError.Suberror.
const (
	InternalErrorEmulation            = 1 // the instruction emulator failed
	InternalErrorSimulEx              = 2 // unexpected simultaneous exceptions
	InternalErrorDeliveryEv           = 3 // unexpected exit while delivering an event
	InternalErrorUnexpectedExitReason = 4 // unexpected hardware exit reason
)

// MSR exit reasons (KVM_MSR_EXIT_REASON_*), in MSRExit.Reason; which of them
// exit to user space is chosen with EnableCap(CapX86UserSpaceMSR, mask).
const (
	MSRExitReasonInval   = 1 << 0 // the MSR access would raise #GP
	MSRExitReasonUnknown = 1 << 1 // KVM does not know the MSR
	MSRExitReasonFilter  = 1 << 2 // the MSR filter denied the access
)

// Multiprocessing states (KVM_MP_STATE_*) for VCPU.MPState and SetMPState.
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1
	MPStateInitReceived  MPState = 2
	MPStateHalted        MPState = 3
	MPStateSipiReceived  MPState = 4
	MPStateAPResetHold   MPState = 9
	MPStateSuspended     MPState = 10
)

// Memory slot flags (KVM_MEM_*) for MemoryRegion.Flags.
const (
	MemLogDirtyPages = 1 << 0 // track writes for VM.DirtyLog
	MemReadonly      = 1 << 1 // guest writes exit as MMIO (needs CapReadonlyMem)
)

// CPUID entry flags (KVM_CPUID_FLAG_*) for CPUIDEntry.Flags.
const (
	CPUIDFlagSignificantIndex = 1 << 0 // the leaf depends on ECX (Index)
	CPUIDFlagStatefulFunc     = 1 << 1 // obsolete stateful leaf 2 semantics
	CPUIDFlagStateReadNext    = 1 << 2 // obsolete stateful leaf 2 semantics
)

// Interrupt controller chip ids (KVM_IRQCHIP_*) for VM.IRQChip.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// IOAPICNumPins is the number of IOAPIC input pins KVM emulates
// (KVM_IOAPIC_NUM_PINS).
const IOAPICNumPins = 24

// PIT configuration and state flags.
const (
	PITSpeakerDummy       = 1 // KVM_PIT_SPEAKER_DUMMY, for VM.CreatePIT2
	PITFlagsHPETLegacy    = 1 // KVM_PIT_FLAGS_HPET_LEGACY, in PITState2.Flags
	PITFlagsSpeakerDataOn = 2 // KVM_PIT_FLAGS_SPEAKER_DATA_ON, in PITState2.Flags
)

// ioeventfd flags (KVM_IOEVENTFD_FLAG_*) for IOEvent.Flags.
const (
	IOEventDatamatch IOEventFlags = 1 << 0 // only accesses writing Datamatch signal
	IOEventPIO       IOEventFlags = 1 << 1 // Addr is an I/O port, not an MMIO address
	IOEventDeassign  IOEventFlags = 1 << 2 // remove a registration
)

// irqfd flags (KVM_IRQFD_FLAG_*).
const (
	irqfdFlagDeassign = 1 << 0
	irqfdFlagResample = 1 << 1
)

// GSI routing entry types (KVM_IRQ_ROUTING_*) for RoutingEntry.Type.
const (
	RoutingIRQChip RoutingType = 1
	RoutingMSI     RoutingType = 2
)

// MSIValidDevID (KVM_MSI_VALID_DEVID) marks RoutingEntry.DevID (in
// RoutingEntry.Flags) as valid.
const MSIValidDevID = 1 << 0

// kvm_clock_data flags (KVM_CLOCK_*) for ClockData.Flags.
const (
	ClockTSCStable = 1 << 1 // the clock is the same on every vCPU
	ClockRealtime  = 1 << 2 // ClockData.Realtime is valid
	ClockHostTSC   = 1 << 3 // ClockData.HostTSC is valid
)

// kvm_vcpu_events flags (KVM_VCPUEVENT_VALID_*): which optional fields
// SetVCPUEvents should apply.
const (
	VCPUEventValidNMIPending  = 1 << 0
	VCPUEventValidSIPIVector  = 1 << 1
	VCPUEventValidShadow      = 1 << 2
	VCPUEventValidSMM         = 1 << 3
	VCPUEventValidPayload     = 1 << 4
	VCPUEventValidTripleFault = 1 << 5
)

// Interrupt shadow states (KVM_X86_SHADOW_INT_*) in VCPUEvents.Interrupt.Shadow.
const (
	ShadowIntMovSS = 1 << 0
	ShadowIntSTI   = 1 << 1
)

// Guest debug control bits (KVM_GUESTDBG_*) for GuestDebug.Control.
const (
	GuestDebugEnable     = 1 << 0
	GuestDebugSingleStep = 1 << 1
	GuestDebugUseSWBP    = 1 << 16
	GuestDebugUseHWBP    = 1 << 17
	GuestDebugInjectDB   = 1 << 18
	GuestDebugInjectBP   = 1 << 19
	GuestDebugBlockIRQ   = 1 << 20
)

// Arguments of EnableCap(CapX2APICAPI, ...) (KVM_X2APIC_API_*).
const (
	X2APICAPIUse32BitIDs           = 1 << 0
	X2APICAPIDisableBroadcastQuirk = 1 << 1
)

// Arguments of EnableCap(CapX86DisableExits, ...) (KVM_X86_DISABLE_EXITS_*).
const (
	DisableExitsMWait  = 1 << 0
	DisableExitsHLT    = 1 << 1
	DisableExitsPause  = 1 << 2
	DisableExitsCState = 1 << 3
)

// KVM's paravirtual CPUID leaves and features (asm/kvm_para.h). A guest
// finds KVM by reading Signature from EBX, ECX, EDX of CPUIDSignatureLeaf;
// EAX of CPUIDFeaturesLeaf holds the Feature* bits (bit numbers, not masks).
const (
	CPUIDSignatureLeaf = 0x40000000 // KVM_CPUID_SIGNATURE
	CPUIDFeaturesLeaf  = 0x40000001 // KVM_CPUID_FEATURES
	Signature          = "KVMKVMKVM\x00\x00\x00"

	FeatureClockSource       = 0  // KVM_FEATURE_CLOCKSOURCE: MSRs 0x11/0x12
	FeatureNopIODelay        = 1  // KVM_FEATURE_NOP_IO_DELAY
	FeatureMMUOp             = 2  // KVM_FEATURE_MMU_OP (obsolete)
	FeatureClockSource2      = 3  // KVM_FEATURE_CLOCKSOURCE2: MSRs 0x4b564d00/01
	FeatureAsyncPF           = 4  // KVM_FEATURE_ASYNC_PF
	FeatureStealTime         = 5  // KVM_FEATURE_STEAL_TIME
	FeaturePVEOI             = 6  // KVM_FEATURE_PV_EOI
	FeaturePVUnhalt          = 7  // KVM_FEATURE_PV_UNHALT
	FeaturePVTLBFlush        = 9  // KVM_FEATURE_PV_TLB_FLUSH
	FeatureAsyncPFVMExit     = 10 // KVM_FEATURE_ASYNC_PF_VMEXIT
	FeaturePVSendIPI         = 11 // KVM_FEATURE_PV_SEND_IPI
	FeaturePollControl       = 12 // KVM_FEATURE_POLL_CONTROL
	FeaturePVSchedYield      = 13 // KVM_FEATURE_PV_SCHED_YIELD
	FeatureAsyncPFInt        = 14 // KVM_FEATURE_ASYNC_PF_INT
	FeatureMSIExtDestID      = 15 // KVM_FEATURE_MSI_EXT_DEST_ID
	FeatureHCMapGPARange     = 16 // KVM_FEATURE_HC_MAP_GPA_RANGE
	FeatureMigrationControl  = 17 // KVM_FEATURE_MIGRATION_CONTROL
	FeatureClockSourceStable = 24 // KVM_FEATURE_CLOCKSOURCE_STABLE_BIT

	HintsRealtime = 0 // KVM_HINTS_REALTIME, a bit of EDX of CPUIDFeaturesLeaf
)

// KVM's paravirtual MSRs (asm/kvm_para.h).
const (
	MSRKVMWallClock        = 0x11       // MSR_KVM_WALL_CLOCK (old)
	MSRKVMSystemTime       = 0x12       // MSR_KVM_SYSTEM_TIME (old)
	MSRKVMWallClockNew     = 0x4b564d00 // MSR_KVM_WALL_CLOCK_NEW
	MSRKVMSystemTimeNew    = 0x4b564d01 // MSR_KVM_SYSTEM_TIME_NEW
	MSRKVMAsyncPFEn        = 0x4b564d02 // MSR_KVM_ASYNC_PF_EN
	MSRKVMStealTime        = 0x4b564d03 // MSR_KVM_STEAL_TIME
	MSRKVMPVEOIEn          = 0x4b564d04 // MSR_KVM_PV_EOI_EN
	MSRKVMPollControl      = 0x4b564d05 // MSR_KVM_POLL_CONTROL
	MSRKVMAsyncPFInt       = 0x4b564d06 // MSR_KVM_ASYNC_PF_INT
	MSRKVMAsyncPFAck       = 0x4b564d07 // MSR_KVM_ASYNC_PF_ACK
	MSRKVMMigrationControl = 0x4b564d08 // MSR_KVM_MIGRATION_CONTROL

	// MSRKVMEnabled (KVM_MSR_ENABLED) is bit 0 of the kvmclock, steal-time
	// and PV-EOI MSRs: the guest has set the structure's address.
	MSRKVMEnabled = 1
)

// Offsets, in pages, of the extra pages mapped after kvm_run on a vCPU fd.
const (
	PIOPageOffset           = 1 // KVM_PIO_PAGE_OFFSET
	CoalescedMMIOPageOffset = 2 // KVM_COALESCED_MMIO_PAGE_OFFSET
)

// Exception vectors (asm/kvm.h *_VECTOR), as in VCPUEvents.Exception.Nr and
// ExitException.
const (
	VectorDE = 0  // divide error
	VectorDB = 1  // debug
	VectorBP = 3  // breakpoint
	VectorOF = 4  // overflow
	VectorBR = 5  // BOUND range exceeded
	VectorUD = 6  // invalid opcode
	VectorNM = 7  // device not available
	VectorDF = 8  // double fault
	VectorTS = 10 // invalid TSS
	VectorNP = 11 // segment not present
	VectorSS = 12 // stack-segment fault
	VectorGP = 13 // general protection
	VectorPF = 14 // page fault
	VectorMF = 16 // x87 floating-point error
	VectorAC = 17 // alignment check
	VectorMC = 18 // machine check
	VectorXM = 19 // SIMD floating-point exception
	VectorVE = 20 // virtualization exception
)
