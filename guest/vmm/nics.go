package vmm

import (
	"fmt"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/netdev"
)

// ResolveNICs resolves the spec's NICs for this host, once per VMM run:
// the tap or bridge (a managed network's NIC takes the tap its
// network's netd made from taps, by index), and the MAC address
// (nicMACs).
// Precondition: vm has been through FillDefaults and Validate.
func ResolveNICs(vm *configs.VM, host string, taps map[int]*netdev.Tap) ([]NIC, error) {
	macs, err := nicMACs(vm, host)
	if err != nil {
		return nil, err
	}
	var nics []NIC
	for i, n := range vm.NICs {
		nic := NIC{Tap: n.Tap, Bridge: n.Bridge, MAC: macs[i]}
		if n.Network != "" {
			if nic.Open = taps[i]; nic.Open == nil {
				return nil, fmt.Errorf("nics[%d]: network %s is not attached", i, n.Network)
			}
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// nicMACs is each NIC's MAC address: the spec's, or else one derived from
// host (netdev.HostID), the VM's name and the NIC's index (netdev.NICMAC:
// stable across restarts on this host, different on another host and
// for a clone with a new name).
func nicMACs(vm *configs.VM, host string) ([]netdev.MAC, error) {
	var macs []netdev.MAC
	for i, n := range vm.NICs {
		mac := netdev.NICMAC(host, vm.Name, i)
		if n.MAC != "" {
			var err error
			if mac, err = netdev.ParseMAC(n.MAC); err != nil {
				return nil, fmt.Errorf("nics[%d].mac: %w", i, err)
			}
		}
		macs = append(macs, mac)
	}
	return macs, nil
}

// hostID is this host's identifier if a NIC of vm needs a derived MAC,
// else "".
func hostID(vm *configs.VM) (string, error) {
	for _, n := range vm.NICs {
		if n.MAC == "" {
			return netdev.HostID()
		}
	}
	return "", nil
}

// NICMACs is each of vm's NICs' MAC address on this host (nicMACs): the
// machine's NICs have them, and the cloud-init seed matches the guest's
// NICs by them.
func NICMACs(vm *configs.VM) ([]netdev.MAC, error) {
	host, err := hostID(vm)
	if err != nil {
		return nil, err
	}
	return nicMACs(vm, host)
}

// NetworkOptions say how a VM attaches to its managed networks.
type NetworkOptions struct {
	// Home is the state directory the networks live in.
	Home string
	// NetdCommand runs a network's netd (network.AttachOptions); empty
	// means this executable's `netd` command.
	NetdCommand []string
	// Ephemeral: a foreground run, whose new leases go when it ends.
	Ephemeral bool
}

// AttachNetworks attaches the VM's NICs on managed networks (each network
// up, the NICs' leases in its DHCP server, the spec's ports forwarded)
// and returns the resolved NICs, and the attachment to close when the
// VM ends (nil for a VM without such NICs).
// Precondition: vm has been through FillDefaults and Validate.
func AttachNetworks(vm *configs.VM, o NetworkOptions) ([]NIC, *network.Attachment, error) {
	host, err := hostID(vm)
	if err != nil {
		return nil, nil, err
	}
	macs, err := nicMACs(vm, host)
	if err != nil {
		return nil, nil, err
	}
	var req []network.AttachNIC
	for i, n := range vm.NICs {
		if n.Network != "" {
			// The VM's tenant's network of that name.
			req = append(req, network.AttachNIC{Index: i, Network: network.Ref(vm.Tenant, n.Network), MAC: macs[i]})
		}
	}
	if len(req) == 0 {
		nics, err := ResolveNICs(vm, host, nil)
		return nics, nil, err
	}
	var ports []network.Port
	for _, p := range vm.Ports {
		ports = append(ports, network.Port{Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort, GuestPort: p.GuestPort})
	}
	a, err := network.Attach(network.AttachOptions{VM: vm.Name, NICs: req, Ports: ports, Ephemeral: o.Ephemeral, NetdCommand: o.NetdCommand, Home: o.Home})
	if err != nil {
		return nil, nil, err
	}
	taps := a.TakeTaps()
	nics, err := ResolveNICs(vm, host, taps)
	if err != nil {
		for _, t := range taps {
			t.Close()
		}
		a.Close()
		return nil, nil, err
	}
	return nics, a, nil
}
