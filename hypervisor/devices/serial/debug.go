package serial

import (
	"fmt"
	"io"
)

// WriteDebug writes the UART's registers and queues, for diagnosing a
// console that went quiet: whether the guest has its transmit interrupt
// enabled and pending, whether the output buffer is full (a stuck
// writer), and the interrupt line's level.
func (s *Serial) WriteDebug(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(w, "serial %#x: ier %#02x iir %#02x lsr %#02x mcr %#02x fcr %#02x thr-pending %v irq %v\n",
		s.base, s.ier, s.pending(), s.lsr(), s.mcr, s.fcr, s.thrPending, s.irqLevel)
	fmt.Fprintf(w, "  output buffered %d of %d, dropped %d, closed %v, writer error %v; input buffered %d\n",
		s.out.len(), len(s.out.buf), s.dropped, s.closed, s.outErr, s.rx.n)
}
