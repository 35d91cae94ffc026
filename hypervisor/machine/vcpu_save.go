package machine

import (
	"errors"
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// save reads every piece of the vCPU's state. index is KVM's list of
// MSRs to save (KVM_GET_MSR_INDEX_LIST). Precondition: the vCPU is not
// in KVM_RUN (paused, its last I/O completed, or never run).
func (v *vcpu) save(index []uint32) (VCPUState, error) {
	k := v.k
	vs := VCPUState{CPUID: append([]kvm.CPUIDEntry(nil), v.cpuid...)}
	var errs [10]error
	vs.Regs, errs[0] = k.Regs()
	vs.Sregs, errs[1] = k.Sregs()
	vs.FPU, errs[2] = k.FPU()
	var xsave kvm.XSave
	xsave, errs[3] = k.XSave()
	vs.XSave = xsave.Region
	vs.XCRs, errs[4] = k.XCRs()
	var lapic kvm.LAPICState
	lapic, errs[5] = k.LAPIC()
	vs.LAPIC = lapic[:]
	vs.Events, errs[6] = k.VCPUEvents()
	vs.MP, errs[7] = k.MPState()
	vs.Debug, errs[8] = k.DebugRegs()
	vs.MSRs, errs[9] = readMSRs(k, index)
	if err := errors.Join(errs[:]...); err != nil {
		return VCPUState{}, err
	}
	// KVM_GET_TSC_KHZ is optional (KVM_CAP_GET_TSC_KHZ); without it the
	// restore cannot compare frequencies and keeps the host's.
	if khz, err := k.TSCKHz(); err == nil {
		vs.TSCKHz = khz
	}
	return vs, nil
}

// readMSRs reads the MSRs of index that KVM lets user space read: it
// skips the ones it refuses (KVM lists some that depend on the vCPU's
// CPUID or the host, and reads stop at the first refused one).
func readMSRs(k *kvm.VCPU, index []uint32) ([]kvm.MSREntry, error) {
	var out []kvm.MSREntry
	for len(index) > 0 {
		got, err := k.MSRs(index)
		out = append(out, got...)
		if err == nil {
			break
		}
		if !errors.Is(err, kvm.ErrMSRRejected) {
			return nil, err
		}
		index = index[len(got)+1:] // the refused one is skipped
	}
	return out, nil
}

// restore loads vs into the vCPU, in the order KVM needs: the CPUID
// (given when the vCPU was built) first; MP state and registers; the
// special registers (which set the APIC base) before the LAPIC; the
// LAPIC before the MSRs, since the TSC deadline MSR only restores into a
// LAPIC in TSC-deadline mode; the events last, as setting the registers
// clears pending exceptions.
func (v *vcpu) restore(vs VCPUState) error {
	k := v.k
	if len(vs.LAPIC) != len(kvm.LAPICState{}) {
		return fmt.Errorf("LAPIC state of %d bytes, want %d", len(vs.LAPIC), len(kvm.LAPICState{}))
	}
	var lapic kvm.LAPICState
	copy(lapic[:], vs.LAPIC)
	if err := v.restoreTSCFrequency(vs.TSCKHz); err != nil {
		return err
	}
	steps := []func() error{
		func() error { return k.SetMPState(vs.MP) },
		func() error { return k.SetRegs(vs.Regs) },
		func() error { return k.SetSregs(vs.Sregs) },
		func() error { return k.SetFPU(vs.FPU) },
		func() error { return k.SetXSave(kvm.XSave{Region: vs.XSave}) },
		func() error { return k.SetXCRs(vs.XCRs) },
		func() error { return k.SetDebugRegs(vs.Debug) },
		func() error { return k.SetLAPIC(lapic) },
		func() error { return k.SetMSRs(vs.MSRs) },
		func() error { return k.SetVCPUEvents(vs.Events) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// tscTolerance is how far (parts per million) the saved guest TSC
// frequency may be from this host's before it must be scaled: hosts
// calibrate their TSC at boot, and the same machine measures a slightly
// different frequency each time.
const tscTolerance = 250

// restoreTSCFrequency gives the vCPU the saved guest TSC frequency when
// this host's differs by more than tscTolerance: the guest's kvmclock
// and TSC deadline arithmetic are built on it.
func (v *vcpu) restoreTSCFrequency(saved uint32) error {
	if saved == 0 {
		return nil
	}
	cur, err := v.k.TSCKHz()
	if err != nil {
		return nil // KVM cannot tell; nothing to compare
	}
	diff := int64(cur) - int64(saved)
	if diff < 0 {
		diff = -diff
	}
	if diff*1_000_000 <= int64(saved)*tscTolerance {
		return nil
	}
	if err := v.k.SetTSCKHz(saved); err != nil {
		return fmt.Errorf("the snapshot's guest TSC runs at %d kHz, this host's at %d kHz, and its KVM cannot scale it: %w", saved, cur, err)
	}
	return nil
}
