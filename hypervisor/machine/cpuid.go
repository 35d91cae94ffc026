package machine

import (
	"encoding/binary"
	"math/bits"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// CPUID policy: every vCPU sees the host features KVM can virtualise
// (KVM_GET_SUPPORTED_CPUID) with a topology of one socket holding n cores
// of one thread each, APIC ID = vCPU index, the hypervisor bit set, and
// KVM's paravirtual leaves (kvmclock, PV EOI, ...) so that Linux uses
// kvmclock instead of calibrating its TSC against the PIT.

// CPU vendors the topology leaves differ for.
type cpuVendor int

const (
	vendorOther cpuVendor = iota
	vendorIntel
	vendorAMD
)

// CPUID leaves and bits this policy rewrites.
const (
	leafVendor       = 0x0
	leafFeatures     = 0x1
	leafCacheIntel   = 0x4
	leafTopology     = 0xB
	leafTopologyV2   = 0x1F
	leafKVMSignature = 0x4000_0000
	leafKVMFeatures  = 0x4000_0001
	leafExtFeatures  = 0x8000_0001
	leafAddrSizes    = 0x8000_0008
	leafCacheAMD     = 0x8000_001D
	leafTopologyAMD  = 0x8000_001E

	featHTT         = 1 << 28 // leaf 1 EDX
	featHypervisor  = 1 << 31 // leaf 1 ECX
	featTSCDeadline = 1 << 24 // leaf 1 ECX
	featCmpLegacy   = 1 << 1  // leaf 0x80000001 ECX
	topoLevelSMT    = 1
	topoLevelCore   = 2
	cacheLevelShift = 5
)

func vendorOf(entries []kvm.CPUIDEntry) cpuVendor {
	switch vendorString(entries) {
	case "GenuineIntel":
		return vendorIntel
	case "AuthenticAMD", "HygonGenuine":
		return vendorAMD
	}
	return vendorOther
}

// idBits is the number of APIC ID bits needed to number n items.
func idBits(n int) uint32 {
	if n <= 1 {
		return 0
	}
	return uint32(bits.Len(uint(n - 1)))
}

// cpuidFor returns the CPUID table for vCPU index (APIC ID index) of a
// machine with n vCPUs, derived from KVM's supported table. The input is
// not modified. tscDeadline says the in-kernel LAPIC has the TSC-deadline
// timer (KVM_CAP_TSC_DEADLINE_TIMER): KVM does not list that feature in
// its supported table because the LAPIC is emulated, so userspace sets it.
// Without it Linux calibrates the LAPIC timer against the PIT, which is
// slow and, nested, fails.
func cpuidFor(supported []kvm.CPUIDEntry, index, n int, tscDeadline bool) []kvm.CPUIDEntry {
	vendor := vendorOf(supported)
	apicID := uint32(index)
	count := uint32(min(n, 255))
	out := make([]kvm.CPUIDEntry, 0, len(supported)+2)
	haveKVM := false
	emittedTopology := map[uint32]bool{}
	for _, e := range supported {
		switch e.Function {
		case leafFeatures:
			e.EBX = e.EBX&0x0000_FFFF | count<<16 | apicID<<24
			e.ECX |= featHypervisor
			if tscDeadline {
				e.ECX |= featTSCDeadline
			}
			if n > 1 {
				e.EDX |= featHTT
			} else {
				e.EDX &^= featHTT
			}
		case leafCacheIntel:
			if vendor == vendorIntel && e.EAX&0x1F != 0 {
				sharing := uint32(0)
				if (e.EAX>>cacheLevelShift)&7 == 3 {
					sharing = count - 1
				}
				e.EAX = e.EAX&0x0000_3FFF | sharing<<14 | (count-1)<<26
			}
		case leafTopology, leafTopologyV2:
			// Whatever sub-leaves the host has, the guest gets exactly
			// SMT, core and the terminating invalid level.
			if !emittedTopology[e.Function] {
				emittedTopology[e.Function] = true
				for i := uint32(0); i < 3; i++ {
					out = append(out, topologyLeaf(e.Function, i, kvm.CPUIDFlagSignificantIndex, apicID, n))
				}
			}
			continue
		case leafKVMSignature:
			haveKVM = true
			e.EAX = max(e.EAX, leafKVMFeatures)
			e.EBX, e.ECX, e.EDX = kvmSignature()
		case leafExtFeatures:
			if vendor == vendorAMD {
				if n > 1 {
					e.ECX |= featCmpLegacy
				} else {
					e.ECX &^= featCmpLegacy
				}
			}
		case leafAddrSizes:
			if vendor == vendorAMD {
				e.ECX = idBits(n)<<12 | (count - 1)
			}
		case leafCacheAMD:
			if vendor == vendorAMD && e.EAX&0x1F != 0 {
				sharing := uint32(0)
				if (e.EAX>>cacheLevelShift)&7 == 3 {
					sharing = count - 1
				}
				e.EAX = e.EAX&^(0xFFF<<14) | sharing<<14
			}
		case leafTopologyAMD:
			if vendor == vendorAMD {
				e.EAX = apicID
				e.EBX = apicID & 0xFF // core id; threads per core - 1 = 0
				e.ECX = 0             // node 0, one node per socket
				e.EDX = 0
			}
		}
		out = append(out, e)
	}
	if !haveKVM {
		b, c, d := kvmSignature()
		out = append(out, kvm.CPUIDEntry{Function: leafKVMSignature, EAX: leafKVMFeatures, EBX: b, ECX: c, EDX: d})
	}
	return out
}

// topologyLeaf builds one sub-leaf of the extended topology enumeration
// (leaf 0xB or 0x1F): level 0 is SMT (one thread per core), level 1 is the
// core level (n cores), and higher sub-leaves are invalid.
func topologyLeaf(fn, index, flags uint32, apicID uint32, n int) kvm.CPUIDEntry {
	e := kvm.CPUIDEntry{Function: fn, Index: index, Flags: flags, EDX: apicID}
	switch index {
	case 0:
		e.EAX = 0 // one thread: no ID bits for SMT
		e.EBX = 1
		e.ECX = topoLevelSMT<<8 | index
	case 1:
		e.EAX = idBits(n)
		e.EBX = uint32(n)
		e.ECX = topoLevelCore<<8 | index
	default:
		e.ECX = index // level type 0: invalid, ends the enumeration
	}
	return e
}

// kvmSignature is "KVMKVMKVM\0\0\0" as the EBX, ECX, EDX of leaf 0x40000000.
func kvmSignature() (ebx, ecx, edx uint32) {
	sig := []byte("KVMKVMKVM\x00\x00\x00")
	return binary.LittleEndian.Uint32(sig[0:]), binary.LittleEndian.Uint32(sig[4:]), binary.LittleEndian.Uint32(sig[8:])
}
