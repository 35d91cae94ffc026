package ged

import "fmt"

// State is the GED's register state as plain data, for snapshots.
type State struct {
	Pending uint8 // events the guest has not read
}

// Save returns the GED's state.
func (g *GED) Save() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return State{Pending: g.pending}
}

// Restore replaces the GED's state with st and drives the line to match.
// Bits without an event are refused, leaving the GED as it was.
func (g *GED) Restore(st State) error {
	if st.Pending&^events != 0 {
		return fmt.Errorf("ged: restore: pending events %#02x include bits without an event", st.Pending)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending = st.Pending
	g.level = g.pending == 0 // force the line to the restored level
	return g.update()
}
