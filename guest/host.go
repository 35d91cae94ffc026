package guest

import "github.com/paddock-vm/paddock/hypervisor/machine"

// HostReport inspects this host's KVM for the native backend: whether it
// is usable and whether it has hardware virtualization.
func HostReport() machine.HostReport {
	return machine.Probe("", "/sys", "/proc")
}

// MaxVCPUs is the most vCPUs one VM may have on this host's KVM, or 0 when
// KVM cannot be inspected (the VM then fails to start with the reason).
func MaxVCPUs() int {
	return HostReport().MaxVCPUs
}
