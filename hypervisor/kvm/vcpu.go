package kvm

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its fd and the kvm_run page mapped from it.
//
// Run and the exit accessors (ExitReason, IO, MMIO, ...) belong to the one
// goroutine that runs the vCPU, which should be locked to its OS thread; the
// exit accessors are valid between a successful Run and the next one. The
// state ioctls (Regs, SetRegs, ...) may be called from any goroutine while
// the vCPU is not inside Run (KVM serialises them with KVM_RUN anyway).
// SetImmediateExit is safe from any goroutine at any time. Close must not
// run concurrently with any method but SetImmediateExit.
type VCPU struct {
	id         int
	fd         int
	xsaveSize  int // KVM_CAP_XSAVE2 size; 0 when KVM_GET_XSAVE2 is not used
	runMu      sync.RWMutex
	run        []byte     // the kvm_run mapping; nil after Close
	hdr        *runHeader // start of run
	closedOnce sync.Once
}

// ID returns the vCPU id given to CreateVCPU (the initial APIC ID).
func (c *VCPU) ID() int { return c.id }

// Fd returns the vCPU file descriptor, or -1 after Close.
func (c *VCPU) Fd() int { return c.fd }

// Close unmaps kvm_run and closes the vCPU fd. Closing twice is a no-op.
func (c *VCPU) Close() error {
	var err error
	c.closedOnce.Do(func() {
		c.runMu.Lock()
		defer c.runMu.Unlock()
		var unmapErr error
		if c.run != nil {
			unmapErr = wrapDetail("munmap kvm_run", c.name(), unix.Munmap(c.run))
			c.run, c.hdr = nil, nil
		}
		err = errors.Join(unmapErr, wrapDetail("close", c.name(), unix.Close(c.fd)))
		c.fd = -1
	})
	return err
}

// name identifies the vCPU in errors.
func (c *VCPU) name() string { return fmt.Sprintf("vCPU %d", c.id) }

// Run enters the guest once (KVM_RUN) and returns when it exits to user
// space; ExitReason then says why. Errors are returned wrapped, never
// retried here: EINTR when a signal or SetImmediateExit interrupted the
// call, EAGAIN when an application processor is not yet runnable. Callers
// retry those deliberately. (Every other ioctl of this package retries
// EINTR itself.)
func (c *VCPU) Run() error {
	if err := runIoctl(c.fd); err != nil {
		return &Error{Op: "KVM_RUN", Detail: c.name(), Err: err}
	}
	return nil
}

// SetImmediateExit sets or clears kvm_run.immediate_exit. While it is set,
// Run returns EINTR at once without entering the guest. To kick a vCPU out
// of a Run already in progress, set it and then signal the vCPU's thread.
// It is safe to call from any goroutine, also during or after Close (then
// it does nothing).
func (c *VCPU) SetImmediateExit(on bool) {
	c.runMu.RLock()
	defer c.runMu.RUnlock()
	if c.hdr != nil {
		setRunByte(c.hdr, runImmediateExitByte, boolByte(on))
	}
}

// ImmediateExit reports whether kvm_run.immediate_exit is set.
func (c *VCPU) ImmediateExit() bool {
	c.runMu.RLock()
	defer c.runMu.RUnlock()
	return c.hdr != nil && c.hdr.ImmediateExit != 0
}

// RequestInterruptWindow asks KVM (without an in-kernel irqchip) to exit
// with ExitIRQWindowOpen as soon as the guest can accept an interrupt.
func (c *VCPU) RequestInterruptWindow(on bool) {
	setRunByte(c.hdr, runRequestInterruptWindowByte, boolByte(on))
}

// ReadyForInterruptInjection reports, after an exit, whether the guest can
// accept an interrupt injected with Interrupt now.
func (c *VCPU) ReadyForInterruptInjection() bool { return c.hdr.ReadyForInterruptInjection != 0 }

// IFFlag reports RFLAGS.IF at the last exit.
func (c *VCPU) IFFlag() bool { return c.hdr.IFFlag != 0 }

// Regs returns the general-purpose registers (KVM_GET_REGS).
func (c *VCPU) Regs() (Regs, error) {
	return getState[Regs](c.fd, kvmGetRegs, "KVM_GET_REGS", c.name())
}

// SetRegs sets the general-purpose registers (KVM_SET_REGS).
func (c *VCPU) SetRegs(r Regs) error { return setState(c.fd, kvmSetRegs, "KVM_SET_REGS", c.name(), &r) }

// Sregs returns the special registers (KVM_GET_SREGS).
func (c *VCPU) Sregs() (Sregs, error) {
	return getState[Sregs](c.fd, kvmGetSregs, "KVM_GET_SREGS", c.name())
}

