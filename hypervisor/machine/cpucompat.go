package machine

import (
	"fmt"
	"strings"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// featureRegs are the CPUID registers that enumerate CPU features: a
// saved vCPU may use any bit set there, so a host that restores it must
// offer each one. mask leaves out the bits paddock's CPUID policy sets
// itself, or that KVM rewrites as the guest runs.
var featureRegs = []struct {
	leaf, sub uint32
	reg       string
	mask      uint32
}{
	{leafFeatures, 0, "ECX", ^uint32(featHypervisor | featTSCDeadline | 1<<27)}, // 27: OSXSAVE follows CR4
	{leafFeatures, 0, "EDX", ^uint32(featHTT | 1<<9)},                           // 9: APIC follows the APIC base MSR
	{7, 0, "EBX", ^uint32(0)},
	{7, 0, "ECX", ^uint32(1 << 4)}, // 4: OSPKE follows CR4
	{7, 0, "EDX", ^uint32(0)},
	{7, 1, "EAX", ^uint32(0)},
	{0xd, 0, "EAX", ^uint32(0)}, // XCR0 state components
	{0xd, 0, "EDX", ^uint32(0)},
	{0xd, 1, "EAX", ^uint32(0)},
	{leafExtFeatures, 0, "ECX", ^uint32(featCmpLegacy)},
	{leafExtFeatures, 0, "EDX", ^uint32(0)},
}

// cpuCompatible checks that a host whose KVM supports the CPUID table
// host can run a vCPU that was given saved: the same vendor, and every
// feature bit of saved offered by host.
func cpuCompatible(saved, host []kvm.CPUIDEntry) error {
	if a, b := vendorString(saved), vendorString(host); a != b {
		return fmt.Errorf("the snapshot was taken on a %s CPU, this host has a %s CPU", a, b)
	}
	var missing []string
	for _, f := range featureRegs {
		want := cpuidReg(kvm.FindCPUID(saved, f.leaf, f.sub), f.reg) & f.mask
		have := cpuidReg(kvm.FindCPUID(host, f.leaf, f.sub), f.reg)
		if lack := want &^ have; lack != 0 {
			missing = append(missing, fmt.Sprintf("leaf %#x.%d %s bits %#08x", f.leaf, f.sub, f.reg, lack))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the snapshot's vCPUs use CPU features this host's KVM does not offer (CPUID %s): restore it on a host with the same CPU model",
			strings.Join(missing, ", "))
	}
	return nil
}

// vendorString is the CPU vendor of a CPUID table ("GenuineIntel"), or
// "unknown".
func vendorString(t []kvm.CPUIDEntry) string {
	e := kvm.FindCPUID(t, leafVendor, 0)
	if e == nil {
		return "unknown"
	}
	var b [12]byte
	for i, r := range []uint32{e.EBX, e.EDX, e.ECX} {
		for j := 0; j < 4; j++ {
			b[4*i+j] = byte(r >> (8 * j))
		}
	}
	return strings.TrimRight(string(b[:]), "\x00")
}

// cpuidReg returns register reg ("EAX" ... "EDX") of e, or 0 for none.
func cpuidReg(e *kvm.CPUIDEntry, reg string) uint32 {
	if e == nil {
		return 0
	}
	switch reg {
	case "EAX":
		return e.EAX
	case "EBX":
		return e.EBX
	case "ECX":
		return e.ECX
	}
	return e.EDX
}
