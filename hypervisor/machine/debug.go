package machine

import (
	"fmt"
	"io"
)

// WriteDebug writes the state of the machine's virtio devices (status,
// interrupts, ring positions, notifications that missed their ioeventfd)
// for diagnosing a stalled guest. Safe while the machine runs.
func (m *Machine) WriteDebug(w io.Writer) {
	fmt.Fprintf(w, "machine: %v\n", runState(m.state.Load()))
	if m.virtio == nil {
		return
	}
	for _, f := range m.virtio.funcs {
		f.pci.WriteDebug(w)
		fmt.Fprintf(w, "  notifications through MMIO exits: %d\n", f.notifyExits.Load())
	}
}
