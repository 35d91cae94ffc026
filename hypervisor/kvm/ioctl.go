package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// getState issues a request that fills a T, such as KVM_GET_REGS. op and
// detail name the request and the object in the error.
func getState[T any](fd int, req uintptr, op, detail string) (T, error) {
	var v T
	_, err := ioctlPtr(fd, req, &v)
	return v, wrapDetail(op, detail, err)
}

// setState issues a request that reads *v, such as KVM_SET_REGS.
func setState[T any](fd int, req uintptr, op, detail string, v *T) error {
	_, err := ioctlPtr(fd, req, v)
	return wrapDetail(op, detail, err)
}

// msrsHeader is the fixed part of struct kvm_msrs; NMSRs MSREntry follow.
type msrsHeader struct {
	NMSRs uint32
	_     uint32
}

// msrListHeader is the fixed part of struct kvm_msr_list; NMSRs uint32
// indices follow.
type msrListHeader struct {
	NMSRs uint32
}

// Initial and largest buffer sizes of the list ioctls, which grow the
// buffer on E2BIG. KVM lists a few hundred MSRs and at most
// KVM_MAX_CPUID_ENTRIES (256) CPUID entries. A buffer too small costs a
// whole second ioctl: KVM fills it before it finds it short (a host
// with 75 CPUID entries spent 0.9 ms on a 64-entry attempt, more than
// on the call that succeeded).
const (
	initialMSRIndices = 256
	maxMSRIndices     = 1 << 16
	initialCPUID      = 256
	maxCPUIDEntries   = 4096
)

// maxIOMSRs is how many MSRs one KVM_GET_MSRS or KVM_SET_MSRS may carry:
// KVM refuses MAX_IO_MSRS (256) or more with E2BIG, so longer lists are
// sent in batches.
const maxIOMSRs = 255

// getMSRs reads MSRs with KVM_GET_MSRS on fd (a vCPU, or /dev/kvm for
// feature MSRs). See VCPU.MSRs.
func getMSRs(fd int, detail string, indices []uint32) ([]MSREntry, error) {
	var out []MSREntry
	for start := 0; start < len(indices); start += maxIOMSRs {
		batch := indices[start:min(start+maxIOMSRs, len(indices))]
		arg := newFlexArg[msrsHeader, MSREntry](len(batch))
		arg.header().NMSRs = uint32(len(batch))
		entries := arg.entries()
		for i, idx := range batch {
			entries[i].Index = idx
		}
		n, err := arg.ioctl(fd, kvmGetMSRs)
		if err != nil {
			return out, wrapDetail("KVM_GET_MSRS", detail, err)
		}
		n = min(n, len(batch))
		out = append(out, entries[:n]...)
		if n < len(batch) {
			return out, msrError("KVM_GET_MSRS", detail, batch[n], start+n, len(indices))
		}
	}
	return out, nil
}

// setMSRs writes MSRs with KVM_SET_MSRS on fd. See VCPU.SetMSRs.
func setMSRs(fd int, detail string, msrs []MSREntry) error {
	for start := 0; start < len(msrs); start += maxIOMSRs {
		batch := msrs[start:min(start+maxIOMSRs, len(msrs))]
		arg := newFlexArg[msrsHeader, MSREntry](len(batch))
		arg.header().NMSRs = uint32(len(batch))
		copy(arg.entries(), batch)
		n, err := arg.ioctl(fd, kvmSetMSRs)
		if err != nil {
			return wrapDetail("KVM_SET_MSRS", detail, err)
		}
		if n < len(batch) {
			return msrError("KVM_SET_MSRS", detail, batch[n].Index, start+n, len(msrs))
		}
	}
	return nil
}

// msrError reports that KVM stopped at entry n of total, MSR index.
func msrError(op, detail string, index uint32, n, total int) error {
	d := fmt.Sprintf("MSR %#x, entry %d of %d", index, n+1, total)
	if detail != "" {
		d = detail + ", " + d
	}
	return &Error{Op: op, Detail: d, Err: ErrMSRRejected}
}

// getMSRIndexList issues KVM_GET_MSR_INDEX_LIST or
// KVM_GET_MSR_FEATURE_INDEX_LIST with room for n indices at first, growing
// the buffer to the size the kernel asks for on E2BIG.
func getMSRIndexList(fd int, req uintptr, n int) ([]uint32, error) {
	n = max(n, 1)
	for {
		arg := newFlexArg[msrListHeader, uint32](n)
		arg.header().NMSRs = uint32(n)
		_, err := arg.ioctl(fd, req)
		want := int(arg.header().NMSRs)
		switch {
		case err == nil:
			return append([]uint32(nil), arg.entries()[:min(want, n)]...), nil
		case !errors.Is(err, unix.E2BIG):
			return nil, err
		case n >= maxMSRIndices || want > maxMSRIndices:
			return nil, fmt.Errorf("more than %d MSR indices: %w", maxMSRIndices, err)
		}
		n = min(max(want, 2*n), maxMSRIndices)
	}
}

// getCPUID issues KVM_GET_SUPPORTED_CPUID, KVM_GET_EMULATED_CPUID or
// KVM_GET_CPUID2 with room for n entries at first, growing the buffer on
// E2BIG.
func getCPUID(fd int, req uintptr, n int) ([]CPUIDEntry, error) {
	n = max(n, 1)
	for {
		arg := newFlexArg[cpuid2Header, CPUIDEntry](n)
		arg.header().Nent = uint32(n)
		_, err := arg.ioctl(fd, req)
		if err == nil {
			got := min(int(arg.header().Nent), n)
			return append([]CPUIDEntry(nil), arg.entries()[:got]...), nil
		}
		if !errors.Is(err, unix.E2BIG) {
			return nil, err
		}
		if n >= maxCPUIDEntries {
			return nil, fmt.Errorf("more than %d CPUID entries: %w", maxCPUIDEntries, err)
		}
		n = min(max(2*n, int(arg.header().Nent)), maxCPUIDEntries)
	}
}

// enableCapability issues KVM_ENABLE_CAP on fd (a VM or a vCPU).
func enableCapability(fd int, c Cap, args []uint64) error {
	ec := enableCap{Cap: uint32(c)}
	if len(args) > len(ec.Args) {
		return fmt.Errorf("%d arguments, at most %d: %w", len(args), len(ec.Args), unix.EINVAL)
	}
	copy(ec.Args[:], args)
	_, err := ioctlPtr(fd, kvmEnableCap, &ec)
	return err
}
