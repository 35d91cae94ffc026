package machine

import (
	"fmt"
	"io"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// WriteDebug writes, for diagnosing a stalled guest, each vCPU's exits
// to userspace so far (write it twice: a count that does not move is a
// vCPU inside KVM, halted or in guest code), the console UART's
// registers, and the state of the machine's virtio devices (status,
// interrupts, ring positions, notifications that missed their
// ioeventfd). Safe while the machine runs.
func (m *Machine) WriteDebug(w io.Writer) {
	fmt.Fprintf(w, "machine: %v\n", runState(m.state.Load()))
	for _, v := range m.vcpus {
		fmt.Fprintf(w, "vCPU %d: %d exits, the last %v; the last I/O at %#x\n", v.index, v.exits.Load(), kvm.ExitReason(v.lastExit.Load()), v.lastAddr.Load())
	}
	if m.plat != nil && m.plat.serial != nil {
		m.plat.serial.WriteDebug(w)
	}
	if m.virtio == nil {
		return
	}
	for _, f := range m.virtio.funcs {
		f.pci.WriteDebug(w)
		fmt.Fprintf(w, "  notifications through MMIO exits: %d\n", f.notifyExits.Load())
	}
}
