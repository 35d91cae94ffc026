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
	macs, err := NICMACs(vm)
	if err != nil {
		return machine.Config{}, err
	}
	for i, n := range vm.NICs {
		cfg.NICs = append(cfg.NICs, machine.NIC{Tap: n.Tap, Bridge: n.Bridge, MAC: macs[i]})
	}
	return cfg, nil
}

// NICMACs returns the MAC address of each of vm's NICs: the spec's, or
// one derived from the VM's name and the NIC's index. The cloud-init seed
// matches the guest's NICs by them.
func NICMACs(vm *configs.VM) ([]netdev.MAC, error) {
	macs := make([]netdev.MAC, len(vm.NICs))
	for i, n := range vm.NICs {
		macs[i] = netdev.GenerateMAC(fmt.Sprintf("%s/%d", vm.Name, i))
		if n.MAC != "" {
			var err error
			if macs[i], err = netdev.ParseMAC(n.MAC); err != nil {
				return nil, fmt.Errorf("nics[%d].mac: %w", i, err)
			}
		}
	}
	return macs, nil
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
