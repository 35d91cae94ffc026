package machine

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// vendorLeaf returns leaf 0 for a 12-byte vendor string.
func vendorLeaf(id string) kvm.CPUIDEntry {
	b := []byte(id)
	return kvm.CPUIDEntry{
		Function: 0, EAX: 0x1f,
		EBX: binary.LittleEndian.Uint32(b[0:]),
		EDX: binary.LittleEndian.Uint32(b[4:]),
		ECX: binary.LittleEndian.Uint32(b[8:]),
	}
}

// hostTable is a small supported-CPUID table shaped like KVM's.
func hostTable(vendor string) []kvm.CPUIDEntry {
	sig := uint32(kvm.CPUIDFlagSignificantIndex)
	return []kvm.CPUIDEntry{
		vendorLeaf(vendor),
		{Function: 1, EAX: 0x00a00f11, EBX: 0x00080800 | 0xff<<24, ECX: 0x7ed8320b, EDX: 0x178bfbff},
		{Function: 4, Index: 0, Flags: sig, EAX: 0x1<<5 | 0x1 | 0xfc000000},       // L1d
		{Function: 4, Index: 1, Flags: sig, EAX: 0x3<<5 | 0x3 | 0x3ff<<14},        // L3
		{Function: 0xb, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100, EDX: 7}, // host's SMT level
		{Function: 0x4000_0000, EAX: 0x4000_0001},
		{Function: 0x4000_0001, EAX: 0x01007afb},
		{Function: 0x8000_0001, ECX: 0x75c237ff &^ featCmpLegacy},
		{Function: 0x8000_0008, EAX: 0x3030, ECX: 0x7007},
		{Function: 0x8000_001d, Index: 3, Flags: sig, EAX: 0x3<<5 | 0x3 | 0x7<<14},
		{Function: 0x8000_001e, EAX: 9, EBX: 0x109, ECX: 0x3},
	}
}

func find(t *testing.T, es []kvm.CPUIDEntry, fn, idx uint32) kvm.CPUIDEntry {
	t.Helper()
	for _, e := range es {
		if e.Function == fn && e.Index == idx {
			return e
		}
	}
	t.Fatalf("leaf %#x.%d missing", fn, idx)
	return kvm.CPUIDEntry{}
}

