package pci

import (
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/snapshot"
)

// ConfigState is a function's configuration space as plain data, for
// snapshots.
type ConfigState struct {
	Data snapshot.Bytes // ConfigSize bytes
}

// identity lists the header bytes that say what a function is; a saved
// space restores only into a function that has the same ones.
var identity = []struct {
	off, n int
	name   string
}{
	{offVendor, 4, "vendor/device ID"},
	{offRevision, 4, "revision/class code"},
	{offHeaderType, 1, "header type"},
	{offSubVendor, 4, "subsystem ID"},
	{offCapPtr, 1, "capabilities pointer"},
	{offIntPin, 1, "interrupt pin"},
}

// Save returns the configuration space's contents.
func (c *ConfigSpace) Save() ConfigState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConfigState{Data: append([]byte(nil), c.data[:]...)}
}

// Restore replaces the configuration space's contents with st and reports
// the BAR mappings that change to the owner, as a guest write would. The
// state must come from a function built the same way (same IDs, class,
// BARs and capability list); otherwise Restore returns an error naming
// the field and changes nothing.
func (c *ConfigSpace) Restore(st ConfigState) error {
	if len(st.Data) != ConfigSize {
		return fmt.Errorf("pci: restore: configuration space is %d bytes, want %d", len(st.Data), ConfigSize)
	}
	c.notify.Lock()
	defer c.notify.Unlock()
	c.mu.Lock()
	for _, f := range identity {
		for i := f.off; i < f.off+f.n; i++ {
			if st.Data[i] != c.data[i] {
				c.mu.Unlock()
				return fmt.Errorf("pci: restore: %s differs (byte %#x is %#02x, this function has %#02x)", f.name, i, st.Data[i], c.data[i])
			}
		}
	}
	for i := offBAR0; i < barsEnd; i++ {
		if (st.Data[i]^c.data[i])&^c.wmask[i] != 0 {
			c.mu.Unlock()
			return fmt.Errorf("pci: restore: BAR %d (byte %#x = %#02x) does not match this function's BAR type and size", (i-offBAR0)/4, i, st.Data[i])
		}
	}
	before := c.mappings()
	copy(c.data[:], st.Data)
	changes := c.changesSince(before)
	c.mu.Unlock()
	c.report(changes)
	return nil
}

// State is the host bridge's own state as plain data, for snapshots. The
// attached functions save their own.
type State struct {
	ConfigAddress uint32 // CONFIG_ADDRESS
	ResetControl  uint8  // stored bits of the reset control register
	Bridge        ConfigState
}

// Save returns the host bridge's state.
func (h *HostBridge) Save() State {
	h.mu.Lock()
	st := State{ConfigAddress: h.addr, ResetControl: h.rcr}
	h.mu.Unlock()
	st.Bridge = h.self.Save()
	return st
}

// Restore replaces the host bridge's state with st. Values the registers
// cannot hold are refused with an error, changing nothing.
func (h *HostBridge) Restore(st State) error {
	if st.ConfigAddress&^addrMask != 0 {
		return fmt.Errorf("pci: restore: CONFIG_ADDRESS %#08x sets reserved bits", st.ConfigAddress)
	}
	if st.ResetControl&^(rcrSysReset|rcrFull) != 0 {
		return fmt.Errorf("pci: restore: reset control %#02x sets bits that are not stored", st.ResetControl)
	}
	if err := h.self.Restore(st.Bridge); err != nil {
		return fmt.Errorf("pci: host bridge: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addr, h.rcr = st.ConfigAddress, st.ResetControl
	return nil
}
