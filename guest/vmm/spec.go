package vmm

import (
	"fmt"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// machineConfig translates a VM spec into the machine's hardware: vCPUs,
// memory and the virtio devices; nics are the spec's NICs as ResolveNICs
// resolved them. Relative paths are already resolved by configs; an
// untrusted disk's backing chain is confined to the image's directory
// (disk.ConfinedToImage). The machine takes plain device configs and
// never sees the spec.
// Precondition: vm has been through FillDefaults and Validate.
func machineConfig(vm *configs.VM, nics []machine.NIC) (machine.Config, error) {
	if len(nics) != len(vm.NICs) {
		return machine.Config{}, fmt.Errorf("vmm: VM %s has %d NICs, %d resolved", vm.Name, len(vm.NICs), len(nics))
	}
	cfg := machine.Config{CPUs: vm.CPUs, Memory: uint64(vm.Memory), RNG: vm.RNG, NICs: nics}
	for _, d := range vm.Disks {
		md := machine.Disk{Path: d.Path, Format: d.Format, ReadOnly: d.ReadOnly, Serial: d.Serial, Cache: blk.CacheMode(d.Cache)}
		if d.Untrusted {
			md.Backing = disk.ConfinedToImage(d.Path)
		}
		cfg.Disks = append(cfg.Disks, md)
	}
	return cfg, nil
}

// seedDisk is the disk of the cloud-init seed volume at path: raw (never
// detected), read-only, with the serial "cidata", after the VM's disks.
func seedDisk(path string) machine.Disk {
	return machine.Disk{Path: path, Format: configs.FormatRaw, ReadOnly: true, Serial: "cidata"}
}

// bootConfig is what the machine boots: the spec's kernel, initrd and
// command line.
func bootConfig(vm *configs.VM) machine.BootConfig {
	return machine.BootConfig{Kernel: vm.Kernel, Initrd: vm.Initrd, Cmdline: vm.Cmdline}
}
