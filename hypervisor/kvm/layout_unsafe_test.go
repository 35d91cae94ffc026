package kvm

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// uapiCheck pairs a value computed in Go with a C expression that yields
// the same value from the installed kernel headers.
type uapiCheck struct {
	name  string // what the Go side is, for messages
	c     string // a C expression, or a macro name for constant checks
	value uint64 // the Go side
}

// exitOff is the offset in kvm_run of a field inside the kvm_run exit union.
func exitOff(fieldOffset uintptr) uint64 { return uint64(runExitOffset + fieldOffset) }

// layoutChecks compares the size and key offsets of every mirrored structure
// with the C compiler's view of the UAPI structure.
func layoutChecks() []uapiCheck {
	var (
		regs   Regs
		seg    Segment
		dt     DTable
		sregs  Sregs
		fpu    FPU
		xcr    XCR
		xcrs   XCRs
		msr    MSREntry
		cpuid  CPUIDEntry
		ev     VCPUEvents
		dregs  DebugRegs
		gdbg   GuestDebug
		tr     Translation
		mr     MemoryRegion
		lvl    irqLevel
		chip   IRQChip
		pic    PICState
		ioapic IOAPICState
		pitch  PITChannelState
		pit    PITState2
		pitcfg pitConfig
		clk    ClockData
		ifd    irqfd
		iofd   ioeventfd
		re     routingEntry
		m      msi
		ec     enableCap
		dl     dirtyLog
		run    runHeader
		rio    runIO
		rmmio  runMMIO
		rfe    runFailEntry
		rex    runException
		rint   runInternal
		rse    runSystemEvent
		rmsr   runMSR
		rhc    runHypercall
		rdbg   runDebug
	)
	u := func(v uintptr) uint64 { return uint64(v) }
	return []uapiCheck{
		{"Regs", "sizeof(struct kvm_regs)", u(unsafe.Sizeof(regs))},
		{"Regs.R8", "offsetof(struct kvm_regs, r8)", u(unsafe.Offsetof(regs.R8))},
		{"Regs.RIP", "offsetof(struct kvm_regs, rip)", u(unsafe.Offsetof(regs.RIP))},
		{"Regs.RFLAGS", "offsetof(struct kvm_regs, rflags)", u(unsafe.Offsetof(regs.RFLAGS))},
		{"Segment", "sizeof(struct kvm_segment)", u(unsafe.Sizeof(seg))},
		{"Segment.Limit", "offsetof(struct kvm_segment, limit)", u(unsafe.Offsetof(seg.Limit))},
		{"Segment.Selector", "offsetof(struct kvm_segment, selector)", u(unsafe.Offsetof(seg.Selector))},
		{"Segment.Type", "offsetof(struct kvm_segment, type)", u(unsafe.Offsetof(seg.Type))},
		{"Segment.DPL", "offsetof(struct kvm_segment, dpl)", u(unsafe.Offsetof(seg.DPL))},
		{"Segment.AVL", "offsetof(struct kvm_segment, avl)", u(unsafe.Offsetof(seg.AVL))},
		{"Segment.Unusable", "offsetof(struct kvm_segment, unusable)", u(unsafe.Offsetof(seg.Unusable))},
		{"DTable", "sizeof(struct kvm_dtable)", u(unsafe.Sizeof(dt))},
		{"DTable.Limit", "offsetof(struct kvm_dtable, limit)", u(unsafe.Offsetof(dt.Limit))},
		{"Sregs", "sizeof(struct kvm_sregs)", u(unsafe.Sizeof(sregs))},
		{"Sregs.SS", "offsetof(struct kvm_sregs, ss)", u(unsafe.Offsetof(sregs.SS))},
		{"Sregs.LDT", "offsetof(struct kvm_sregs, ldt)", u(unsafe.Offsetof(sregs.LDT))},
		{"Sregs.GDT", "offsetof(struct kvm_sregs, gdt)", u(unsafe.Offsetof(sregs.GDT))},
		{"Sregs.IDT", "offsetof(struct kvm_sregs, idt)", u(unsafe.Offsetof(sregs.IDT))},
		{"Sregs.CR0", "offsetof(struct kvm_sregs, cr0)", u(unsafe.Offsetof(sregs.CR0))},
		{"Sregs.CR8", "offsetof(struct kvm_sregs, cr8)", u(unsafe.Offsetof(sregs.CR8))},
		{"Sregs.EFER", "offsetof(struct kvm_sregs, efer)", u(unsafe.Offsetof(sregs.EFER))},
		{"Sregs.APICBase", "offsetof(struct kvm_sregs, apic_base)", u(unsafe.Offsetof(sregs.APICBase))},
		{"Sregs.InterruptBitmap", "offsetof(struct kvm_sregs, interrupt_bitmap)", u(unsafe.Offsetof(sregs.InterruptBitmap))},
		{"FPU", "sizeof(struct kvm_fpu)", u(unsafe.Sizeof(fpu))},
		{"FPU.FCW", "offsetof(struct kvm_fpu, fcw)", u(unsafe.Offsetof(fpu.FCW))},
		{"FPU.FTWX", "offsetof(struct kvm_fpu, ftwx)", u(unsafe.Offsetof(fpu.FTWX))},
		{"FPU.LastOpcode", "offsetof(struct kvm_fpu, last_opcode)", u(unsafe.Offsetof(fpu.LastOpcode))},
		{"FPU.LastIP", "offsetof(struct kvm_fpu, last_ip)", u(unsafe.Offsetof(fpu.LastIP))},
		{"FPU.LastDP", "offsetof(struct kvm_fpu, last_dp)", u(unsafe.Offsetof(fpu.LastDP))},
		{"FPU.XMM", "offsetof(struct kvm_fpu, xmm)", u(unsafe.Offsetof(fpu.XMM))},
		{"FPU.MXCSR", "offsetof(struct kvm_fpu, mxcsr)", u(unsafe.Offsetof(fpu.MXCSR))},
		{"XSave legacy size", "sizeof(struct kvm_xsave)", u(xsaveLegacySize)},
		{"XCR", "sizeof(struct kvm_xcr)", u(unsafe.Sizeof(xcr))},
		{"XCR.Value", "offsetof(struct kvm_xcr, value)", u(unsafe.Offsetof(xcr.Value))},
		{"XCRs", "sizeof(struct kvm_xcrs)", u(unsafe.Sizeof(xcrs))},
		{"XCRs.XCRs", "offsetof(struct kvm_xcrs, xcrs)", u(unsafe.Offsetof(xcrs.XCRs))},
		{"MSREntry", "sizeof(struct kvm_msr_entry)", u(unsafe.Sizeof(msr))},
		{"MSREntry.Data", "offsetof(struct kvm_msr_entry, data)", u(unsafe.Offsetof(msr.Data))},
		{"msrsHeader", "sizeof(struct kvm_msrs)", u(unsafe.Sizeof(msrsHeader{}))},
		{"kvm_msrs entries", "offsetof(struct kvm_msrs, entries)", u(flexEntriesOffset[msrsHeader, MSREntry]())},
		{"msrListHeader", "sizeof(struct kvm_msr_list)", u(unsafe.Sizeof(msrListHeader{}))},
		{"kvm_msr_list indices", "offsetof(struct kvm_msr_list, indices)", u(flexEntriesOffset[msrListHeader, uint32]())},
		{"CPUIDEntry", "sizeof(struct kvm_cpuid_entry2)", u(unsafe.Sizeof(cpuid))},
		{"CPUIDEntry.Flags", "offsetof(struct kvm_cpuid_entry2, flags)", u(unsafe.Offsetof(cpuid.Flags))},
		{"CPUIDEntry.EAX", "offsetof(struct kvm_cpuid_entry2, eax)", u(unsafe.Offsetof(cpuid.EAX))},
		{"CPUIDEntry.EDX", "offsetof(struct kvm_cpuid_entry2, edx)", u(unsafe.Offsetof(cpuid.EDX))},
		{"cpuid2Header", "sizeof(struct kvm_cpuid2)", u(unsafe.Sizeof(cpuid2Header{}))},
		{"kvm_cpuid2 entries", "offsetof(struct kvm_cpuid2, entries)", u(flexEntriesOffset[cpuid2Header, CPUIDEntry]())},
		{"LAPICState", "sizeof(struct kvm_lapic_state)", u(unsafe.Sizeof(LAPICState{}))},
		{"VCPUEvents", "sizeof(struct kvm_vcpu_events)", u(unsafe.Sizeof(ev))},
		{"VCPUEvents.Exception.ErrorCode", "offsetof(struct kvm_vcpu_events, exception.error_code)", u(unsafe.Offsetof(ev.Exception) + unsafe.Offsetof(ev.Exception.ErrorCode))},
		{"VCPUEvents.Interrupt", "offsetof(struct kvm_vcpu_events, interrupt)", u(unsafe.Offsetof(ev.Interrupt))},
		{"VCPUEvents.Interrupt.Shadow", "offsetof(struct kvm_vcpu_events, interrupt.shadow)", u(unsafe.Offsetof(ev.Interrupt) + unsafe.Offsetof(ev.Interrupt.Shadow))},
		{"VCPUEvents.NMI", "offsetof(struct kvm_vcpu_events, nmi)", u(unsafe.Offsetof(ev.NMI))},
		{"VCPUEvents.NMI.Masked", "offsetof(struct kvm_vcpu_events, nmi.masked)", u(unsafe.Offsetof(ev.NMI) + unsafe.Offsetof(ev.NMI.Masked))},
		{"VCPUEvents.SIPIVector", "offsetof(struct kvm_vcpu_events, sipi_vector)", u(unsafe.Offsetof(ev.SIPIVector))},
		{"VCPUEvents.Flags", "offsetof(struct kvm_vcpu_events, flags)", u(unsafe.Offsetof(ev.Flags))},
		{"VCPUEvents.SMI", "offsetof(struct kvm_vcpu_events, smi)", u(unsafe.Offsetof(ev.SMI))},
		{"VCPUEvents.SMI.LatchedInit", "offsetof(struct kvm_vcpu_events, smi.latched_init)", u(unsafe.Offsetof(ev.SMI) + unsafe.Offsetof(ev.SMI.LatchedInit))},
		{"VCPUEvents.TripleFaultPending", "offsetof(struct kvm_vcpu_events, triple_fault.pending)", u(unsafe.Offsetof(ev.TripleFaultPending))},
		{"VCPUEvents.ExceptionHasPayload", "offsetof(struct kvm_vcpu_events, exception_has_payload)", u(unsafe.Offsetof(ev.ExceptionHasPayload))},
		{"VCPUEvents.ExceptionPayload", "offsetof(struct kvm_vcpu_events, exception_payload)", u(unsafe.Offsetof(ev.ExceptionPayload))},
		{"MPState", "sizeof(struct kvm_mp_state)", u(unsafe.Sizeof(MPState(0)))},
		{"DebugRegs", "sizeof(struct kvm_debugregs)", u(unsafe.Sizeof(dregs))},
		{"DebugRegs.DR6", "offsetof(struct kvm_debugregs, dr6)", u(unsafe.Offsetof(dregs.DR6))},
		{"DebugRegs.DR7", "offsetof(struct kvm_debugregs, dr7)", u(unsafe.Offsetof(dregs.DR7))},
		{"DebugRegs.Flags", "offsetof(struct kvm_debugregs, flags)", u(unsafe.Offsetof(dregs.Flags))},
		{"GuestDebug", "sizeof(struct kvm_guest_debug)", u(unsafe.Sizeof(gdbg))},
		{"GuestDebug.DebugReg", "offsetof(struct kvm_guest_debug, arch.debugreg)", u(unsafe.Offsetof(gdbg.DebugReg))},
		{"Translation", "sizeof(struct kvm_translation)", u(unsafe.Sizeof(tr))},
		{"Translation.Valid", "offsetof(struct kvm_translation, valid)", u(unsafe.Offsetof(tr.Valid))},
		{"Translation.UserMode", "offsetof(struct kvm_translation, usermode)", u(unsafe.Offsetof(tr.UserMode))},
		{"MemoryRegion", "sizeof(struct kvm_userspace_memory_region)", u(unsafe.Sizeof(mr))},
		{"MemoryRegion.GuestPhysAddr", "offsetof(struct kvm_userspace_memory_region, guest_phys_addr)", u(unsafe.Offsetof(mr.GuestPhysAddr))},
		{"MemoryRegion.MemorySize", "offsetof(struct kvm_userspace_memory_region, memory_size)", u(unsafe.Offsetof(mr.MemorySize))},
		{"MemoryRegion.UserspaceAddr", "offsetof(struct kvm_userspace_memory_region, userspace_addr)", u(unsafe.Offsetof(mr.UserspaceAddr))},
		{"irqLevel", "sizeof(struct kvm_irq_level)", u(unsafe.Sizeof(lvl))},
		{"irqLevel.Level", "offsetof(struct kvm_irq_level, level)", u(unsafe.Offsetof(lvl.Level))},
		{"IRQChip", "sizeof(struct kvm_irqchip)", u(unsafe.Sizeof(chip))},
		{"IRQChip.Chip", "offsetof(struct kvm_irqchip, chip)", u(unsafe.Offsetof(chip.Chip))},
		{"PICState", "sizeof(struct kvm_pic_state)", u(unsafe.Sizeof(pic))},
		{"PICState.IRQBase", "offsetof(struct kvm_pic_state, irq_base)", u(unsafe.Offsetof(pic.IRQBase))},
		{"PICState.ELCRMask", "offsetof(struct kvm_pic_state, elcr_mask)", u(unsafe.Offsetof(pic.ELCRMask))},
		{"IOAPICState", "sizeof(struct kvm_ioapic_state)", u(unsafe.Sizeof(ioapic))},
		{"IOAPICState.IRR", "offsetof(struct kvm_ioapic_state, irr)", u(unsafe.Offsetof(ioapic.IRR))},
		{"IOAPICState.RedirTbl", "offsetof(struct kvm_ioapic_state, redirtbl)", u(unsafe.Offsetof(ioapic.RedirTbl))},
		{"PITChannelState", "sizeof(struct kvm_pit_channel_state)", u(unsafe.Sizeof(pitch))},
		{"PITChannelState.Gate", "offsetof(struct kvm_pit_channel_state, gate)", u(unsafe.Offsetof(pitch.Gate))},
		{"PITChannelState.CountLoadTime", "offsetof(struct kvm_pit_channel_state, count_load_time)", u(unsafe.Offsetof(pitch.CountLoadTime))},
		{"PITState2", "sizeof(struct kvm_pit_state2)", u(unsafe.Sizeof(pit))},
		{"PITState2.Flags", "offsetof(struct kvm_pit_state2, flags)", u(unsafe.Offsetof(pit.Flags))},
		{"pitConfig", "sizeof(struct kvm_pit_config)", u(unsafe.Sizeof(pitcfg))},
		{"ClockData", "sizeof(struct kvm_clock_data)", u(unsafe.Sizeof(clk))},
		{"ClockData.Flags", "offsetof(struct kvm_clock_data, flags)", u(unsafe.Offsetof(clk.Flags))},
		{"ClockData.Realtime", "offsetof(struct kvm_clock_data, realtime)", u(unsafe.Offsetof(clk.Realtime))},
		{"ClockData.HostTSC", "offsetof(struct kvm_clock_data, host_tsc)", u(unsafe.Offsetof(clk.HostTSC))},
		{"irqfd", "sizeof(struct kvm_irqfd)", u(unsafe.Sizeof(ifd))},
		{"irqfd.ResampleFd", "offsetof(struct kvm_irqfd, resamplefd)", u(unsafe.Offsetof(ifd.ResampleFd))},
		{"ioeventfd", "sizeof(struct kvm_ioeventfd)", u(unsafe.Sizeof(iofd))},
		{"ioeventfd.Addr", "offsetof(struct kvm_ioeventfd, addr)", u(unsafe.Offsetof(iofd.Addr))},
		{"ioeventfd.Fd", "offsetof(struct kvm_ioeventfd, fd)", u(unsafe.Offsetof(iofd.Fd))},
		{"ioeventfd.Flags", "offsetof(struct kvm_ioeventfd, flags)", u(unsafe.Offsetof(iofd.Flags))},
		{"routingEntry", "sizeof(struct kvm_irq_routing_entry)", u(unsafe.Sizeof(re))},
		{"routingEntry.Flags", "offsetof(struct kvm_irq_routing_entry, flags)", u(unsafe.Offsetof(re.Flags))},
		{"routingEntry.U", "offsetof(struct kvm_irq_routing_entry, u)", u(unsafe.Offsetof(re.U))},
		{"routingEntry.U[1] (irqchip.pin)", "offsetof(struct kvm_irq_routing_entry, u.irqchip.pin)", u(unsafe.Offsetof(re.U) + 4)},
		{"routingEntry.U[3] (msi.devid)", "offsetof(struct kvm_irq_routing_entry, u.msi.devid)", u(unsafe.Offsetof(re.U) + 12)},
		{"irqRoutingHeader", "sizeof(struct kvm_irq_routing)", u(unsafe.Sizeof(irqRoutingHeader{}))},
		{"kvm_irq_routing entries", "offsetof(struct kvm_irq_routing, entries)", u(flexEntriesOffset[irqRoutingHeader, routingEntry]())},
		{"msi", "sizeof(struct kvm_msi)", u(unsafe.Sizeof(m))},
		{"msi.DevID", "offsetof(struct kvm_msi, devid)", u(unsafe.Offsetof(m.DevID))},
		{"enableCap", "sizeof(struct kvm_enable_cap)", u(unsafe.Sizeof(ec))},
		{"enableCap.Args", "offsetof(struct kvm_enable_cap, args)", u(unsafe.Offsetof(ec.Args))},
		{"dirtyLog", "sizeof(struct kvm_dirty_log)", u(unsafe.Sizeof(dl))},
		{"dirtyLog.Bitmap", "offsetof(struct kvm_dirty_log, dirty_bitmap)", u(unsafe.Offsetof(dl.Bitmap))},
		{"runHeader", "offsetof(struct kvm_run, s)", u(unsafe.Sizeof(run))},
		{"runHeader.ImmediateExit", "offsetof(struct kvm_run, immediate_exit)", u(unsafe.Offsetof(run.ImmediateExit))},
		{"runHeader.ImmediateExit (byte)", "offsetof(struct kvm_run, immediate_exit)", runImmediateExitByte},
		{"runHeader.RequestInterruptWindow (byte)", "offsetof(struct kvm_run, request_interrupt_window)", runRequestInterruptWindowByte},
		{"runHeader.ExitReason", "offsetof(struct kvm_run, exit_reason)", u(unsafe.Offsetof(run.ExitReason))},
		{"runHeader.ReadyForInterruptInjection", "offsetof(struct kvm_run, ready_for_interrupt_injection)", u(unsafe.Offsetof(run.ReadyForInterruptInjection))},
		{"runHeader.IFFlag", "offsetof(struct kvm_run, if_flag)", u(unsafe.Offsetof(run.IFFlag))},
		{"runHeader.Flags", "offsetof(struct kvm_run, flags)", u(unsafe.Offsetof(run.Flags))},
		{"runHeader.CR8", "offsetof(struct kvm_run, cr8)", u(unsafe.Offsetof(run.CR8))},
		{"runHeader.APICBase", "offsetof(struct kvm_run, apic_base)", u(unsafe.Offsetof(run.APICBase))},
		{"runHeader.Exit", "offsetof(struct kvm_run, hw)", u(unsafe.Offsetof(run.Exit))},
		{"runHeader.Exit size", "sizeof(((struct kvm_run *)0)->padding)", u(unsafe.Sizeof(run.Exit))},
		{"runHeader.KVMValidRegs", "offsetof(struct kvm_run, kvm_valid_regs)", u(unsafe.Offsetof(run.KVMValidRegs))},
		{"runHeader.KVMDirtyRegs", "offsetof(struct kvm_run, kvm_dirty_regs)", u(unsafe.Offsetof(run.KVMDirtyRegs))},
		{"runIO", "sizeof(((struct kvm_run *)0)->io)", u(unsafe.Sizeof(rio))},
		{"runIO.Size", "offsetof(struct kvm_run, io.size)", exitOff(unsafe.Offsetof(rio.Size))},
		{"runIO.Port", "offsetof(struct kvm_run, io.port)", exitOff(unsafe.Offsetof(rio.Port))},
		{"runIO.Count", "offsetof(struct kvm_run, io.count)", exitOff(unsafe.Offsetof(rio.Count))},
		{"runIO.DataOffset", "offsetof(struct kvm_run, io.data_offset)", exitOff(unsafe.Offsetof(rio.DataOffset))},
		{"runMMIO", "sizeof(((struct kvm_run *)0)->mmio)", u(unsafe.Sizeof(rmmio))},
		{"runMMIO.Data", "offsetof(struct kvm_run, mmio.data)", u(runMMIODataOffset)},
		{"runMMIO.Len", "offsetof(struct kvm_run, mmio.len)", exitOff(unsafe.Offsetof(rmmio.Len))},
		{"runMMIO.IsWrite", "offsetof(struct kvm_run, mmio.is_write)", exitOff(unsafe.Offsetof(rmmio.IsWrite))},
		{"runFailEntry", "sizeof(((struct kvm_run *)0)->fail_entry)", u(unsafe.Sizeof(rfe))},
		{"runFailEntry.CPU", "offsetof(struct kvm_run, fail_entry.cpu)", exitOff(unsafe.Offsetof(rfe.CPU))},
		{"runException", "sizeof(((struct kvm_run *)0)->ex)", u(unsafe.Sizeof(rex))},
		{"runException.ErrorCode", "offsetof(struct kvm_run, ex.error_code)", exitOff(unsafe.Offsetof(rex.ErrorCode))},
		{"runInternal", "sizeof(((struct kvm_run *)0)->internal)", u(unsafe.Sizeof(rint))},
		{"runInternal.NData", "offsetof(struct kvm_run, internal.ndata)", exitOff(unsafe.Offsetof(rint.NData))},
		{"runInternal.Data", "offsetof(struct kvm_run, internal.data)", exitOff(unsafe.Offsetof(rint.Data))},
		{"runSystemEvent", "sizeof(((struct kvm_run *)0)->system_event)", u(unsafe.Sizeof(rse))},
		{"runSystemEvent.NData", "offsetof(struct kvm_run, system_event.ndata)", exitOff(unsafe.Offsetof(rse.NData))},
		{"runSystemEvent.Data", "offsetof(struct kvm_run, system_event.data)", exitOff(unsafe.Offsetof(rse.Data))},
		{"runMSR", "sizeof(((struct kvm_run *)0)->msr)", u(unsafe.Sizeof(rmsr))},
		{"runMSR.Reason", "offsetof(struct kvm_run, msr.reason)", exitOff(unsafe.Offsetof(rmsr.Reason))},
		{"runMSR.Index", "offsetof(struct kvm_run, msr.index)", exitOff(unsafe.Offsetof(rmsr.Index))},
		{"runMSR.Data", "offsetof(struct kvm_run, msr.data)", exitOff(unsafe.Offsetof(rmsr.Data))},
		{"runHypercall", "sizeof(((struct kvm_run *)0)->hypercall)", u(unsafe.Sizeof(rhc))},
		{"runHypercall.Ret", "offsetof(struct kvm_run, hypercall.ret)", exitOff(unsafe.Offsetof(rhc.Ret))},
		{"runHypercall.LongMode", "offsetof(struct kvm_run, hypercall.longmode)", exitOff(unsafe.Offsetof(rhc.LongMode))},
		{"runDebug", "sizeof(((struct kvm_run *)0)->debug)", u(unsafe.Sizeof(rdbg))},
		{"runDebug.PC", "offsetof(struct kvm_run, debug.arch.pc)", exitOff(unsafe.Offsetof(rdbg.PC))},
		{"runDebug.DR7", "offsetof(struct kvm_run, debug.arch.dr7)", exitOff(unsafe.Offsetof(rdbg.DR7))},
		{"runEOI", "sizeof(((struct kvm_run *)0)->eoi)", u(unsafe.Sizeof(runEOI{}))},
	}
}

