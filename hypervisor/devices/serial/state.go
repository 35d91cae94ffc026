package serial

import "fmt"

// State is the guest-visible state of a UART, as plain data for
// snapshots. Bytes transmitted but not yet written to the host are not
// part of it: they belong to the writer of the process that saved.
type State struct {
	IER, LCR, MCR, SCR uint8
	DLL, DLM           uint8
	FCR                uint8 // enable, DMA mode and trigger bits
	LSRErrors          uint8 // pending OE/PE/FE/BI bits
	MSRDeltas          uint8 // the MSR's low nibble
	THRPending         bool  // THR-empty interrupt armed and not yet acknowledged
	RX                 []byte
}

// Save returns the UART's state.
func (s *Serial) Save() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{
		IER: s.ier, LCR: s.lcr, MCR: s.mcr, SCR: s.scr,
		DLL: s.dll, DLM: s.dlm,
		FCR:        s.fcr,
		LSRErrors:  s.lsrErr,
		MSRDeltas:  s.msrDelta,
		THRPending: s.thrPending,
		RX:         s.rx.bytes(),
	}
}

// Restore replaces the UART's state with st and drives the interrupt line
// to match it. A state no 16550A could be in is refused with an error
// naming the field, and the UART is left unchanged.
func (s *Serial) Restore(st State) error {
	switch {
	case st.IER&^ierMask != 0:
		return fmt.Errorf("serial %#x: restore: IER %#x sets bits a 16550A does not have", s.base, st.IER)
	case st.MCR&^mcrMask != 0:
		return fmt.Errorf("serial %#x: restore: MCR %#x sets bits a 16550A does not have", s.base, st.MCR)
	case st.FCR&^(fcrEnable|fcrDMA|fcrTrigger) != 0 || (st.FCR&fcrEnable == 0 && st.FCR != 0):
		return fmt.Errorf("serial %#x: restore: FCR %#x is not a programmable FIFO control value", s.base, st.FCR)
	case st.LSRErrors&^lsrErrors != 0:
		return fmt.Errorf("serial %#x: restore: LSR errors %#x are not error bits", s.base, st.LSRErrors)
	case st.MSRDeltas&^msrDeltas != 0:
		return fmt.Errorf("serial %#x: restore: MSR deltas %#x are not delta bits", s.base, st.MSRDeltas)
	}
	capacity := 1
	if st.FCR&fcrEnable != 0 {
		capacity = FIFOSize
	}
	if len(st.RX) > capacity {
		return fmt.Errorf("serial %#x: restore: %d received bytes do not fit the %d-byte receiver", s.base, len(st.RX), capacity)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ier, s.lcr, s.mcr, s.scr = st.IER, st.LCR, st.MCR, st.SCR
	s.dll, s.dlm = st.DLL, st.DLM
	s.fcr = st.FCR
	s.lsrErr = st.LSRErrors
	s.msrDelta = st.MSRDeltas
	s.thrPending = st.THRPending
	s.rx.clear()
	for _, b := range st.RX {
		s.rx.push(b, capacity)
	}
	s.signalRoom()
	// Force the line to the restored level: a new machine's line starts low.
	s.irqLevel = !s.wantIRQ()
	s.updateIRQ()
	return nil
}
