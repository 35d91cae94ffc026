package vmm

import (
	"fmt"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
)

// machineConfig translates a VM spec into the machine's hardware: vCPUs,
// memory and the virtio devices. Relative paths are already resolved by
// configs; an untrusted disk's backing chain is confined to the image's
// directory (disk.ConfinedToImage); a NIC without a MAC gets one derived from the VM's name and
// the NIC's index (stable across restarts, new for a clone with a new
// name). The machine takes plain device configs and never sees the spec.
// Precondition: vm has been through FillDefaults and Validate.
func machineConfig(vm *configs.VM) (machine.Config, error) {
	cfg := machine.Config{CPUs: vm.CPUs, Memory: uint64(vm.Memory), RNG: vm.RNG}
	for _, d := range vm.Disks {
		md := machine.Disk{Path: d.Path, Format: d.Format, ReadOnly: d.ReadOnly, Serial: d.Serial, Cache: blk.CacheMode(d.Cache)}
		if d.Untrusted {
			md.Backing = disk.ConfinedToImage(d.Path)
		}
		cfg.Disks = append(cfg.Disks, md)
	}
	for i, n := range vm.NICs {
		mac := netdev.GenerateMAC(fmt.Sprintf("%s/%d", vm.Name, i))
		if n.MAC != "" {
			var err error
			if mac, err = netdev.ParseMAC(n.MAC); err != nil {
				return machine.Config{}, fmt.Errorf("nics[%d].mac: %w", i, err)
			}
		}
		cfg.NICs = append(cfg.NICs, machine.NIC{Tap: n.Tap, Bridge: n.Bridge, MAC: mac})
	}
	return cfg, nil
}

// bootConfig is what the machine boots: the spec's kernel, initrd and
// command line.
func bootConfig(vm *configs.VM) machine.BootConfig {
	return machine.BootConfig{Kernel: vm.Kernel, Initrd: vm.Initrd, Cmdline: vm.Cmdline}
}
