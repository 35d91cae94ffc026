package machine

import (
	"github.com/paddock-vm/paddock/hypervisor/boot"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// Architectural MSRs the machine initialises on every vCPU, as a PC
// firmware would leave them for the OS.
const (
	msrIA32TSC          = 0x10
	msrSysenterCS       = 0x174
	msrSysenterESP      = 0x175
	msrSysenterEIP      = 0x176
	msrIA32MiscEnable   = 0x1a0
	msrMTRRDefType      = 0x2ff
	msrSTAR             = 0xc000_0081
	msrLSTAR            = 0xc000_0082
	msrCSTAR            = 0xc000_0083
	msrSyscallMask      = 0xc000_0084
	msrKernelGSBase     = 0xc000_0102
	miscEnableFastStr   = 1 << 0
	mtrrEnable          = 1 << 11
	mtrrTypeWriteBack   = 6
	lapicLVTLINT0       = 0x350
	lapicLVTLINT1       = 0x360
	lapicDeliveryExtINT = 0x7 << 8
	lapicDeliveryNMI    = 0x4 << 8
	fpuControlDefault   = 0x37f
	mxcsrDefault        = 0x1f80
)

// bootMSRs are written on every vCPU before it first runs: syscall MSRs
// cleared, fast strings on, and MTRRs enabled with write-back as the
// default type (without it Linux maps all of RAM uncached).
var bootMSRs = []kvm.MSREntry{
	{Index: msrSysenterCS}, {Index: msrSysenterESP}, {Index: msrSysenterEIP},
	{Index: msrSTAR}, {Index: msrLSTAR}, {Index: msrCSTAR}, {Index: msrSyscallMask}, {Index: msrKernelGSBase},
	{Index: msrIA32TSC},
	{Index: msrIA32MiscEnable, Data: miscEnableFastStr},
	{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWriteBack},
}

// setupVCPU gives a freshly created vCPU its CPUID, MSRs, FPU state and
// LAPIC local interrupt wiring (LINT0 ExtINT for the PIC, LINT1 NMI), as
// firmware would. It is done for every vCPU, boot CPU or not.
func setupVCPU(k *kvm.VCPU, cpuid []kvm.CPUIDEntry, msrs []kvm.MSREntry) error {
	if err := k.SetCPUID2(cpuid); err != nil {
		return err
	}
	if err := k.SetMSRs(msrs); err != nil {
		return err
	}
	fpu, err := k.FPU()
	if err != nil {
		return err
	}
	fpu.FCW = fpuControlDefault
	fpu.MXCSR = mxcsrDefault
	if err := k.SetFPU(fpu); err != nil {
		return err
	}
	lapic, err := k.LAPIC()
	if err != nil {
		return err
	}
	lapic.Set32(lapicLVTLINT0, lapic.Get32(lapicLVTLINT0)&^0x700|lapicDeliveryExtINT)
	lapic.Set32(lapicLVTLINT1, lapic.Get32(lapicLVTLINT1)&^0x700|lapicDeliveryNMI)
	return k.SetLAPIC(lapic)
}

// supportedBootMSRs keeps the boot MSRs this host's KVM knows about.
func supportedBootMSRs(index []uint32) []kvm.MSREntry {
	have := make(map[uint32]bool, len(index))
	for _, i := range index {
		have[i] = true
	}
	var out []kvm.MSREntry
	for _, e := range bootMSRs {
		if have[e.Index] {
			out = append(out, e)
		}
	}
	return out
}

// setBootRegisters puts the boot vCPU at the kernel entry point the loader
// chose.
func setBootRegisters(k *kvm.VCPU, e *boot.Entry) error {
	sregs, err := k.Sregs()
	if err != nil {
		return err
	}
	sregs.CS = kvmSegment(e.CS)
	ds := kvmSegment(e.DS)
	sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = ds, ds, ds, ds, ds
	if e.TR.Present {
		sregs.TR = kvmSegment(e.TR)
	}
	sregs.GDT.Base, sregs.GDT.Limit = e.GDTBase, e.GDTLimit
	sregs.IDT.Base, sregs.IDT.Limit = e.IDTBase, e.IDTLimit
	sregs.CR0, sregs.CR3, sregs.CR4, sregs.EFER = e.CR0, e.CR3, e.CR4, e.EFER
	if err := k.SetSregs(sregs); err != nil {
		return err
	}
	flags := e.RFLAGS
	if flags == 0 {
		flags = 0x2 // bit 1 is reserved and always set
	}
	return k.SetRegs(kvm.Regs{RIP: e.RIP, RSP: e.RSP, RSI: e.RSI, RBX: e.RBX, RFLAGS: flags})
}

func kvmSegment(s boot.Segment) kvm.Segment {
	return kvm.Segment{
		Base:     s.Base,
		Limit:    s.Limit,
		Selector: s.Selector,
		Type:     s.Type,
		Present:  b2u(s.Present),
		DPL:      3 * b2u(s.DPL),
		DB:       b2u(s.DB),
		S:        b2u(s.S),
		L:        b2u(s.L),
		G:        b2u(s.G),
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