// constChecks compares every constant of consts.go with the macro of the
// same meaning in the installed headers; ioctl numbers included, so the
// sizes they encode are checked too.
func constChecks() []uapiCheck {
	return []uapiCheck{
		{"kvmGetAPIVersion", "KVM_GET_API_VERSION", uint64(kvmGetAPIVersion)},
		{"kvmCreateVM", "KVM_CREATE_VM", uint64(kvmCreateVM)},
		{"kvmGetMSRIndexList", "KVM_GET_MSR_INDEX_LIST", uint64(kvmGetMSRIndexList)},
		{"kvmCheckExtension", "KVM_CHECK_EXTENSION", uint64(kvmCheckExtension)},
		{"kvmGetVCPUMmapSize", "KVM_GET_VCPU_MMAP_SIZE", uint64(kvmGetVCPUMmapSize)},
		{"kvmGetSupportedCPUID", "KVM_GET_SUPPORTED_CPUID", uint64(kvmGetSupportedCPUID)},
		{"kvmGetEmulatedCPUID", "KVM_GET_EMULATED_CPUID", uint64(kvmGetEmulatedCPUID)},
		{"kvmGetMSRFeatureIndexList", "KVM_GET_MSR_FEATURE_INDEX_LIST", uint64(kvmGetMSRFeatureIndexList)},
		{"kvmGetMSRs", "KVM_GET_MSRS", uint64(kvmGetMSRs)},
		{"kvmSetMSRs", "KVM_SET_MSRS", uint64(kvmSetMSRs)},
		{"kvmSetCPUID2", "KVM_SET_CPUID2", uint64(kvmSetCPUID2)},
		{"kvmGetCPUID2", "KVM_GET_CPUID2", uint64(kvmGetCPUID2)},
		{"kvmSetUserMemoryRegion", "KVM_SET_USER_MEMORY_REGION", uint64(kvmSetUserMemoryRegion)},
		{"kvmSetTSSAddr", "KVM_SET_TSS_ADDR", uint64(kvmSetTSSAddr)},
		{"kvmSetIdentityMapAddr", "KVM_SET_IDENTITY_MAP_ADDR", uint64(kvmSetIdentityMapAddr)},
		{"kvmCreateVCPU", "KVM_CREATE_VCPU", uint64(kvmCreateVCPU)},
		{"kvmGetDirtyLog", "KVM_GET_DIRTY_LOG", uint64(kvmGetDirtyLog)},
		{"kvmCreateIRQChip", "KVM_CREATE_IRQCHIP", uint64(kvmCreateIRQChip)},
		{"kvmIRQLine", "KVM_IRQ_LINE", uint64(kvmIRQLine)},
		{"kvmGetIRQChip", "KVM_GET_IRQCHIP", uint64(kvmGetIRQChip)},
		{"kvmSetIRQChip", "KVM_SET_IRQCHIP", uint64(kvmSetIRQChip)},
		{"kvmSetGSIRouting", "KVM_SET_GSI_ROUTING", uint64(kvmSetGSIRouting)},
		{"kvmIRQFD", "KVM_IRQFD", uint64(kvmIRQFD)},
		{"kvmCreatePIT2", "KVM_CREATE_PIT2", uint64(kvmCreatePIT2)},
		{"kvmIOEventFD", "KVM_IOEVENTFD", uint64(kvmIOEventFD)},
		{"kvmSetClock", "KVM_SET_CLOCK", uint64(kvmSetClock)},
		{"kvmGetClock", "KVM_GET_CLOCK", uint64(kvmGetClock)},
		{"kvmGetPIT2", "KVM_GET_PIT2", uint64(kvmGetPIT2)},
		{"kvmSetPIT2", "KVM_SET_PIT2", uint64(kvmSetPIT2)},
		{"kvmSetTSCKHz", "KVM_SET_TSC_KHZ", uint64(kvmSetTSCKHz)},
		{"kvmGetTSCKHz", "KVM_GET_TSC_KHZ", uint64(kvmGetTSCKHz)},
		{"kvmSignalMSI", "KVM_SIGNAL_MSI", uint64(kvmSignalMSI)},
		{"kvmEnableCap", "KVM_ENABLE_CAP", uint64(kvmEnableCap)},
		{"kvmRun", "KVM_RUN", uint64(kvmRun)},
		{"kvmGetRegs", "KVM_GET_REGS", uint64(kvmGetRegs)},
		{"kvmSetRegs", "KVM_SET_REGS", uint64(kvmSetRegs)},
		{"kvmGetSregs", "KVM_GET_SREGS", uint64(kvmGetSregs)},
		{"kvmSetSregs", "KVM_SET_SREGS", uint64(kvmSetSregs)},
		{"kvmTranslate", "KVM_TRANSLATE", uint64(kvmTranslate)},
		{"kvmInterrupt", "KVM_INTERRUPT", uint64(kvmInterrupt)},
		{"kvmGetFPU", "KVM_GET_FPU", uint64(kvmGetFPU)},
		{"kvmSetFPU", "KVM_SET_FPU", uint64(kvmSetFPU)},
		{"kvmGetLAPIC", "KVM_GET_LAPIC", uint64(kvmGetLAPIC)},
		{"kvmSetLAPIC", "KVM_SET_LAPIC", uint64(kvmSetLAPIC)},
		{"kvmGetMPState", "KVM_GET_MP_STATE", uint64(kvmGetMPState)},
		{"kvmSetMPState", "KVM_SET_MP_STATE", uint64(kvmSetMPState)},
		{"kvmNMI", "KVM_NMI", uint64(kvmNMI)},
		{"kvmSetGuestDebug", "KVM_SET_GUEST_DEBUG", uint64(kvmSetGuestDebug)},
		{"kvmGetVCPUEvents", "KVM_GET_VCPU_EVENTS", uint64(kvmGetVCPUEvents)},
		{"kvmSetVCPUEvents", "KVM_SET_VCPU_EVENTS", uint64(kvmSetVCPUEvents)},
		{"kvmGetDebugRegs", "KVM_GET_DEBUGREGS", uint64(kvmGetDebugRegs)},
		{"kvmSetDebugRegs", "KVM_SET_DEBUGREGS", uint64(kvmSetDebugRegs)},
		{"kvmGetXSave", "KVM_GET_XSAVE", uint64(kvmGetXSave)},
		{"kvmSetXSave", "KVM_SET_XSAVE", uint64(kvmSetXSave)},
		{"kvmGetXCRs", "KVM_GET_XCRS", uint64(kvmGetXCRs)},
		{"kvmSetXCRs", "KVM_SET_XCRS", uint64(kvmSetXCRs)},
		{"kvmKVMClockCtrl", "KVM_KVMCLOCK_CTRL", uint64(kvmKVMClockCtrl)},
		{"kvmGetXSave2", "KVM_GET_XSAVE2", uint64(kvmGetXSave2)},
		{"CapIRQChip", "KVM_CAP_IRQCHIP", uint64(CapIRQChip)},
		{"CapHLT", "KVM_CAP_HLT", uint64(CapHLT)},
		{"CapUserMemory", "KVM_CAP_USER_MEMORY", uint64(CapUserMemory)},
		{"CapSetTSSAddr", "KVM_CAP_SET_TSS_ADDR", uint64(CapSetTSSAddr)},
		{"CapVAPIC", "KVM_CAP_VAPIC", uint64(CapVAPIC)},
		{"CapExtCPUID", "KVM_CAP_EXT_CPUID", uint64(CapExtCPUID)},
		{"CapClockSource", "KVM_CAP_CLOCKSOURCE", uint64(CapClockSource)},
		{"CapNrVCPUs", "KVM_CAP_NR_VCPUS", uint64(CapNrVCPUs)},
		{"CapNrMemslots", "KVM_CAP_NR_MEMSLOTS", uint64(CapNrMemslots)},
		{"CapPIT", "KVM_CAP_PIT", uint64(CapPIT)},
		{"CapNopIODelay", "KVM_CAP_NOP_IO_DELAY", uint64(CapNopIODelay)},
		{"CapMPState", "KVM_CAP_MP_STATE", uint64(CapMPState)},
		{"CapCoalescedMMIO", "KVM_CAP_COALESCED_MMIO", uint64(CapCoalescedMMIO)},
		{"CapSyncMMU", "KVM_CAP_SYNC_MMU", uint64(CapSyncMMU)},
		{"CapUserNMI", "KVM_CAP_USER_NMI", uint64(CapUserNMI)},
		{"CapSetGuestDebug", "KVM_CAP_SET_GUEST_DEBUG", uint64(CapSetGuestDebug)},
		{"CapReinjectControl", "KVM_CAP_REINJECT_CONTROL", uint64(CapReinjectControl)},
		{"CapIRQRouting", "KVM_CAP_IRQ_ROUTING", uint64(CapIRQRouting)},
		{"CapIRQInjectStatus", "KVM_CAP_IRQ_INJECT_STATUS", uint64(CapIRQInjectStatus)},
		{"CapMCE", "KVM_CAP_MCE", uint64(CapMCE)},
		{"CapIRQFD", "KVM_CAP_IRQFD", uint64(CapIRQFD)},
		{"CapPIT2", "KVM_CAP_PIT2", uint64(CapPIT2)},
		{"CapSetBootCPUID", "KVM_CAP_SET_BOOT_CPU_ID", uint64(CapSetBootCPUID)},
		{"CapPITState2", "KVM_CAP_PIT_STATE2", uint64(CapPITState2)},
		{"CapIOEventFD", "KVM_CAP_IOEVENTFD", uint64(CapIOEventFD)},
		{"CapSetIdentityMapAddr", "KVM_CAP_SET_IDENTITY_MAP_ADDR", uint64(CapSetIdentityMapAddr)},
		{"CapAdjustClock", "KVM_CAP_ADJUST_CLOCK", uint64(CapAdjustClock)},
		{"CapInternalErrorData", "KVM_CAP_INTERNAL_ERROR_DATA", uint64(CapInternalErrorData)},
		{"CapVCPUEvents", "KVM_CAP_VCPU_EVENTS", uint64(CapVCPUEvents)},
		{"CapIntrShadow", "KVM_CAP_INTR_SHADOW", uint64(CapIntrShadow)},
		{"CapDebugRegs", "KVM_CAP_DEBUGREGS", uint64(CapDebugRegs)},
		{"CapEnableCap", "KVM_CAP_ENABLE_CAP", uint64(CapEnableCap)},
		{"CapXSave", "KVM_CAP_XSAVE", uint64(CapXSave)},
		{"CapXCRS", "KVM_CAP_XCRS", uint64(CapXCRS)},
		{"CapAsyncPF", "KVM_CAP_ASYNC_PF", uint64(CapAsyncPF)},
		{"CapTSCControl", "KVM_CAP_TSC_CONTROL", uint64(CapTSCControl)},
		{"CapGetTSCKHz", "KVM_CAP_GET_TSC_KHZ", uint64(CapGetTSCKHz)},
		{"CapMaxVCPUs", "KVM_CAP_MAX_VCPUS", uint64(CapMaxVCPUs)},
		{"CapOneReg", "KVM_CAP_ONE_REG", uint64(CapOneReg)},
		{"CapTSCDeadlineTimer", "KVM_CAP_TSC_DEADLINE_TIMER", uint64(CapTSCDeadlineTimer)},
		{"CapSyncRegs", "KVM_CAP_SYNC_REGS", uint64(CapSyncRegs)},
		{"CapKVMClockCtrl", "KVM_CAP_KVMCLOCK_CTRL", uint64(CapKVMClockCtrl)},
		{"CapSignalMSI", "KVM_CAP_SIGNAL_MSI", uint64(CapSignalMSI)},
		{"CapReadonlyMem", "KVM_CAP_READONLY_MEM", uint64(CapReadonlyMem)},
		{"CapIRQFDResample", "KVM_CAP_IRQFD_RESAMPLE", uint64(CapIRQFDResample)},
		{"CapDeviceCtrl", "KVM_CAP_DEVICE_CTRL", uint64(CapDeviceCtrl)},
		{"CapExtEmulCPUID", "KVM_CAP_EXT_EMUL_CPUID", uint64(CapExtEmulCPUID)},
		{"CapIOAPICPolarityIgnored", "KVM_CAP_IOAPIC_POLARITY_IGNORED", uint64(CapIOAPICPolarityIgnored)},
		{"CapEnableCapVM", "KVM_CAP_ENABLE_CAP_VM", uint64(CapEnableCapVM)},
		{"CapIOEventFDNoLength", "KVM_CAP_IOEVENTFD_NO_LENGTH", uint64(CapIOEventFDNoLength)},
		{"CapVMAttributes", "KVM_CAP_VM_ATTRIBUTES", uint64(CapVMAttributes)},
		{"CapCheckExtensionVM", "KVM_CAP_CHECK_EXTENSION_VM", uint64(CapCheckExtensionVM)},
		{"CapDisableQuirks", "KVM_CAP_DISABLE_QUIRKS", uint64(CapDisableQuirks)},
		{"CapX86SMM", "KVM_CAP_X86_SMM", uint64(CapX86SMM)},
		{"CapMultiAddressSpace", "KVM_CAP_MULTI_ADDRESS_SPACE", uint64(CapMultiAddressSpace)},
		{"CapGuestDebugHWBPs", "KVM_CAP_GUEST_DEBUG_HW_BPS", uint64(CapGuestDebugHWBPs)},
		{"CapGuestDebugHWWPs", "KVM_CAP_GUEST_DEBUG_HW_WPS", uint64(CapGuestDebugHWWPs)},
		{"CapSplitIRQChip", "KVM_CAP_SPLIT_IRQCHIP", uint64(CapSplitIRQChip)},
		{"CapIOEventFDAnyLength", "KVM_CAP_IOEVENTFD_ANY_LENGTH", uint64(CapIOEventFDAnyLength)},
		{"CapVCPUAttributes", "KVM_CAP_VCPU_ATTRIBUTES", uint64(CapVCPUAttributes)},
		{"CapMaxVCPUID", "KVM_CAP_MAX_VCPU_ID", uint64(CapMaxVCPUID)},
		{"CapX2APICAPI", "KVM_CAP_X2APIC_API", uint64(CapX2APICAPI)},
		{"CapMSIDevID", "KVM_CAP_MSI_DEVID", uint64(CapMSIDevID)},
		{"CapImmediateExit", "KVM_CAP_IMMEDIATE_EXIT", uint64(CapImmediateExit)},
		{"CapX86DisableExits", "KVM_CAP_X86_DISABLE_EXITS", uint64(CapX86DisableExits)},
		{"CapGetMSRFeatures", "KVM_CAP_GET_MSR_FEATURES", uint64(CapGetMSRFeatures)},
		{"CapNestedState", "KVM_CAP_NESTED_STATE", uint64(CapNestedState)},
		{"CapMSRPlatformInfo", "KVM_CAP_MSR_PLATFORM_INFO", uint64(CapMSRPlatformInfo)},
		{"CapCoalescedPIO", "KVM_CAP_COALESCED_PIO", uint64(CapCoalescedPIO)},
		{"CapExceptionPayload", "KVM_CAP_EXCEPTION_PAYLOAD", uint64(CapExceptionPayload)},
		{"CapManualDirtyLogProtect2", "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", uint64(CapManualDirtyLogProtect2)},
		{"CapPMUEventFilter", "KVM_CAP_PMU_EVENT_FILTER", uint64(CapPMUEventFilter)},
		{"CapHaltPoll", "KVM_CAP_HALT_POLL", uint64(CapHaltPoll)},
		{"CapSmallerMaxPhyAddr", "KVM_CAP_SMALLER_MAXPHYADDR", uint64(CapSmallerMaxPhyAddr)},
		{"CapStealTime", "KVM_CAP_STEAL_TIME", uint64(CapStealTime)},
		{"CapX86UserSpaceMSR", "KVM_CAP_X86_USER_SPACE_MSR", uint64(CapX86UserSpaceMSR)},
		{"CapX86MSRFilter", "KVM_CAP_X86_MSR_FILTER", uint64(CapX86MSRFilter)},
		{"CapEnforcePVFeatureCPUID", "KVM_CAP_ENFORCE_PV_FEATURE_CPUID", uint64(CapEnforcePVFeatureCPUID)},
		{"CapDirtyLogRing", "KVM_CAP_DIRTY_LOG_RING", uint64(CapDirtyLogRing)},
		{"CapX86BusLockExit", "KVM_CAP_X86_BUS_LOCK_EXIT", uint64(CapX86BusLockExit)},
		{"CapSetGuestDebug2", "KVM_CAP_SET_GUEST_DEBUG2", uint64(CapSetGuestDebug2)},
		{"CapSregs2", "KVM_CAP_SREGS2", uint64(CapSregs2)},
		{"CapExitHypercall", "KVM_CAP_EXIT_HYPERCALL", uint64(CapExitHypercall)},
		{"CapBinaryStatsFD", "KVM_CAP_BINARY_STATS_FD", uint64(CapBinaryStatsFD)},
		{"CapExitOnEmulationFailure", "KVM_CAP_EXIT_ON_EMULATION_FAILURE", uint64(CapExitOnEmulationFailure)},
		{"CapVMGPABits", "KVM_CAP_VM_GPA_BITS", uint64(CapVMGPABits)},
		{"CapXSave2", "KVM_CAP_XSAVE2", uint64(CapXSave2)},
		{"CapSysAttributes", "KVM_CAP_SYS_ATTRIBUTES", uint64(CapSysAttributes)},
		{"CapPMUCapability", "KVM_CAP_PMU_CAPABILITY", uint64(CapPMUCapability)},
		{"CapDisableQuirks2", "KVM_CAP_DISABLE_QUIRKS2", uint64(CapDisableQuirks2)},
		{"CapVMTSCControl", "KVM_CAP_VM_TSC_CONTROL", uint64(CapVMTSCControl)},
		{"CapSystemEventData", "KVM_CAP_SYSTEM_EVENT_DATA", uint64(CapSystemEventData)},
		{"CapX86TripleFaultEvent", "KVM_CAP_X86_TRIPLE_FAULT_EVENT", uint64(CapX86TripleFaultEvent)},
		{"CapX86NotifyVMExit", "KVM_CAP_X86_NOTIFY_VMEXIT", uint64(CapX86NotifyVMExit)},
		{"CapVMDisableNXHugePages", "KVM_CAP_VM_DISABLE_NX_HUGE_PAGES", uint64(CapVMDisableNXHugePages)},
		{"CapDirtyLogRingAcqRel", "KVM_CAP_DIRTY_LOG_RING_ACQ_REL", uint64(CapDirtyLogRingAcqRel)},
		{"ExitUnknown", "KVM_EXIT_UNKNOWN", uint64(ExitUnknown)},
		{"ExitException", "KVM_EXIT_EXCEPTION", uint64(ExitException)},
		{"ExitIO", "KVM_EXIT_IO", uint64(ExitIO)},
		{"ExitHypercall", "KVM_EXIT_HYPERCALL", uint64(ExitHypercall)},
		{"ExitDebug", "KVM_EXIT_DEBUG", uint64(ExitDebug)},
		{"ExitHLT", "KVM_EXIT_HLT", uint64(ExitHLT)},
		{"ExitMMIO", "KVM_EXIT_MMIO", uint64(ExitMMIO)},
		{"ExitIRQWindowOpen", "KVM_EXIT_IRQ_WINDOW_OPEN", uint64(ExitIRQWindowOpen)},
		{"ExitShutdown", "KVM_EXIT_SHUTDOWN", uint64(ExitShutdown)},
		{"ExitFailEntry", "KVM_EXIT_FAIL_ENTRY", uint64(ExitFailEntry)},
		{"ExitIntr", "KVM_EXIT_INTR", uint64(ExitIntr)},
		{"ExitSetTPR", "KVM_EXIT_SET_TPR", uint64(ExitSetTPR)},
		{"ExitTPRAccess", "KVM_EXIT_TPR_ACCESS", uint64(ExitTPRAccess)},
		{"ExitNMI", "KVM_EXIT_NMI", uint64(ExitNMI)},
		{"ExitInternalError", "KVM_EXIT_INTERNAL_ERROR", uint64(ExitInternalError)},
		{"ExitSystemEvent", "KVM_EXIT_SYSTEM_EVENT", uint64(ExitSystemEvent)},
		{"ExitIOAPICEOI", "KVM_EXIT_IOAPIC_EOI", uint64(ExitIOAPICEOI)},
		{"ExitHyperV", "KVM_EXIT_HYPERV", uint64(ExitHyperV)},
		{"ExitX86RDMSR", "KVM_EXIT_X86_RDMSR", uint64(ExitX86RDMSR)},
		{"ExitX86WRMSR", "KVM_EXIT_X86_WRMSR", uint64(ExitX86WRMSR)},
		{"ExitDirtyRingFull", "KVM_EXIT_DIRTY_RING_FULL", uint64(ExitDirtyRingFull)},
		{"ExitAPResetHold", "KVM_EXIT_AP_RESET_HOLD", uint64(ExitAPResetHold)},
		{"ExitX86BusLock", "KVM_EXIT_X86_BUS_LOCK", uint64(ExitX86BusLock)},
		{"ExitXen", "KVM_EXIT_XEN", uint64(ExitXen)},
		{"ExitNotify", "KVM_EXIT_NOTIFY", uint64(ExitNotify)},
		{"ExitMemoryFault", "KVM_EXIT_MEMORY_FAULT", uint64(ExitMemoryFault)},
		{"exitIOIn", "KVM_EXIT_IO_IN", uint64(exitIOIn)},
		{"exitIOOut", "KVM_EXIT_IO_OUT", uint64(exitIOOut)},
		{"RunFlagSMM", "KVM_RUN_X86_SMM", uint64(RunFlagSMM)},
		{"RunFlagBusLock", "KVM_RUN_X86_BUS_LOCK", uint64(RunFlagBusLock)},
		{"SystemEventShutdown", "KVM_SYSTEM_EVENT_SHUTDOWN", uint64(SystemEventShutdown)},
		{"SystemEventReset", "KVM_SYSTEM_EVENT_RESET", uint64(SystemEventReset)},
		{"SystemEventCrash", "KVM_SYSTEM_EVENT_CRASH", uint64(SystemEventCrash)},
		{"SystemEventWakeup", "KVM_SYSTEM_EVENT_WAKEUP", uint64(SystemEventWakeup)},
		{"SystemEventSuspend", "KVM_SYSTEM_EVENT_SUSPEND", uint64(SystemEventSuspend)},
		{"SystemEventSEVTerm", "KVM_SYSTEM_EVENT_SEV_TERM", uint64(SystemEventSEVTerm)},
		{"InternalErrorEmulation", "KVM_INTERNAL_ERROR_EMULATION", uint64(InternalErrorEmulation)},
		{"InternalErrorSimulEx", "KVM_INTERNAL_ERROR_SIMUL_EX", uint64(InternalErrorSimulEx)},
		{"InternalErrorDeliveryEv", "KVM_INTERNAL_ERROR_DELIVERY_EV", uint64(InternalErrorDeliveryEv)},
		{"InternalErrorUnexpectedExitReason", "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON", uint64(InternalErrorUnexpectedExitReason)},
		{"MSRExitReasonInval", "KVM_MSR_EXIT_REASON_INVAL", uint64(MSRExitReasonInval)},
		{"MSRExitReasonUnknown", "KVM_MSR_EXIT_REASON_UNKNOWN", uint64(MSRExitReasonUnknown)},
		{"MSRExitReasonFilter", "KVM_MSR_EXIT_REASON_FILTER", uint64(MSRExitReasonFilter)},
		{"MPStateRunnable", "KVM_MP_STATE_RUNNABLE", uint64(MPStateRunnable)},
		{"MPStateUninitialized", "KVM_MP_STATE_UNINITIALIZED", uint64(MPStateUninitialized)},
		{"MPStateInitReceived", "KVM_MP_STATE_INIT_RECEIVED", uint64(MPStateInitReceived)},
		{"MPStateHalted", "KVM_MP_STATE_HALTED", uint64(MPStateHalted)},
		{"MPStateSipiReceived", "KVM_MP_STATE_SIPI_RECEIVED", uint64(MPStateSipiReceived)},
		{"MPStateAPResetHold", "KVM_MP_STATE_AP_RESET_HOLD", uint64(MPStateAPResetHold)},
		{"MPStateSuspended", "KVM_MP_STATE_SUSPENDED", uint64(MPStateSuspended)},
		{"MemLogDirtyPages", "KVM_MEM_LOG_DIRTY_PAGES", uint64(MemLogDirtyPages)},
		{"MemReadonly", "KVM_MEM_READONLY", uint64(MemReadonly)},
		{"CPUIDFlagSignificantIndex", "KVM_CPUID_FLAG_SIGNIFCANT_INDEX", uint64(CPUIDFlagSignificantIndex)},
		{"CPUIDFlagStatefulFunc", "KVM_CPUID_FLAG_STATEFUL_FUNC", uint64(CPUIDFlagStatefulFunc)},
		{"CPUIDFlagStateReadNext", "KVM_CPUID_FLAG_STATE_READ_NEXT", uint64(CPUIDFlagStateReadNext)},
		{"IRQChipPICMaster", "KVM_IRQCHIP_PIC_MASTER", uint64(IRQChipPICMaster)},
		{"IRQChipPICSlave", "KVM_IRQCHIP_PIC_SLAVE", uint64(IRQChipPICSlave)},
		{"IRQChipIOAPIC", "KVM_IRQCHIP_IOAPIC", uint64(IRQChipIOAPIC)},
		{"IOAPICNumPins", "KVM_IOAPIC_NUM_PINS", uint64(IOAPICNumPins)},
		{"MSIValidDevID", "KVM_MSI_VALID_DEVID", uint64(MSIValidDevID)},
		{"PITSpeakerDummy", "KVM_PIT_SPEAKER_DUMMY", uint64(PITSpeakerDummy)},
		{"PITFlagsHPETLegacy", "KVM_PIT_FLAGS_HPET_LEGACY", uint64(PITFlagsHPETLegacy)},
		{"PITFlagsSpeakerDataOn", "KVM_PIT_FLAGS_SPEAKER_DATA_ON", uint64(PITFlagsSpeakerDataOn)},
		{"IOEventDatamatch", "KVM_IOEVENTFD_FLAG_DATAMATCH", uint64(IOEventDatamatch)},
		{"IOEventPIO", "KVM_IOEVENTFD_FLAG_PIO", uint64(IOEventPIO)},
		{"IOEventDeassign", "KVM_IOEVENTFD_FLAG_DEASSIGN", uint64(IOEventDeassign)},
		{"irqfdFlagDeassign", "KVM_IRQFD_FLAG_DEASSIGN", uint64(irqfdFlagDeassign)},
		{"irqfdFlagResample", "KVM_IRQFD_FLAG_RESAMPLE", uint64(irqfdFlagResample)},
		{"RoutingIRQChip", "KVM_IRQ_ROUTING_IRQCHIP", uint64(RoutingIRQChip)},
		{"RoutingMSI", "KVM_IRQ_ROUTING_MSI", uint64(RoutingMSI)},
		{"ClockTSCStable", "KVM_CLOCK_TSC_STABLE", uint64(ClockTSCStable)},
		{"ClockRealtime", "KVM_CLOCK_REALTIME", uint64(ClockRealtime)},
		{"ClockHostTSC", "KVM_CLOCK_HOST_TSC", uint64(ClockHostTSC)},
		{"VCPUEventValidNMIPending", "KVM_VCPUEVENT_VALID_NMI_PENDING", uint64(VCPUEventValidNMIPending)},
		{"VCPUEventValidSIPIVector", "KVM_VCPUEVENT_VALID_SIPI_VECTOR", uint64(VCPUEventValidSIPIVector)},
		{"VCPUEventValidShadow", "KVM_VCPUEVENT_VALID_SHADOW", uint64(VCPUEventValidShadow)},
		{"VCPUEventValidSMM", "KVM_VCPUEVENT_VALID_SMM", uint64(VCPUEventValidSMM)},
		{"VCPUEventValidPayload", "KVM_VCPUEVENT_VALID_PAYLOAD", uint64(VCPUEventValidPayload)},
		{"VCPUEventValidTripleFault", "KVM_VCPUEVENT_VALID_TRIPLE_FAULT", uint64(VCPUEventValidTripleFault)},
		{"ShadowIntMovSS", "KVM_X86_SHADOW_INT_MOV_SS", uint64(ShadowIntMovSS)},
		{"ShadowIntSTI", "KVM_X86_SHADOW_INT_STI", uint64(ShadowIntSTI)},
		{"GuestDebugEnable", "KVM_GUESTDBG_ENABLE", uint64(GuestDebugEnable)},
		{"GuestDebugSingleStep", "KVM_GUESTDBG_SINGLESTEP", uint64(GuestDebugSingleStep)},
		{"GuestDebugUseSWBP", "KVM_GUESTDBG_USE_SW_BP", uint64(GuestDebugUseSWBP)},
		{"GuestDebugUseHWBP", "KVM_GUESTDBG_USE_HW_BP", uint64(GuestDebugUseHWBP)},
		{"GuestDebugInjectDB", "KVM_GUESTDBG_INJECT_DB", uint64(GuestDebugInjectDB)},
		{"GuestDebugInjectBP", "KVM_GUESTDBG_INJECT_BP", uint64(GuestDebugInjectBP)},
		{"GuestDebugBlockIRQ", "KVM_GUESTDBG_BLOCKIRQ", uint64(GuestDebugBlockIRQ)},
		{"X2APICAPIUse32BitIDs", "KVM_X2APIC_API_USE_32BIT_IDS", uint64(X2APICAPIUse32BitIDs)},
		{"X2APICAPIDisableBroadcastQuirk", "KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK", uint64(X2APICAPIDisableBroadcastQuirk)},
		{"DisableExitsMWait", "KVM_X86_DISABLE_EXITS_MWAIT", uint64(DisableExitsMWait)},
		{"DisableExitsHLT", "KVM_X86_DISABLE_EXITS_HLT", uint64(DisableExitsHLT)},
		{"DisableExitsPause", "KVM_X86_DISABLE_EXITS_PAUSE", uint64(DisableExitsPause)},
		{"DisableExitsCState", "KVM_X86_DISABLE_EXITS_CSTATE", uint64(DisableExitsCState)},
		{"CPUIDSignatureLeaf", "KVM_CPUID_SIGNATURE", uint64(CPUIDSignatureLeaf)},
		{"CPUIDFeaturesLeaf", "KVM_CPUID_FEATURES", uint64(CPUIDFeaturesLeaf)},
		{"FeatureClockSource", "KVM_FEATURE_CLOCKSOURCE", uint64(FeatureClockSource)},
		{"FeatureNopIODelay", "KVM_FEATURE_NOP_IO_DELAY", uint64(FeatureNopIODelay)},
		{"FeatureMMUOp", "KVM_FEATURE_MMU_OP", uint64(FeatureMMUOp)},
		{"FeatureClockSource2", "KVM_FEATURE_CLOCKSOURCE2", uint64(FeatureClockSource2)},
		{"FeatureAsyncPF", "KVM_FEATURE_ASYNC_PF", uint64(FeatureAsyncPF)},
		{"FeatureStealTime", "KVM_FEATURE_STEAL_TIME", uint64(FeatureStealTime)},
		{"FeaturePVEOI", "KVM_FEATURE_PV_EOI", uint64(FeaturePVEOI)},
		{"FeaturePVUnhalt", "KVM_FEATURE_PV_UNHALT", uint64(FeaturePVUnhalt)},
		{"FeaturePVTLBFlush", "KVM_FEATURE_PV_TLB_FLUSH", uint64(FeaturePVTLBFlush)},
		{"FeatureAsyncPFVMExit", "KVM_FEATURE_ASYNC_PF_VMEXIT", uint64(FeatureAsyncPFVMExit)},
		{"FeaturePVSendIPI", "KVM_FEATURE_PV_SEND_IPI", uint64(FeaturePVSendIPI)},
		{"FeaturePollControl", "KVM_FEATURE_POLL_CONTROL", uint64(FeaturePollControl)},
		{"FeaturePVSchedYield", "KVM_FEATURE_PV_SCHED_YIELD", uint64(FeaturePVSchedYield)},
		{"FeatureAsyncPFInt", "KVM_FEATURE_ASYNC_PF_INT", uint64(FeatureAsyncPFInt)},
		{"FeatureMSIExtDestID", "KVM_FEATURE_MSI_EXT_DEST_ID", uint64(FeatureMSIExtDestID)},
		{"FeatureHCMapGPARange", "KVM_FEATURE_HC_MAP_GPA_RANGE", uint64(FeatureHCMapGPARange)},
		{"FeatureMigrationControl", "KVM_FEATURE_MIGRATION_CONTROL", uint64(FeatureMigrationControl)},
		{"FeatureClockSourceStable", "KVM_FEATURE_CLOCKSOURCE_STABLE_BIT", uint64(FeatureClockSourceStable)},
		{"HintsRealtime", "KVM_HINTS_REALTIME", uint64(HintsRealtime)},
		{"MSRKVMWallClock", "MSR_KVM_WALL_CLOCK", uint64(MSRKVMWallClock)},
		{"MSRKVMSystemTime", "MSR_KVM_SYSTEM_TIME", uint64(MSRKVMSystemTime)},
		{"MSRKVMWallClockNew", "MSR_KVM_WALL_CLOCK_NEW", uint64(MSRKVMWallClockNew)},
		{"MSRKVMSystemTimeNew", "MSR_KVM_SYSTEM_TIME_NEW", uint64(MSRKVMSystemTimeNew)},
		{"MSRKVMAsyncPFEn", "MSR_KVM_ASYNC_PF_EN", uint64(MSRKVMAsyncPFEn)},
		{"MSRKVMStealTime", "MSR_KVM_STEAL_TIME", uint64(MSRKVMStealTime)},
		{"MSRKVMPVEOIEn", "MSR_KVM_PV_EOI_EN", uint64(MSRKVMPVEOIEn)},
		{"MSRKVMPollControl", "MSR_KVM_POLL_CONTROL", uint64(MSRKVMPollControl)},
		{"MSRKVMAsyncPFInt", "MSR_KVM_ASYNC_PF_INT", uint64(MSRKVMAsyncPFInt)},
		{"MSRKVMAsyncPFAck", "MSR_KVM_ASYNC_PF_ACK", uint64(MSRKVMAsyncPFAck)},
		{"MSRKVMMigrationControl", "MSR_KVM_MIGRATION_CONTROL", uint64(MSRKVMMigrationControl)},
		{"MSRKVMEnabled", "KVM_MSR_ENABLED", uint64(MSRKVMEnabled)},
		{"PIOPageOffset", "KVM_PIO_PAGE_OFFSET", uint64(PIOPageOffset)},
		{"CoalescedMMIOPageOffset", "KVM_COALESCED_MMIO_PAGE_OFFSET", uint64(CoalescedMMIOPageOffset)},
		{"VectorDE", "DE_VECTOR", uint64(VectorDE)},
		{"VectorDB", "DB_VECTOR", uint64(VectorDB)},
		{"VectorBP", "BP_VECTOR", uint64(VectorBP)},
		{"VectorOF", "OF_VECTOR", uint64(VectorOF)},
		{"VectorBR", "BR_VECTOR", uint64(VectorBR)},
		{"VectorUD", "UD_VECTOR", uint64(VectorUD)},
		{"VectorNM", "NM_VECTOR", uint64(VectorNM)},
		{"VectorDF", "DF_VECTOR", uint64(VectorDF)},
		{"VectorTS", "TS_VECTOR", uint64(VectorTS)},
		{"VectorNP", "NP_VECTOR", uint64(VectorNP)},
		{"VectorSS", "SS_VECTOR", uint64(VectorSS)},
		{"VectorGP", "GP_VECTOR", uint64(VectorGP)},
		{"VectorPF", "PF_VECTOR", uint64(VectorPF)},
		{"VectorMF", "MF_VECTOR", uint64(VectorMF)},
		{"VectorAC", "AC_VECTOR", uint64(VectorAC)},
		{"VectorMC", "MC_VECTOR", uint64(VectorMC)},
		{"VectorXM", "XM_VECTOR", uint64(VectorXM)},
		{"VectorVE", "VE_VECTOR", uint64(VectorVE)},
	}
}

