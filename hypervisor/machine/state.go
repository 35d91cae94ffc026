package machine

import (
	"github.com/paddock-vm/paddock/hypervisor/devices/acpipm"
	"github.com/paddock-vm/paddock/hypervisor/devices/ged"
	"github.com/paddock-vm/paddock/hypervisor/devices/i8042"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
	"github.com/paddock-vm/paddock/hypervisor/devices/rtc"
	"github.com/paddock-vm/paddock/hypervisor/devices/serial"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/devices/vmgenid"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// State is everything of a machine a snapshot keeps besides guest RAM
// (the memory file) and the disks' contents (their internal qcow2
// snapshots): every vCPU, the in-kernel interrupt controllers, PIT and
// clock, and every device model, as plain data. Save fills it; Restore
// builds a machine from it. Snapshot files store it (state_codec.go).
type State struct {
	// CPUs and Memory are the hardware the state belongs to; a restore
	// needs a Config with the same.
	CPUs   int
	Memory uint64

	VCPUs []VCPUState

	PICMaster kvm.PICState
	PICSlave  kvm.PICState
	IOAPIC    kvm.IOAPICState
	PIT       kvm.PITState2
	// Clock is the guest's kvmclock in nanoseconds when it was saved;
	// the restored guest's clock continues from it.
	Clock uint64

	Serial serial.State
	I8042  i8042.State
	RTC    rtc.State
	PM     acpipm.State
	PCI    pci.State
	GED    ged.State
	// VMGenID is where the guest reads its generation ID and the ID it
	// had; a restore keeps the place and writes a new ID there.
	VMGenID vmgenid.State

	// Virtio holds the virtio functions in PCI slot order: disks, NICs,
	// then the RNG.
	Virtio []VirtioState
}

// VCPUState is one vCPU's complete architectural and KVM state.
type VCPUState struct {
	// CPUID is the table the vCPU was given; the restored vCPU gets
	// it again, whatever the new host would offer.
	CPUID  []kvm.CPUIDEntry
	Regs   kvm.Regs
	Sregs  kvm.Sregs
	FPU    kvm.FPU
	XSave  snapshot.Bytes // the XSAVE area (KVM_GET_XSAVE or XSAVE2)
	XCRs   kvm.XCRs
	LAPIC  snapshot.Bytes // kvm.LAPICState's bytes
	MSRs   []kvm.MSREntry
	Events kvm.VCPUEvents
	MP     kvm.MPState
	Debug  kvm.DebugRegs
	// TSCKHz is the guest TSC's frequency; 0 when KVM could not say.
	TSCKHz uint32
}

// VirtioState is one virtio function: its transport and its device
// model's state (exactly one of Blk, Net and RNG is set).
type VirtioState struct {
	Name      string // "virtio-blk disks[0]", as the machine names it
	Transport virtio.PCIState
	Blk       *blk.State  `json:",omitempty"`
	Net       *vnet.State `json:",omitempty"`
	RNG       *rng.State  `json:",omitempty"`
	// Snapshot is, for a writable disk, the internal qcow2 snapshot that
	// holds the disk's contents at the instant the state was saved;
	// empty for read-only disks and other devices.
	Snapshot string `json:",omitempty"`
}
