package kvm

import "encoding/binary"

// Regs holds the general-purpose registers of a vCPU.
// It mirrors struct kvm_regs (KVM_GET_REGS, KVM_SET_REGS).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is a segment register with its hidden descriptor cache.
// It mirrors struct kvm_segment. Type is the 4-bit descriptor type; the
// one-bit attributes (Present, DPL is two bits, DB, S, L, G, AVL, Unusable)
// each take a byte.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is a descriptor table register (GDTR, IDTR).
// It mirrors struct kvm_dtable.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs holds the segment, control and descriptor table registers.
// It mirrors struct kvm_sregs (KVM_GET_SREGS, KVM_SET_SREGS).
// InterruptBitmap has one bit per vector: the external interrupt pending
// injection, if any (at most one bit is set); it is only used without an
// in-kernel irqchip.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64
}

// FPU holds the x87 and SSE state in FXSAVE layout.
// It mirrors struct kvm_fpu (KVM_GET_FPU, KVM_SET_FPU).
// FTWX is the abridged tag word of FXSAVE. KVM (Linux up to at least 6.18)
// does not transfer MXCSR: KVM_GET_FPU reports 0 and KVM_SET_FPU ignores
// it. Save and restore the SSE and AVX state with XSave and SetXSave.
type FPU struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

// XSave holds a vCPU's XSAVE area: the bytes of struct kvm_xsave, a 4 KiB
// legacy region in XSAVE (non-compacted) format, followed, when
// CheckExtension(CapXSave2) on the VM reports more than 4096 bytes, by the
// dynamically enabled state components.
type XSave struct {
	Region []byte
}

// Offsets in XSave.Region defined by the XSAVE format.
const (
	XSaveHeaderOffset = 512 // the XSAVE header: XSTATE_BV at +0, XCOMP_BV at +8
	XSaveLegacySize   = 4096
)

// XStateBV returns the XSTATE_BV field of the XSAVE header: which state
// components hold live (non-initial) values. It returns 0 when Region is too
// short to hold the header.
func (x XSave) XStateBV() uint64 {
	if len(x.Region) < XSaveHeaderOffset+8 {
		return 0
	}
	return binary.LittleEndian.Uint64(x.Region[XSaveHeaderOffset:])
}

// XCR is one extended control register. It mirrors struct kvm_xcr.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRs holds a vCPU's extended control registers (XCR0 is XCRs[0] when
// NrXCRs > 0). It mirrors struct kvm_xcrs (KVM_GET_XCRS, KVM_SET_XCRS).
type XCRs struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [16]XCR
	_      [16]uint64
}

// MSREntry is one model-specific register. It mirrors struct kvm_msr_entry.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// LAPICState is the register page of a vCPU's in-kernel local APIC, in the
// layout of the xAPIC MMIO page (registers on 16-byte boundaries). It
// mirrors struct kvm_lapic_state (KVM_GET_LAPIC, KVM_SET_LAPIC). Without
// CapX2APICAPI, the APIC ID is in bits 31:24 of LAPICID even in x2APIC mode.
type LAPICState [1024]byte

// Get32 returns the 32-bit register at byte offset reg (one of the LAPIC*
// constants). It returns 0 for an offset that is not 4-byte aligned inside
// the page.
func (s *LAPICState) Get32(reg uint32) uint32 {
	if reg%4 != 0 || reg > uint32(len(s))-4 {
		return 0
	}
	return binary.LittleEndian.Uint32(s[reg:])
}

// Set32 stores v in the 32-bit register at byte offset reg. It does nothing
// for an offset that is not 4-byte aligned inside the page.
func (s *LAPICState) Set32(reg, v uint32) {
	if reg%4 != 0 || reg > uint32(len(s))-4 {
		return
	}
	binary.LittleEndian.PutUint32(s[reg:], v)
}

// EventException is the exception part of VCPUEvents.
type EventException struct {
	Injected     uint8
	Nr           uint8
	HasErrorCode uint8
	Pending      uint8
	ErrorCode    uint32
}

// EventInterrupt is the external interrupt part of VCPUEvents.
type EventInterrupt struct {
	Injected uint8
	Nr       uint8
	Soft     uint8
	Shadow   uint8 // ShadowIntMovSS, ShadowIntSTI
}

// EventNMI is the NMI part of VCPUEvents.
type EventNMI struct {
	Injected uint8
	Pending  uint8
	Masked   uint8
	_        uint8
}

// EventSMI is the SMI part of VCPUEvents.
type EventSMI struct {
	SMM          uint8
	Pending      uint8
	SMMInsideNMI uint8
	LatchedInit  uint8
}

// VCPUEvents holds pending and in-flight exceptions, interrupts, NMIs and
// SMIs. It mirrors struct kvm_vcpu_events (KVM_GET_VCPU_EVENTS,
// KVM_SET_VCPU_EVENTS). Flags (VCPUEventValid*) says which optional parts
// SetVCPUEvents applies.
type VCPUEvents struct {
	Exception           EventException
	Interrupt           EventInterrupt
	NMI                 EventNMI
	SIPIVector          uint32
	Flags               uint32
	SMI                 EventSMI
	TripleFaultPending  uint8
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// MPState is a vCPU's multiprocessing state (MPState* constants). Its
// layout mirrors struct kvm_mp_state.
type MPState uint32

// DebugRegs holds the debug registers. It mirrors struct kvm_debugregs
// (KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS).
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// GuestDebug configures guest debugging: Control holds GuestDebug* bits and
// DebugReg the DR0-DR7 values used with GuestDebugUseHWBP. It mirrors
// struct kvm_guest_debug (KVM_SET_GUEST_DEBUG).
type GuestDebug struct {
	Control  uint32
	_        uint32
	DebugReg [8]uint64
}

// Translation is the result of translating a guest-virtual address with the
// vCPU's current page tables. It mirrors struct kvm_translation
// (KVM_TRANSLATE).
type Translation struct {
	LinearAddress   uint64
	PhysicalAddress uint64
	Valid           uint8
	Writeable       uint8
	UserMode        uint8
	_               [5]uint8
}
