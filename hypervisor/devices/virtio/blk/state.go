package blk

import "fmt"

// State is the device's state as plain data, for snapshots. The disk's
// contents belong to the image (a snapshot records it separately); what
// the device saves is what the guest was told, so a restore onto a
// different disk is refused.
type State struct {
	Capacity uint64 // sectors
	ReadOnly bool
	Serial   string
	Queues   int
}

// Save returns the device's state. Precondition: no request in flight
// (the machine is paused and the device quiesced).
func (d *Device) Save() State {
	return State{Capacity: d.capacity, ReadOnly: d.ro, Serial: d.cfg.Serial, Queues: d.cfg.Queues}
}

// Restore checks that st describes this device as the guest knew it.
func (d *Device) Restore(st State) error {
	switch {
	case st.Capacity != d.capacity:
		return fmt.Errorf("virtio-blk: %s: restore: the disk had %d sectors, now %d", d.cfg.Name, st.Capacity, d.capacity)
	case st.ReadOnly != d.ro:
		return fmt.Errorf("virtio-blk: %s: restore: the disk was read-only=%v, now %v", d.cfg.Name, st.ReadOnly, d.ro)
	case st.Serial != d.cfg.Serial:
		return fmt.Errorf("virtio-blk: %s: restore: serial was %q, now %q", d.cfg.Name, st.Serial, d.cfg.Serial)
	case st.Queues != d.cfg.Queues:
		return fmt.Errorf("virtio-blk: %s: restore: %d queues saved, the device has %d", d.cfg.Name, st.Queues, d.cfg.Queues)
	}
	return nil
}