// optionalMacros may be absent from older headers than the kernel's.
var optionalMacros = map[string]bool{"KVM_EXIT_MEMORY_FAULT": true}

// probeUAPI compiles and runs a C program printing every check's C value
// (or "missing" for an undefined macro) and returns them in order.
func probeUAPI(t *testing.T, checks []uapiCheck, macros bool) []string {
	t.Helper()
	gcc := testenv.RequireTool(t, "gcc", "gcc") // to compile the UAPI probe
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		testenv.Unavailable(t, "linux/kvm.h is not installed (Debian package linux-libc-dev): cannot compile the UAPI probe")
	}
	var b strings.Builder
	b.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\n#include <asm/kvm_para.h>\nint main(void) {\n")
	for _, c := range checks {
		if macros {
			fmt.Fprintf(&b, "#ifdef %s\n\tprintf(\"%%llu\\n\", (unsigned long long)(%s));\n#else\n\tputs(\"missing\");\n#endif\n", c.c, c.c)
		} else {
			fmt.Fprintf(&b, "\tprintf(\"%%llu\\n\", (unsigned long long)(%s));\n", c.c)
		}
	}
	b.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "probe.c"), filepath.Join(dir, "probe")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-std=gnu11", "-Wall", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("compiling the UAPI probe: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("running the UAPI probe: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != len(checks) {
		t.Fatalf("UAPI probe printed %d values for %d checks", len(lines), len(checks))
	}
	return lines
}

