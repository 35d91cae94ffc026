package i8042

import "fmt"

// State is the controller's state as plain data, for snapshots.
type State struct {
	RAM        [ramSize]byte // byte 0 is the command byte
	OutputPort uint8
	Queue      []QueuedByte // output buffer, oldest first
	Last       uint8        // last byte read from the data port
	Pending    uint8        // command waiting for its data byte, or 0
	LastCmd    bool         // the last write went to the command port
}

// QueuedByte is one byte in the controller's output buffer.
type QueuedByte struct {
	Data    uint8
	Aux     bool // from the aux port
	Timeout bool // a device time-out
}

// Save returns the controller's state.
func (c *Controller) Save() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := State{RAM: c.ram, OutputPort: c.out, Last: c.last, Pending: c.pending, LastCmd: c.lastCmd}
	for _, b := range c.queue {
		st.Queue = append(st.Queue, QueuedByte{Data: b.data, Aux: b.aux, Timeout: b.timeout})
	}
	return st
}

// Restore replaces the controller's state with st and drives the
// interrupt lines to match. A state the controller cannot be in is
// refused with an error naming the field, leaving the controller as it was.
func (c *Controller) Restore(st State) error {
	if len(st.Queue) > queueDepth {
		return fmt.Errorf("i8042: restore: output buffer holds %d bytes, more than %d", len(st.Queue), queueDepth)
	}
	if st.Pending != 0 && !takesData(st.Pending) {
		return fmt.Errorf("i8042: restore: pending command %#x takes no data byte", st.Pending)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ram, c.out, c.last, c.pending, c.lastCmd = st.RAM, st.OutputPort, st.Last, st.Pending, st.LastCmd
	c.queue = c.queue[:0]
	for _, b := range st.Queue {
		c.queue = append(c.queue, outByte{data: b.Data, aux: b.Aux, timeout: b.Timeout})
	}
	// Force both lines to the restored levels.
	kbd, aux := c.wantIRQ()
	c.kbdLevel, c.auxLevel = !kbd, !aux
	c.updateIRQ()
	return nil
}

// takesData reports whether cmd is a command that waits for a data byte.
func takesData(cmd byte) bool {
	switch {
	case cmd >= cmdWriteRAM && cmd < cmdWriteRAM+ramSize:
		return true
	case cmd == cmdWriteOutput, cmd == cmdWriteKbdBuf, cmd == cmdWriteAuxBuf, cmd == cmdWriteAux:
		return true
	}
	return false
}
