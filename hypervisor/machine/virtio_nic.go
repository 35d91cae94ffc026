package machine

import (
	"errors"
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/netdev"
)

// openNIC opens or creates NIC i's tap and builds its device.
func (v *virtioDevices) openNIC(i int, n NIC) (virtio.Device, error) {
	name := fmt.Sprintf("nics[%d]", i)
	if n.MAC.Multicast() || n.MAC == (netdev.MAC{}) {
		return nil, fmt.Errorf("machine: %s: MAC %s is not a unicast address", name, n.MAC)
	}
	var tap *netdev.Tap
	var err error
	switch {
	case n.Tap != "" && n.Bridge != "":
		return nil, fmt.Errorf("machine: %s: set tap or bridge, not both", name)
	case n.Tap != "":
		tap, err = netdev.OpenTap(n.Tap)
	case n.Bridge != "":
		tap, err = v.bridgedTap(n)
	default:
		return nil, fmt.Errorf("machine: %s: needs a tap or a bridge", name)
	}
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.taps = append(v.taps, tap)
	dev, err := vnet.New(vnet.Config{Backend: tap, MAC: n.MAC, Name: name, Logf: v.logf})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	return dev, nil
}

// bridgedTap creates a tap named after the NIC's MAC (so it is easy to
// match with its VM) and makes it a port of the bridge.
func (v *virtioDevices) bridgedTap(n NIC) (*netdev.Tap, error) {
	if err := netdev.IsBridge(n.Bridge); err != nil {
		return nil, err
	}
	tap, err := netdev.CreateTap(fmt.Sprintf("pd%02x%02x%02x%02x", n.MAC[2], n.MAC[3], n.MAC[4], n.MAC[5]))
	if errors.Is(err, netdev.ErrExists) {
		tap, err = netdev.CreateTap("pdtap%d")
	}
	if err != nil {
		return nil, err
	}
	if err := netdev.AddToBridge(tap.Name(), n.Bridge); err != nil {
		tap.Close()
		return nil, err
	}
	return tap, nil
}
