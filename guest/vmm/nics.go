package vmm

import (
	"fmt"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
)

// ResolveNICs turns the spec's NICs into the machine's, once per VMM run:
// the tap or bridge, and the MAC address — the spec's, or else one
// derived from host (netdev.HostID), the VM's name and the NIC's index
// (netdev.NICMAC: stable across restarts on this host, different on
// another host and for a clone with a new name).
// Precondition: vm has been through FillDefaults and Validate.
func ResolveNICs(vm *configs.VM, host string) ([]machine.NIC, error) {
	var nics []machine.NIC
	for i, n := range vm.NICs {
		mac := netdev.NICMAC(host, vm.Name, i)
		if n.MAC != "" {
			var err error
			if mac, err = netdev.ParseMAC(n.MAC); err != nil {
				return nil, fmt.Errorf("nics[%d].mac: %w", i, err)
			}
		}
		nics = append(nics, machine.NIC{Tap: n.Tap, Bridge: n.Bridge, MAC: mac})
	}
	return nics, nil
}

// HostNICs is ResolveNICs with this host's identifier, read only when a
// NIC needs a derived MAC.
func HostNICs(vm *configs.VM) ([]machine.NIC, error) {
	host := ""
	for _, n := range vm.NICs {
		if n.MAC == "" {
			var err error
			if host, err = netdev.HostID(); err != nil {
				return nil, err
			}
			break
		}
	}
	return ResolveNICs(vm, host)
}
