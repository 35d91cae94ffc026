package guest

import (
	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// attachNetworks attaches a foreground VM's NICs on managed networks,
// with ephemeral leases (released when the run ends, unless the VM is a
// managed one's namesake that has its own).
func attachNetworks(vm *configs.VM, opts RunOptions) ([]vmm.NIC, *network.Attachment, error) {
	home := opts.Home
	if home == "" {
		for _, n := range vm.NICs {
			if n.Network != "" {
				h, err := store.DefaultHome()
				if err != nil {
					return nil, nil, err
				}
				home = h
				break
			}
		}
	}
	return vmm.AttachNetworks(vm, vmm.NetworkOptions{Home: home, Ephemeral: true})
}
