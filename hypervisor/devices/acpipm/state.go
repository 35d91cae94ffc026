package acpipm

import "fmt"

// State is the block's register state as plain data, for snapshots.
type State struct {
	Status  uint16 // PM1_STS
	Enable  uint16 // PM1_EN
	Control uint16 // PM1_CNT as stored: BM_RLD and SLP_TYP
}

// Save returns the block's state.
func (p *PM) Save() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return State{Status: p.sts, Enable: p.en, Control: p.cnt}
}

// Restore replaces the block's state with st and drives the SCI to
// match. Bits the block does not implement are refused with an error
// naming the register, leaving the block as it was.
func (p *PM) Restore(st State) error {
	switch {
	case st.Status&^stsMask != 0:
		return fmt.Errorf("acpipm: restore: PM1_STS %#04x sets bits the block does not implement", st.Status)
	case st.Enable&^enMask != 0:
		return fmt.Errorf("acpipm: restore: PM1_EN %#04x sets bits the block does not implement", st.Enable)
	case st.Control&^cntMask != 0:
		return fmt.Errorf("acpipm: restore: PM1_CNT %#04x sets bits that are not stored", st.Control)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sts, p.en, p.cnt = st.Status, st.Enable, st.Control
	p.sciLevel = p.sts&p.en == 0 // force the line to the restored level
	p.updateSCI()
	return nil
}