// SetSregs sets the special registers (KVM_SET_SREGS).
func (c *VCPU) SetSregs(s Sregs) error {
	return setState(c.fd, kvmSetSregs, "KVM_SET_SREGS", c.name(), &s)
}

// FPU returns the x87/SSE state (KVM_GET_FPU).
func (c *VCPU) FPU() (FPU, error) {
	return getState[FPU](c.fd, kvmGetFPU, "KVM_GET_FPU", c.name())
}

// SetFPU sets the x87/SSE state (KVM_SET_FPU).
func (c *VCPU) SetFPU(f FPU) error { return setState(c.fd, kvmSetFPU, "KVM_SET_FPU", c.name(), &f) }

// XCRs returns the extended control registers (KVM_GET_XCRS).
func (c *VCPU) XCRs() (XCRs, error) {
	return getState[XCRs](c.fd, kvmGetXCRs, "KVM_GET_XCRS", c.name())
}

// SetXCRs sets the extended control registers (KVM_SET_XCRS).
func (c *VCPU) SetXCRs(x XCRs) error { return setState(c.fd, kvmSetXCRs, "KVM_SET_XCRS", c.name(), &x) }

// LAPIC returns the local APIC registers (KVM_GET_LAPIC; needs the
// in-kernel irqchip).
func (c *VCPU) LAPIC() (LAPICState, error) {
	return getState[LAPICState](c.fd, kvmGetLAPIC, "KVM_GET_LAPIC", c.name())
}

// SetLAPIC sets the local APIC registers (KVM_SET_LAPIC).
func (c *VCPU) SetLAPIC(s LAPICState) error {
	return setState(c.fd, kvmSetLAPIC, "KVM_SET_LAPIC", c.name(), &s)
}

// VCPUEvents returns pending exceptions, interrupts, NMIs and SMIs
// (KVM_GET_VCPU_EVENTS).
func (c *VCPU) VCPUEvents() (VCPUEvents, error) {
	return getState[VCPUEvents](c.fd, kvmGetVCPUEvents, "KVM_GET_VCPU_EVENTS", c.name())
}

// SetVCPUEvents sets pending events (KVM_SET_VCPU_EVENTS).
func (c *VCPU) SetVCPUEvents(e VCPUEvents) error {
	return setState(c.fd, kvmSetVCPUEvents, "KVM_SET_VCPU_EVENTS", c.name(), &e)
}

// MPState returns the multiprocessing state (KVM_GET_MP_STATE).
func (c *VCPU) MPState() (MPState, error) {
	return getState[MPState](c.fd, kvmGetMPState, "KVM_GET_MP_STATE", c.name())
}

// SetMPState sets the multiprocessing state (KVM_SET_MP_STATE).
func (c *VCPU) SetMPState(s MPState) error {
	return setState(c.fd, kvmSetMPState, "KVM_SET_MP_STATE", c.name(), &s)
}

// DebugRegs returns the debug registers (KVM_GET_DEBUGREGS).
func (c *VCPU) DebugRegs() (DebugRegs, error) {
	return getState[DebugRegs](c.fd, kvmGetDebugRegs, "KVM_GET_DEBUGREGS", c.name())
}

// SetDebugRegs sets the debug registers (KVM_SET_DEBUGREGS).
func (c *VCPU) SetDebugRegs(d DebugRegs) error {
	return setState(c.fd, kvmSetDebugRegs, "KVM_SET_DEBUGREGS", c.name(), &d)
}

// SetGuestDebug enables or disables guest debugging: single-stepping and
// breakpoints that exit with ExitDebug (KVM_SET_GUEST_DEBUG).
func (c *VCPU) SetGuestDebug(d GuestDebug) error {
	return setState(c.fd, kvmSetGuestDebug, "KVM_SET_GUEST_DEBUG", c.name(), &d)
}

// Translate translates a guest-virtual address with the vCPU's current
// paging mode and page tables (KVM_TRANSLATE).
func (c *VCPU) Translate(linear uint64) (Translation, error) {
	t := Translation{LinearAddress: linear}
	_, err := ioctlPtr(c.fd, kvmTranslate, &t)
	return t, c.wrap("KVM_TRANSLATE", err)
}

// Interrupt queues external interrupt vector irq for injection; only
// without an in-kernel irqchip (KVM_INTERRUPT).
func (c *VCPU) Interrupt(irq uint32) error {
	return setState(c.fd, kvmInterrupt, "KVM_INTERRUPT", c.name(), &irq)
}

