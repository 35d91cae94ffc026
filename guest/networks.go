package guest

import (
	"errors"
	"fmt"
	"slices"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/netdev"
)

// Address is a VM NIC's address on a managed network: its lease, pinned
// from the VM's creation to its removal.
type Address struct {
	NIC int `json:"nic"`
	// Network is the network's name, in the VM's tenant.
	Network string `json:"network"`
	MAC     string `json:"mac"`
	IP      string `json:"ip"`
}

// networks opens the managed networks of the manager's state directory.
func (m *Manager) networks() (*network.Store, error) {
	return network.Open(m.store.Home())
}

// reserveAddresses gives each of vm's NICs on a managed network its lease
// (the network default is created on first use), so the VM has its
// addresses from its creation on; the VMM keeps them.
func (m *Manager) reserveAddresses(vm *configs.VM) error {
	byNet := map[string][]network.NICRequest{}
	var order []string
	var macs []netdev.MAC
	for i, n := range vm.NICs {
		if n.Network == "" {
			continue
		}
		if macs == nil {
			all, err := vmm.NICMACs(vm)
			if err != nil {
				return err
			}
			macs = all
		}
		ref := network.Ref(vm.Tenant, n.Network) // the VM's tenant's network
		if _, ok := byNet[ref]; !ok {
			order = append(order, ref)
		}
		byNet[ref] = append(byNet[ref], network.NICRequest{Index: i, MAC: macs[i]})
	}
	if len(order) == 0 {
		return nil
	}
	st, err := m.networks()
	if err != nil {
		return err
	}
	for _, name := range order {
		if _, err := st.Use(name); err != nil {
			return fmt.Errorf("nics[%d].network: %w", byNet[name][0].Index, err)
		}
		if _, err := st.Reserve(name, vm.Name, byNet[name], false); err != nil {
			return errors.Join(err, st.ReleaseVM(vm.Name))
		}
	}
	return nil
}

// releaseAddresses removes a removed VM's leases.
func (m *Manager) releaseAddresses(name string) error {
	st, err := m.networks()
	if err != nil {
		return err
	}
	if err := st.ReleaseVM(name); err != nil {
		return fmt.Errorf("VM %s was removed, but not its network addresses: %w", name, err)
	}
	return nil
}

// addresses are the addresses of vm's NICs on managed networks, by NIC.
func (m *Manager) addresses(vm *configs.VM) []Address {
	if !slices.ContainsFunc(vm.NICs, func(n configs.NIC) bool { return n.Network != "" }) {
		return nil
	}
	name := vm.Name
	st, err := m.networks()
	if err != nil {
		return nil
	}
	leases, err := st.VMLeases(name)
	if err != nil {
		return nil
	}
	var out []Address
	for ref, ls := range leases {
		_, net, _ := network.SplitRef(ref)
		for _, l := range ls {
			out = append(out, Address{NIC: l.NIC, Network: net, MAC: l.MAC, IP: l.IP.String()})
		}
	}
	slices.SortFunc(out, func(a, b Address) int { return a.NIC - b.NIC })
	return out
}