func compareUAPI(t *testing.T, checks []uapiCheck, macros bool) {
	lines := probeUAPI(t, checks, macros)
	for i, c := range checks {
		if lines[i] == "missing" {
			if !optionalMacros[c.c] {
				t.Errorf("%s: macro %s is not defined by the installed headers", c.name, c.c)
			}
			continue
		}
		want, err := strconv.ParseUint(lines[i], 10, 64)
		if err != nil {
			t.Fatalf("%s: probe printed %q", c.name, lines[i])
		}
		if c.value != want {
			t.Errorf("%s = %#x, but %s = %#x", c.name, c.value, c.c, want)
		}
	}
}

func TestUAPILayout(t *testing.T) { compareUAPI(t, layoutChecks(), false) }

func TestUAPIConstants(t *testing.T) { compareUAPI(t, constChecks(), true) }

// TestUAPIConstantsCovered makes sure every constant declared in consts.go
// is compared with the headers, so a new one cannot skip the check.
func TestUAPIConstantsCovered(t *testing.T) {
	notUAPI := map[string]bool{
		// the ioctl encoding itself, exercised through every request number
		"iocNRShift": true, "iocTypeShift": true, "iocSizeShift": true, "iocDirShift": true,
		"iocNone": true, "iocWrite": true, "iocRead": true, "iocSizeMax": true,
		"kvmio": true, "ioN": true, "ioR": true, "ioW": true, "ioWR": true,
		"xsaveLegacySize": true, // checked in layoutChecks
		"Signature":       true, // a string; checked against the supported CPUID by TestSupportedCPUID
		"APIVersion":      true, // checked in TestAPIVersionConstant
	}
	listed := map[string]bool{}
	for _, c := range constChecks() {
		listed[c.name] = true
	}
	f, err := parser.ParseFile(token.NewFileSet(), "consts.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if !listed[n.Name] && !notUAPI[n.Name] {
					t.Errorf("constant %s in consts.go is not compared with the UAPI headers in constChecks", n.Name)
				}
			}
		}
	}
}

