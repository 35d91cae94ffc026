package virtio

import (
	"encoding/binary"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
)

// MSIMessage is an MSI-X table entry's message.
type MSIMessage struct {
	Address uint64
	Data    uint32
}

// MSIX delivers one function's MSI-X messages. The machine implements it
// with a KVM GSI route and an irqfd per vector, so Fire costs one eventfd
// write and no exit. Both may be called from any goroutine.
type MSIX interface {
	// Route sets the message vector v delivers. The transport calls it
	// when the guest unmasks a vector or changes an unmasked vector's
	// message.
	Route(vector int, msg MSIMessage) error
	// Fire delivers vector v's routed message.
	Fire(vector int) error
}

// irqState is the function's interrupt state: MSI-X table and pending
// bits, the vectors the driver assigned, and the INTx ISR.
type irqState struct {
	mu        sync.Mutex
	enabled   bool // MSI-X enable bit
	funcMask  bool // MSI-X function mask bit
	table     []msixEntry
	pending   []uint64
	cfgVector uint16
	qVectors  []uint16
	isr       uint8
	intxHigh  bool
}

// msixEntry is one MSI-X table entry and what was last routed for it.
type msixEntry struct {
	msg    MSIMessage
	masked bool
	routed bool
	route  MSIMessage
}

// ConfigChanged tells the driver the device configuration changed. Safe
// from any goroutine.
func (p *PCI) ConfigChanged() {
	p.generation.Add(1)
	p.configInterrupt()
}

// NeedsReset reports whether the device is in DEVICE_NEEDS_RESET.
func (p *PCI) NeedsReset() bool { return p.needsReset.Load() }

func (p *PCI) configInterrupt() {
	p.irq.mu.Lock()
	v := p.irq.cfgVector
	p.irq.mu.Unlock()
	p.interrupt(isrConfig, v)
}

// queueVector returns queue i's MSI-X vector.
func (p *PCI) queueVector(i int) uint16 {
	p.irq.mu.Lock()
	defer p.irq.mu.Unlock()
	return p.irq.qVectors[i]
}

// interrupt delivers an interrupt for vector (MSI-X) or the ISR bit
// (INTx).
func (p *PCI) interrupt(isr uint8, vector uint16) {
	s := &p.irq
	s.mu.Lock()
	if !s.enabled {
		s.isr |= isr
		p.updateINTxLocked()
		s.mu.Unlock()
		return
	}
	if int(vector) >= len(s.table) {
		s.mu.Unlock()
		return
	}
	if s.funcMask || s.table[vector].masked {
		s.pending[vector/64] |= 1 << (vector % 64)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := p.msixSink.Fire(int(vector)); err != nil {
		p.logf("%s: MSI-X vector %d: %v", p.name, vector, err)
	}
}

// readISR returns the ISR status and clears it, lowering INTx.
func (p *PCI) readISR() uint8 {
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.isr
	s.isr = 0
	p.updateINTxLocked()
	return v
}

// updateINTxLocked drives INTx from the ISR. Precondition: irq.mu is held.
func (p *PCI) updateINTxLocked() {
	high := p.irq.isr != 0 && !p.irq.enabled && p.Command()&pci.CommandINTxDisable == 0
	p.ConfigSpace.SetInterruptStatus(p.irq.isr != 0 && !p.irq.enabled)
	if p.intx == nil || high == p.irq.intxHigh {
		return
	}
	if err := p.intx.SetLevel(high); err != nil {
		p.logf("%s: INTx: %v", p.name, err)
		return
	}
	p.irq.intxHigh = high
}

// setMSIXControl applies the MSI-X enable and function mask bits.
func (p *PCI) setMSIXControl(enabled, funcMask bool) {
	s := &p.irq
	s.mu.Lock()
	s.enabled, s.funcMask = enabled, funcMask
	p.updateINTxLocked()
	fire := p.unmaskedPendingLocked()
	s.mu.Unlock()
	p.fireAll(fire)
}

// unmaskedPendingLocked routes and collects the pending vectors that may
// be delivered now, clearing their pending bits. Precondition: irq.mu is
// held.
func (p *PCI) unmaskedPendingLocked() []int {
	s := &p.irq
	if !s.enabled || s.funcMask {
		return nil
	}
	var fire []int
	for v := range s.table {
		if s.pending[v/64]&(1<<(v%64)) == 0 || s.table[v].masked {
			continue
		}
		s.pending[v/64] &^= 1 << (v % 64)
		fire = append(fire, v)
	}
	return fire
}

func (p *PCI) fireAll(vectors []int) {
	for _, v := range vectors {
		if err := p.msixSink.Fire(v); err != nil {
			p.logf("%s: MSI-X vector %d: %v", p.name, v, err)
		}
	}
}

// readMSIXTable reads the MSI-X table at off.
func (p *PCI) readMSIXTable(off int, data []byte) {
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		o := off + i
		v := o / 16
		if v >= len(s.table) {
			continue
		}
		var e [16]byte
		encodeEntry(e[:], s.table[v])
		data[i] = e[o%16]
	}
}

func encodeEntry(b []byte, e msixEntry) {
	binary.LittleEndian.PutUint64(b[0:], e.msg.Address)
	binary.LittleEndian.PutUint32(b[8:], e.msg.Data)
	if e.masked {
		b[12] = 1
	}
}

// writeMSIXTable writes MSI-X table entries: a changed message of an
// unmasked vector is routed at once; an unmasked vector with a pending
// interrupt fires.
func (p *PCI) writeMSIXTable(off int, data []byte) {
	s := &p.irq
	s.mu.Lock()
	touched := map[int]bool{}
	for i, b := range data {
		o := off + i
		v := o / 16
		if v >= len(s.table) {
			continue
		}
		var e [16]byte
		encodeEntry(e[:], s.table[v])
		e[o%16] = b
		s.table[v].msg = MSIMessage{Address: binary.LittleEndian.Uint64(e[0:]), Data: binary.LittleEndian.Uint32(e[8:])}
		s.table[v].masked = e[12]&1 != 0
		touched[v] = true
	}
	for v := range touched {
		e := &s.table[v]
		if e.masked || (e.routed && e.route == e.msg) {
			continue
		}
		if err := p.msixSink.Route(v, e.msg); err != nil {
			p.logf("%s: route MSI-X vector %d: %v", p.name, v, err)
			continue
		}
		e.routed, e.route = true, e.msg
	}
	fire := p.unmaskedPendingLocked()
	s.mu.Unlock()
	p.fireAll(fire)
}

// readPBA reads the pending bit array.
func (p *PCI) readPBA(off int, data []byte) {
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		o := off + i
		if w := o / 8; w < len(s.pending) {
			data[i] = byte(s.pending[w] >> (8 * (o % 8)))
		}
	}
}