func TestCPUIDTopology(t *testing.T) {
	for _, vendor := range []string{"AuthenticAMD", "GenuineIntel"} {
		for _, n := range []int{1, 2, 3, 4, 8} {
			for _, idx := range []int{0, n - 1} {
				t.Run(fmt.Sprintf("%s/n=%d/cpu=%d", vendor, n, idx), func(t *testing.T) {
					host := hostTable(vendor)
					before := fmt.Sprint(host)
					got := cpuidFor(host, idx, n, n%2 == 0)
					if fmt.Sprint(host) != before {
						t.Fatal("cpuidFor modified its input")
					}
					l1 := find(t, got, 1, 0)
					if apic := l1.EBX >> 24; apic != uint32(idx) {
						t.Errorf("leaf 1 APIC ID = %d, want %d", apic, idx)
					}
					if cnt := l1.EBX >> 16 & 0xff; cnt != uint32(n) {
						t.Errorf("leaf 1 logical count = %d, want %d", cnt, n)
					}
					if l1.EBX&0xffff != 0x0800 {
						t.Errorf("leaf 1 EBX low half changed: %#x", l1.EBX&0xffff)
					}
					if ht := l1.EDX&featHTT != 0; ht != (n > 1) {
						t.Errorf("HTT = %v with %d CPUs", ht, n)
					}
					if l1.ECX&featHypervisor == 0 {
						t.Error("hypervisor bit clear")
					}
					if dl := l1.ECX&featTSCDeadline != 0; dl != (n%2 == 0) {
						t.Errorf("TSC deadline = %v, want %v", dl, n%2 == 0)
					}
					// Extended topology: SMT level 1 thread, core level n.
					smt, core, end := find(t, got, 0xb, 0), find(t, got, 0xb, 1), find(t, got, 0xb, 2)
					if smt.EBX != 1 || smt.ECX != 0x100 || smt.EAX != 0 {
						t.Errorf("0xb.0 = %+v", smt)
					}
					if core.EBX != uint32(n) || core.ECX != 0x201 || 1<<core.EAX < n || (n > 1 && 1<<(core.EAX-1) >= n) {
						t.Errorf("0xb.1 = %+v for %d CPUs", core, n)
					}
					if end.ECX>>8&0xff != 0 {
						t.Errorf("0xb.2 level type = %d, want 0 (invalid)", end.ECX>>8&0xff)
					}
					for _, e := range []kvm.CPUIDEntry{smt, core, end} {
						if e.EDX != uint32(idx) {
							t.Errorf("leaf 0xb.%d x2APIC ID = %d, want %d", e.Index, e.EDX, idx)
						}
						if e.Flags&kvm.CPUIDFlagSignificantIndex == 0 {
							t.Errorf("leaf 0xb.%d lacks the significant-index flag", e.Index)
						}
					}
					sig := find(t, got, 0x4000_0000, 0)
					var b [12]byte
					binary.LittleEndian.PutUint32(b[0:], sig.EBX)
					binary.LittleEndian.PutUint32(b[4:], sig.ECX)
					binary.LittleEndian.PutUint32(b[8:], sig.EDX)
					if string(b[:9]) != "KVMKVMKVM" || sig.EAX < 0x4000_0001 {
						t.Errorf("KVM signature leaf = %+v (%q)", sig, b)
					}
					if vendor == "AuthenticAMD" {
						a8 := find(t, got, 0x8000_0008, 0)
						if nc := a8.ECX & 0xff; nc != uint32(n-1) {
							t.Errorf("0x80000008 NC = %d, want %d", nc, n-1)
						}
						if size := a8.ECX >> 12 & 0xf; 1<<size < n {
							t.Errorf("ApicIdCoreIdSize %d too small for %d CPUs", size, n)
						}
						if a8.EAX != 0x3030 {
							t.Errorf("0x80000008 EAX (address sizes) changed to %#x", a8.EAX)
						}
						if cmp := find(t, got, 0x8000_0001, 0).ECX&featCmpLegacy != 0; cmp != (n > 1) {
							t.Errorf("CmpLegacy = %v with %d CPUs", cmp, n)
						}
						e := find(t, got, 0x8000_001e, 0)
						if e.EAX != uint32(idx) || e.EBX&0xff != uint32(idx) || e.EBX>>8&0xff != 0 {
							t.Errorf("0x8000001e = %+v", e)
						}
						if share := find(t, got, 0x8000_001d, 3).EAX >> 14 & 0xfff; share != uint32(n-1) {
							t.Errorf("L3 shared by %d, want %d", share+1, n)
						}
					} else {
						l1d, l3 := find(t, got, 4, 0), find(t, got, 4, 1)
						if cores := l1d.EAX>>26 + 1; cores != uint32(n) {
							t.Errorf("leaf 4 cores per package = %d, want %d", cores, n)
						}
						if share := l1d.EAX >> 14 & 0xfff; share != 0 {
							t.Errorf("L1d shared by %d threads", share+1)
						}
						if share := l3.EAX >> 14 & 0xfff; share != uint32(n-1) {
							t.Errorf("L3 shared by %d, want %d", share+1, n)
						}
					}
				})
			}
		}
	}
}

func TestCPUIDAddsKVMLeaf(t *testing.T) {
	host := hostTable("AuthenticAMD")[:2]
	got := cpuidFor(host, 0, 1, false)
	if e := find(t, got, 0x4000_0000, 0); e.EAX != 0x4000_0001 {
		t.Fatalf("added KVM leaf = %+v", e)
	}
}

func TestCPUIDFromHostKVM(t *testing.T) {
	requireKVM(t)
	sys, err := kvm.Open("/dev/kvm")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	sup, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	got := cpuidFor(sup, 3, 4, true)
	if apic := find(t, got, 1, 0).EBX >> 24; apic != 3 {
		t.Fatalf("APIC ID = %d, want 3", apic)
	}
	find(t, got, 0x4000_0001, 0) // kvmclock and friends come from KVM
}
