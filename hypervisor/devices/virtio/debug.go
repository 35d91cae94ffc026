package virtio

import (
	"fmt"
	"io"
)

// WriteDebug writes the queue's ring positions as the device and the
// driver see them, for diagnosing a stalled device: a driver waiting for
// an interrupt, a device waiting for a notification, or both.
func (q *Queue) WriteDebug(w io.Writer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fmt.Fprintf(w, "queue %d:", q.index)
	counts := fmt.Sprintf("; %d wakeups for notifications, %d interrupts since creation", q.wakeups.Load(), q.interrupts.Load())
	if q.desc == nil {
		fmt.Fprintf(w, " inactive (stopped %v)%s\n", q.stopped.Load(), counts)
		return
	}
	n := int(q.size)
	fmt.Fprintf(w, " size %d, device took %d and returned %d (last interrupt decision at %d); driver made %d available (flags %#x, used_event %d); device's used flags %#x, avail_event %d; event_idx %v, stopped %v%s\n",
		q.size, q.lastAvail, q.usedIdx, q.lastSignal,
		load16(q.avail[ringIdx:]), load16(q.avail[ringFlags:]), load16(q.avail[ringStart+2*n:]),
		load16(q.used[ringFlags:]), load16(q.used[ringStart+8*n:]), q.eventIdx, q.stopped.Load(), counts)
}

// WriteDebug writes the function's state: device status, interrupt
// configuration (MSI-X vectors, masks and pending bits, or the INTx ISR)
// and each queue's ring positions.
func (p *PCI) WriteDebug(w io.Writer) {
	p.mu.Lock()
	status, active := p.status, p.active
	p.mu.Unlock()
	fmt.Fprintf(w, "%s: status %#x, active %v, needs reset %v, %d log messages suppressed\n", p.name, status, active, p.needsReset.Load(), p.log.Suppressed())
	s := &p.irq
	s.mu.Lock()
	fmt.Fprintf(w, "  MSI-X enabled %v, function mask %v, config vector %d, queue vectors %v, ISR %#x, INTx high %v\n",
		s.enabled, s.funcMask, int16(s.cfgVector), s.qVectors, s.isr, s.intxHigh)
	for v, e := range s.table {
		pending := s.pending[v/64]&(1<<(v%64)) != 0
		if e.masked || pending || e.msg != (MSIMessage{}) {
			fmt.Fprintf(w, "  vector %d: address %#x data %#x masked %v pending %v routed %v\n", v, e.msg.Address, e.msg.Data, e.masked, pending, e.routed)
		}
	}
	s.mu.Unlock()
	for _, q := range p.queues {
		fmt.Fprint(w, "  ")
		q.WriteDebug(w)
	}
}
