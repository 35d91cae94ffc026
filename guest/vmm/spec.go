package vmm

import (
	"fmt"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// machineConfig translates a VM spec into the machine's hardware: vCPUs,
// memory and the virtio devices, on the handles h (OpenHandles): its
// disks, then its seed volume, and its NICs. The machine takes plain
// device configs and open handles and never sees the spec. The
// machine gets the VM created ahead, if the handles have one
// (Handles.CreateVMAhead).
// Precondition: vm has been through FillDefaults and Validate.
func machineConfig(vm *configs.VM, h *Handles) (machine.Config, error) {
	if err := h.fit(vm); err != nil {
		return machine.Config{}, err
	}
	cfg := machine.Config{KVM: h.KVM, CPUs: vm.CPUs, Memory: uint64(vm.Memory), RNG: vm.RNG}
	for i, n := range h.NICs {
		n.Limits = limits(vm.NICs[i].Limits, false)
		cfg.NICs = append(cfg.NICs, n)
	}
	for i, d := range h.Disks {
		md := machine.Disk{Image: d.Image, Name: d.Path, GuardFormat: d.Guard}
		if i < len(vm.Disks) {
			s := vm.Disks[i]
			md.ReadOnly, md.Serial, md.Cache = s.ReadOnly, s.Serial, blk.CacheMode(s.Cache)
			md.Limits = limits(s.Limits, true)
		} else {
			// The seed volume (OpenOptions.Seed).
			md.ReadOnly, md.Serial = true, seedSerial
		}
		cfg.Disks = append(cfg.Disks, md)
	}
	// Last: the machine takes the VM over, and nothing here fails after.
	kvmVM, err := h.takeVM()
	if err != nil {
		return machine.Config{}, err
	}
	cfg.VM = kvmVM
	return cfg, nil
}

// limits translates a disk's (disk true) or a NIC's limits into its
// device's token buckets; nil limits nothing.
func limits(l *configs.Limits, disk bool) ratelimit.Limits {
	if l == nil {
		return ratelimit.Limits{}
	}
	ops := l.Packets
	if disk {
		ops = l.IOPS
	}
	burst := time.Duration(l.Burst)
	return ratelimit.Limits{Bytes: ratelimit.RateOver(uint64(l.Bandwidth), burst), Ops: ratelimit.RateOver(ops, burst)}
}

// seedSerial is the serial number of the cloud-init seed volume's disk.
const seedSerial = "cidata"

// fit checks that the handles are vm's: one disk for each of the spec's,
// and the seed volume after them for a VM with cloud_init; one tap for
// each NIC; a kernel, and an initrd exactly when the spec names one.
func (h *Handles) fit(vm *configs.VM) error {
	disks := len(vm.Disks)
	if vm.CloudInit {
		disks++
	}
	switch {
	case h.KVM == nil || h.Kernel == nil:
		return fmt.Errorf("vmm: VM %s: the handles lack the KVM device or the kernel", vm.Name)
	case (h.Initrd != nil) != (vm.Initrd != ""):
		return fmt.Errorf("vmm: VM %s: the handles do not match the spec's initrd", vm.Name)
	case len(h.Disks) != disks:
		return fmt.Errorf("vmm: VM %s has %d disks (the seed volume included), the handles %d images", vm.Name, disks, len(h.Disks))
	case len(h.NICs) != len(vm.NICs):
		return fmt.Errorf("vmm: VM %s has %d NICs, the handles %d taps", vm.Name, len(vm.NICs), len(h.NICs))
	case h.ConsoleLog != nil && (vm.Console.Log == "" || len(h.ConsoleLog) != vm.Console.LogKeep+1):
		return fmt.Errorf("vmm: VM %s: the handles' %d console log files do not match console.log %q with console.log_keep %d", vm.Name, len(h.ConsoleLog), vm.Console.Log, vm.Console.LogKeep)
	}
	for i, d := range vm.Disks {
		if h.Disks[i].Path != d.Path {
			return fmt.Errorf("vmm: VM %s: disks[%d] is %s, the handles' image %s", vm.Name, i, d.Path, h.Disks[i].Path)
		}
	}
	return nil
}

// bootConfig is what the machine boots: the handles' kernel and initrd,
// with the spec's command line.
func bootConfig(vm *configs.VM, h *Handles) machine.BootConfig {
	return machine.BootConfig{Kernel: h.Kernel, Initrd: h.Initrd, Cmdline: vm.Cmdline}
}
