package vmgenid

import "fmt"

// State is the device's state as plain data, for snapshots: where the
// guest reads the ID (its DSDT, in the saved guest memory, says so) and
// the ID it had.
type State struct {
	Addr uint64
	ID   ID
}

// Save returns the device's state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{Addr: d.addr, ID: d.id}
}

// Restore moves the device to the address st gives and writes the
// device's own ID there, not st's: a machine restored from a snapshot is
// a new generation, so it gets the ID its device was made with (new and
// random unless the caller chose it), which the guest sees once it is
// notified (Notify). st.Addr must be 8-byte aligned and its 16 bytes
// guest RAM; otherwise Restore fails and changes nothing.
func (d *Device) Restore(st State) error {
	if err := checkAddr(st.Addr); err != nil {
		return fmt.Errorf("vmgenid: restore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.addr
	d.addr = st.Addr
	if err := d.write(); err != nil {
		d.addr = old
		return fmt.Errorf("vmgenid: restore: %w", err)
	}
	return nil
}