// NMI queues a non-maskable interrupt (KVM_NMI).
func (c *VCPU) NMI() error {
	_, err := ioctl(c.fd, kvmNMI, 0)
	return c.wrap("KVM_NMI", err)
}

// XSave returns the XSAVE area: with KVM_GET_XSAVE2 when the VM's
// CapXSave2 size exceeds 4096 bytes, with KVM_GET_XSAVE otherwise.
func (c *VCPU) XSave() (XSave, error) {
	if c.xsaveSize > XSaveLegacySize {
		buf := make([]byte, c.xsaveSize)
		_, err := ioctlBytes(c.fd, kvmGetXSave2, buf)
		return XSave{Region: buf}, c.wrap("KVM_GET_XSAVE2", err)
	}
	buf := make([]byte, XSaveLegacySize)
	_, err := ioctlBytes(c.fd, kvmGetXSave, buf)
	return XSave{Region: buf}, c.wrap("KVM_GET_XSAVE", err)
}

// SetXSave loads an XSAVE area (KVM_SET_XSAVE). A region shorter than the
// size KVM reads is zero-extended; bytes beyond that size are ignored.
func (c *VCPU) SetXSave(x XSave) error {
	size := max(c.xsaveSize, XSaveLegacySize)
	buf := x.Region
	if len(buf) < size {
		buf = make([]byte, size)
		copy(buf, x.Region)
	}
	_, err := ioctlBytes(c.fd, kvmSetXSave, buf)
	return c.wrap("KVM_SET_XSAVE", err)
}

// MSRs reads the MSRs listed in indices (KVM_GET_MSRS, in batches of at
// most 255). KVM reads them in order and stops at the first it refuses:
// then the entries read so far are returned with an *Error whose cause is
// ErrMSRRejected and whose Detail names the first MSR not read.
func (c *VCPU) MSRs(indices []uint32) ([]MSREntry, error) {
	return getMSRs(c.fd, c.name(), indices)
}

// SetMSRs writes MSRs (KVM_SET_MSRS). If KVM stops early, the error's cause
// is ErrMSRRejected and its Detail names the first MSR not written.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	return setMSRs(c.fd, c.name(), entries)
}

// SetCPUID2 sets the CPUID leaves the guest sees (KVM_SET_CPUID2).
func (c *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	arg := newFlexArg[cpuid2Header, CPUIDEntry](len(entries))
	arg.header().Nent = uint32(len(entries))
	copy(arg.entries(), entries)
	_, err := arg.ioctl(c.fd, kvmSetCPUID2)
	return c.wrap("KVM_SET_CPUID2", err)
}

// CPUID2 returns the CPUID leaves set with SetCPUID2 (KVM_GET_CPUID2).
func (c *VCPU) CPUID2() ([]CPUIDEntry, error) {
	entries, err := getCPUID(c.fd, kvmGetCPUID2, initialCPUID)
	return entries, c.wrap("KVM_GET_CPUID2", err)
}

// TSCKHz returns the guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
func (c *VCPU) TSCKHz() (uint32, error) {
	khz, err := ioctl(c.fd, kvmGetTSCKHz, 0)
	if err != nil {
		return 0, c.wrap("KVM_GET_TSC_KHZ", err)
	}
	return uint32(khz), nil
}

// SetTSCKHz sets the guest TSC frequency in kHz (KVM_SET_TSC_KHZ; needs
// CapTSCControl to differ from the host's).
func (c *VCPU) SetTSCKHz(khz uint32) error {
	_, err := ioctl(c.fd, kvmSetTSCKHz, uintptr(khz))
	return c.wrap("KVM_SET_TSC_KHZ", err)
}

// KVMClockCtrl tells the guest's kvmclock that the VM was paused, so its
// soft-lockup watchdog does not fire (KVM_KVMCLOCK_CTRL). It fails with
// EINVAL while the guest has not enabled kvmclock.
func (c *VCPU) KVMClockCtrl() error {
	_, err := ioctl(c.fd, kvmKVMClockCtrl, 0)
	return c.wrap("KVM_KVMCLOCK_CTRL", err)
}

// EnableCap enables a per-vCPU capability with up to four arguments
// (KVM_ENABLE_CAP on the vCPU fd).
func (c *VCPU) EnableCap(cp Cap, args ...uint64) error {
	return wrapDetail("KVM_ENABLE_CAP", c.name()+", "+cp.String(), enableCapability(c.fd, cp, args))
}

// wrap returns an *Error naming op and this vCPU, or nil.
func (c *VCPU) wrap(op string, err error) error { return wrapDetail(op, c.name(), err) }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
