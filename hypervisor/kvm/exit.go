package kvm

// runHeader mirrors struct kvm_run (x86-64) up to kvm_dirty_regs; the
// 2048-byte kvm_sync_regs area that follows is not used by this package.
// Exit is the anonymous union of per-exit-reason structures; the run*
// types below mirror the members this package decodes.
type runHeader struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	_                          [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IFFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	APICBase                   uint64
	Exit                       [256]byte
	KVMValidRegs               uint64
	KVMDirtyRegs               uint64
}

// Byte offsets of the request_interrupt_window and immediate_exit fields.
const (
	runRequestInterruptWindowByte = 0
	runImmediateExitByte          = 1
)

// runHW mirrors kvm_run.hw (KVM_EXIT_UNKNOWN).
type runHW struct {
	HardwareExitReason uint64
}

// runFailEntry mirrors kvm_run.fail_entry (KVM_EXIT_FAIL_ENTRY).
type runFailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
	_                          uint32
}

// runException mirrors kvm_run.ex (KVM_EXIT_EXCEPTION).
type runException struct {
	Exception uint32
	ErrorCode uint32
}

// runIO mirrors kvm_run.io (KVM_EXIT_IO). The data lives in the vCPU
// mapping at DataOffset.
type runIO struct {
	Direction  uint8
	Size       uint8
	Port       uint16
	Count      uint32
	DataOffset uint64
}

// runDebug mirrors kvm_run.debug, i.e. struct kvm_debug_exit_arch
// (KVM_EXIT_DEBUG).
type runDebug struct {
	Exception uint32
	_         uint32
	PC        uint64
	DR6       uint64
	DR7       uint64
}

// runMMIO mirrors kvm_run.mmio (KVM_EXIT_MMIO).
type runMMIO struct {
	PhysAddr uint64
	Data     [8]byte
	Len      uint32
	IsWrite  uint8
	_        [3]uint8
}

// runHypercall mirrors kvm_run.hypercall (KVM_EXIT_HYPERCALL).
type runHypercall struct {
	Nr       uint64
	Args     [6]uint64
	Ret      uint64
	LongMode uint32
	_        uint32
}

// runInternal mirrors kvm_run.internal (KVM_EXIT_INTERNAL_ERROR).
type runInternal struct {
	Suberror uint32
	NData    uint32
	Data     [16]uint64
}

// runSystemEvent mirrors kvm_run.system_event (KVM_EXIT_SYSTEM_EVENT).
type runSystemEvent struct {
	Type  uint32
	NData uint32
	Data  [16]uint64
}

// runEOI mirrors kvm_run.eoi (KVM_EXIT_IOAPIC_EOI).
type runEOI struct {
	Vector uint8
}

// runMSR mirrors kvm_run.msr (KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR).
type runMSR struct {
	Error  uint8
	_      [7]uint8
	Reason uint32
	Index  uint32
	Data   uint64
}

// ExitReason says why KVM_RUN returned to user space (Exit* constants).
type ExitReason uint32

// IOExit describes a port I/O exit. Data aliases the kvm_run mapping and
// holds Size*Count bytes: the bytes written for an OUT, the bytes the
// caller must fill before the next Run for an IN. Count exceeds 1 for
// string instructions (INS/OUTS with REP). Data is nil only if the kernel
// reported a data area outside the mapping.
type IOExit struct {
	In    bool
	Size  int
	Port  uint16
	Count int
	Data  []byte
}

// MMIOExit describes a memory-mapped I/O exit. Data aliases the kvm_run
// mapping: the bytes written when Write is true, the bytes the caller must
// fill before the next Run otherwise. len(Data) is the access width (1 to 8).
type MMIOExit struct {
	Addr  uint64
	Data  []byte
	Write bool
}

// SystemEvent describes a KVM_EXIT_SYSTEM_EVENT: Type is a SystemEvent*
// constant; Data holds the event's extra words (with CapSystemEventData).
type SystemEvent struct {
	Type uint32
	Data []uint64
}

// InternalError describes a KVM_EXIT_INTERNAL_ERROR: Suberror is an
// InternalError* constant; Data holds debug words (with
// CapInternalErrorData), for InternalErrorEmulation starting with flags and
// the instruction bytes.
type InternalError struct {
	Suberror uint32
	Data     []uint64
}

// FailEntry describes a KVM_EXIT_FAIL_ENTRY: the hardware refused to enter
// the guest, for a vendor-specific reason, on host CPU CPU.
type FailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
}

// DebugExit describes a KVM_EXIT_DEBUG: the exception vector (1 for #DB, 3
// for #BP), the guest RIP and the debug status and control registers.
type DebugExit struct {
	Exception uint32
	PC        uint64
	DR6, DR7  uint64
}

// HypercallExit describes a KVM_EXIT_HYPERCALL (with CapExitHypercall).
type HypercallExit struct {
	Nr       uint64
	Args     [6]uint64
	LongMode bool
}

