package machine

import (
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/netdev"
)

// nicDevice builds NIC i's device on its tap.
func (v *virtioDevices) nicDevice(i int, n NIC) (virtio.Device, error) {
	name := fmt.Sprintf("nics[%d]", i)
	if n.MAC.Multicast() || n.MAC == (netdev.MAC{}) {
		return nil, fmt.Errorf("machine: %s: MAC %s is not a unicast address", name, n.MAC)
	}
	if n.Tap == nil {
		return nil, fmt.Errorf("machine: %s: no open tap", name)
	}
	dev, err := vnet.New(vnet.Config{
		Backend: n.Tap, MAC: n.MAC, Name: name, Logf: v.logf,
		TxLimiter: ratelimit.New(n.Limits), RxLimiter: ratelimit.New(n.Limits),
	})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	return dev, nil
}
