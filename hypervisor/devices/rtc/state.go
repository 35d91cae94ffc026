package rtc

import (
	"fmt"
	"time"
)

// State is the RTC's state as plain data, for snapshots. The clock is
// saved as a pair of readings taken at the same instant, so a restored
// RTC keeps running from where the saved one was plus the host time that
// passed in between, as a battery-backed clock would.
type State struct {
	Index       uint8 // CMOS index register
	NMIDisabled bool
	// CMOS is the RAM. While the clock is frozen (register B SET or the
	// divider stopped) the clock registers hold the latched time; byte
	// 0x0C holds the pending PF/AF/UF flags.
	CMOS  [CMOSSize]byte
	Guest time.Time // the guest clock ...
	Host  time.Time // ... when the host clock read this
}

// Save returns the RTC's state.
func (r *RTC) Save() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance()
	st := State{Index: r.index, NMIDisabled: r.nmi, CMOS: r.cmos}
	st.CMOS[regA] &^= aUIP
	st.CMOS[regC] = r.flags
	st.CMOS[regD] = dVRT
	st.Host = r.now()
	st.Guest = r.guestBase.Add(st.Host.Sub(r.hostBase))
	return st
}

// Restore replaces the RTC's state with st, drives IRQ 8 to match and
// re-arms the interrupt timer. A state the chip cannot be in is refused
// with an error naming the field, leaving the RTC as it was.
func (r *RTC) Restore(st State) error {
	switch {
	case st.Index >= CMOSSize:
		return fmt.Errorf("rtc: restore: index %#x is beyond the %d-byte CMOS", st.Index, CMOSSize)
	case st.CMOS[regC]&^cFlags != 0:
		return fmt.Errorf("rtc: restore: register C %#x has bits other than the PF/AF/UF flags", st.CMOS[regC])
	case st.CMOS[regD] != dVRT:
		return fmt.Errorf("rtc: restore: register D %#x is not %#x (valid RAM and time)", st.CMOS[regD], dVRT)
	case st.Guest.IsZero() || st.Host.IsZero():
		return fmt.Errorf("rtc: restore: the clock readings are missing")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index, r.nmi = st.Index, st.NMIDisabled
	r.cmos = st.CMOS
	r.flags = st.CMOS[regC]
	r.cmos[regC] = 0
	r.guestBase, r.hostBase = st.Guest.UTC(), st.Host
	r.lastEval = r.guestNow()
	r.irqLevel = !r.irqPending() // force the line to the restored level
	r.update()
	return nil
}
