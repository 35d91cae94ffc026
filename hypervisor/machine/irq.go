package machine

import (
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// gsiLine is a devices.InterruptLine wired to a GSI of the in-kernel
// irqchip through KVM_IRQ_LINE. It remembers the level it last drove so a
// device that re-asserts an asserted line costs no ioctl.
type gsiLine struct {
	vm  *kvm.VM
	gsi uint32

	mu   sync.Mutex
	high bool
}

func newGSILine(vm *kvm.VM, gsi uint32) *gsiLine {
	return &gsiLine{vm: vm, gsi: gsi}
}

// SetLevel drives the line. On an edge-triggered IOAPIC pin the rising
// transition is what delivers the interrupt.
func (l *gsiLine) SetLevel(high bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.high == high {
		return nil
	}
	if err := l.vm.IRQLine(l.gsi, high); err != nil {
		return fmt.Errorf("GSI %d: %w", l.gsi, err)
	}
	l.high = high
	return nil
}

// Pulse raises and lowers the line: one edge.
func (l *gsiLine) Pulse() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.vm.IRQLine(l.gsi, true); err != nil {
		return fmt.Errorf("GSI %d: %w", l.gsi, err)
	}
	if err := l.vm.IRQLine(l.gsi, false); err != nil {
		return fmt.Errorf("GSI %d: %w", l.gsi, err)
	}
	l.high = false
	return nil
}
