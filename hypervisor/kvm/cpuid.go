package kvm

// CPUIDEntry is one CPUID leaf (Function) and sub-leaf (Index) with the
// register values the guest reads. It mirrors struct kvm_cpuid_entry2.
// Index only matters when Flags has CPUIDFlagSignificantIndex.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// FindCPUID returns the entry of entries that a guest executing CPUID with
// EAX=function, ECX=index would read, or nil if there is none. The index is
// ignored for entries without CPUIDFlagSignificantIndex, as KVM does.
func FindCPUID(entries []CPUIDEntry, function, index uint32) *CPUIDEntry {
	for i := range entries {
		e := &entries[i]
		if e.Function != function {
			continue
		}
		if e.Flags&CPUIDFlagSignificantIndex != 0 && e.Index != index {
			continue
		}
		return e
	}
	return nil
}

// cpuid2Header is the fixed part of struct kvm_cpuid2; Nent entries follow.
type cpuid2Header struct {
	Nent uint32
	_    uint32
}
