package net

import (
	"fmt"

	"github.com/paddock-vm/paddock/netdev"
)

// State is the device's state as plain data, for snapshots.
type State struct {
	MAC    netdev.MAC
	LinkUp bool
}

// Save returns the device's state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{MAC: d.cfg.MAC, LinkUp: d.linkUp}
}

// Restore loads st. The MAC must be the one the device was built with:
// the guest knows its address, and changing it under the guest would
// break its network.
func (d *Device) Restore(st State) error {
	if st.MAC != d.cfg.MAC {
		return fmt.Errorf("virtio-net: %s: restore: MAC was %s, the device has %s", d.cfg.Name, st.MAC, d.cfg.MAC)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.linkUp = st.LinkUp
	return nil
}