func TestAPIVersionConstant(t *testing.T) {
	compareUAPI(t, []uapiCheck{{"APIVersion", "KVM_API_VERSION", APIVersion}}, true)
}

// TestIoctlSizesFit checks that no argument is too big for the 14-bit size
// field of an ioctl request (the encoding would silently corrupt it).
func TestIoctlSizesFit(t *testing.T) {
	for _, c := range constChecks() {
		if !strings.HasPrefix(c.name, "kvm") {
			continue
		}
		if c.value>>iocTypeShift&0xff != kvmio {
			t.Errorf("%s = %#x does not have the KVM ioctl type", c.name, c.value)
		}
	}
	for _, sz := range []uintptr{unsafe.Sizeof(IRQChip{}), unsafe.Sizeof(XCRs{}), unsafe.Sizeof(PITState2{}), xsaveLegacySize} {
		if sz > iocSizeMax {
			t.Errorf("argument of %d bytes exceeds the ioctl size field", sz)
		}
	}
}

// TestExitMirrorsFit checks the precondition of exitAs for every mirror of
// a kvm_run exit union member.
func TestExitMirrorsFit(t *testing.T) {
	var run runHeader
	for _, m := range []struct {
		name        string
		size, align uintptr
	}{
		{"runHW", unsafe.Sizeof(runHW{}), unsafe.Alignof(runHW{})},
		{"runFailEntry", unsafe.Sizeof(runFailEntry{}), unsafe.Alignof(runFailEntry{})},
		{"runException", unsafe.Sizeof(runException{}), unsafe.Alignof(runException{})},
		{"runIO", unsafe.Sizeof(runIO{}), unsafe.Alignof(runIO{})},
		{"runDebug", unsafe.Sizeof(runDebug{}), unsafe.Alignof(runDebug{})},
		{"runMMIO", unsafe.Sizeof(runMMIO{}), unsafe.Alignof(runMMIO{})},
		{"runHypercall", unsafe.Sizeof(runHypercall{}), unsafe.Alignof(runHypercall{})},
		{"runInternal", unsafe.Sizeof(runInternal{}), unsafe.Alignof(runInternal{})},
		{"runSystemEvent", unsafe.Sizeof(runSystemEvent{}), unsafe.Alignof(runSystemEvent{})},
		{"runEOI", unsafe.Sizeof(runEOI{}), unsafe.Alignof(runEOI{})},
		{"runMSR", unsafe.Sizeof(runMSR{}), unsafe.Alignof(runMSR{})},
	} {
		if m.size > unsafe.Sizeof(run.Exit) || m.align > 8 || unsafe.Offsetof(run.Exit)%m.align != 0 {
			t.Errorf("%s (size %d, align %d) does not fit the exit union", m.name, m.size, m.align)
		}
	}
}