// MSRExit describes a KVM_EXIT_X86_RDMSR or KVM_EXIT_X86_WRMSR (with
// CapX86UserSpaceMSR): Index is the MSR, Reason an MSRExitReason* bit, Data
// the value written (for WRMSR).
type MSRExit struct {
	Index  uint32
	Reason uint32
	Data   uint64
}

// ExitReason returns why the last Run returned. Precondition: Run returned
// nil (after an error the kvm_run page is stale).
func (c *VCPU) ExitReason() ExitReason { return ExitReason(c.hdr.ExitReason) }

// RunFlags returns kvm_run.flags (RunFlag* bits) of the last exit.
func (c *VCPU) RunFlags() uint16 { return c.hdr.Flags }

// CR8 returns the guest's CR8 (task priority) at the last exit.
func (c *VCPU) CR8() uint64 { return c.hdr.CR8 }

// APICBase returns the guest's IA32_APIC_BASE at the last exit.
func (c *VCPU) APICBase() uint64 { return c.hdr.APICBase }

// IO decodes an ExitIO.
func (c *VCPU) IO() IOExit {
	io := exitAs[runIO](c.hdr)
	e := IOExit{In: io.Direction == exitIOIn, Size: int(io.Size), Port: io.Port, Count: int(io.Count)}
	n := uint64(io.Size) * uint64(io.Count)
	if off := io.DataOffset; off <= uint64(len(c.run)) && n <= uint64(len(c.run))-off {
		e.Data = c.run[off : off+n : off+n]
	}
	return e
}

// MMIO decodes an ExitMMIO.
func (c *VCPU) MMIO() MMIOExit {
	m := exitAs[runMMIO](c.hdr)
	n := min(uintptr(m.Len), runMMIODataSize)
	return MMIOExit{
		Addr:  m.PhysAddr,
		Data:  c.run[runMMIODataOffset : runMMIODataOffset+n : runMMIODataOffset+n],
		Write: m.IsWrite != 0,
	}
}

// SystemEvent decodes an ExitSystemEvent.
func (c *VCPU) SystemEvent() SystemEvent {
	s := exitAs[runSystemEvent](c.hdr)
	return SystemEvent{Type: s.Type, Data: copyWords(s.Data[:], s.NData)}
}

// InternalError decodes an ExitInternalError.
func (c *VCPU) InternalError() InternalError {
	s := exitAs[runInternal](c.hdr)
	return InternalError{Suberror: s.Suberror, Data: copyWords(s.Data[:], s.NData)}
}

// FailEntry decodes an ExitFailEntry.
func (c *VCPU) FailEntry() FailEntry {
	f := exitAs[runFailEntry](c.hdr)
	return FailEntry{HardwareEntryFailureReason: f.HardwareEntryFailureReason, CPU: f.CPU}
}

// Exception decodes an ExitException: the vector and its error code.
func (c *VCPU) Exception() (exception, errorCode uint32) {
	e := exitAs[runException](c.hdr)
	return e.Exception, e.ErrorCode
}

// HardwareExitReason decodes an ExitUnknown: the vendor-specific exit code.
func (c *VCPU) HardwareExitReason() uint64 { return exitAs[runHW](c.hdr).HardwareExitReason }

// Debug decodes an ExitDebug.
func (c *VCPU) Debug() DebugExit {
	d := exitAs[runDebug](c.hdr)
	return DebugExit{Exception: d.Exception, PC: d.PC, DR6: d.DR6, DR7: d.DR7}
}

// Hypercall decodes an ExitHypercall.
func (c *VCPU) Hypercall() HypercallExit {
	h := exitAs[runHypercall](c.hdr)
	return HypercallExit{Nr: h.Nr, Args: h.Args, LongMode: h.LongMode != 0}
}

// SetHypercallResult sets the value the guest sees in RAX when the
// hypercall of an ExitHypercall completes on the next Run.
func (c *VCPU) SetHypercallResult(ret uint64) { exitAs[runHypercall](c.hdr).Ret = ret }

// IOAPICEOIVector decodes an ExitIOAPICEOI (split irqchip): the vector the
// guest acknowledged.
func (c *VCPU) IOAPICEOIVector() uint8 { return exitAs[runEOI](c.hdr).Vector }

// MSR decodes an ExitX86RDMSR or ExitX86WRMSR.
func (c *VCPU) MSR() MSRExit {
	m := exitAs[runMSR](c.hdr)
	return MSRExit{Index: m.Index, Reason: m.Reason, Data: m.Data}
}

// CompleteMSR answers an ExitX86RDMSR or ExitX86WRMSR before the next Run:
// data is the value RDMSR returns (ignored for WRMSR); fail injects #GP
// into the guest instead.
func (c *VCPU) CompleteMSR(data uint64, fail bool) {
	m := exitAs[runMSR](c.hdr)
	m.Data = data
	m.Error = 0
	if fail {
		m.Error = 1
	}
}

// copyWords copies the first n words of data (at most len(data): n comes
// from the kernel's ndata field).
func copyWords(data []uint64, n uint32) []uint64 {
	k := min(int(n), len(data))
	if k == 0 {
		return nil
	}
	return append([]uint64(nil), data[:k]...)
}
