package virtio

import (
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
)

// QueueState is one queue's driver configuration and ring positions.
type QueueState struct {
	Size                 uint16
	Desc, Driver, Device uint64
	Ready                bool
	Vector               uint16
	// LastAvail and UsedIdx are the device's ring positions (valid once
	// the device is live).
	LastAvail, UsedIdx uint16
}

// MSIXEntryState is one MSI-X table entry.
type MSIXEntryState struct {
	Address uint64
	Data    uint32
	Masked  bool
}

// PCIState is a virtio-pci function's transport state as plain data,
// for snapshots. The device model saves its own state.
type PCIState struct {
	Config         pci.ConfigState
	Status         uint8
	NeedsReset     bool
	DevFeatSelect  uint32
	DrvFeatSelect  uint32
	DriverFeatures uint64
	QueueSelect    uint16
	Generation     uint32
	ConfigVector   uint16
	Queues         []QueueState
	MSIXEnabled    bool
	MSIXMasked     bool
	MSIX           []MSIXEntryState
	Pending        []uint64
	ISR            uint8
}

// Save returns the transport's state. Precondition: the vCPUs are
// paused and the device is quiesced (Quiesce) or was never started, so
// no request is in flight and the ring positions are final.
func (p *PCI) Save() PCIState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PCIState{
		Config:         p.ConfigSpace.Save(),
		Status:         p.status,
		NeedsReset:     p.needsReset.Load(),
		DevFeatSelect:  p.devFeatSel,
		DrvFeatSelect:  p.drvFeatSel,
		DriverFeatures: p.drvFeatures,
		QueueSelect:    p.queueSel,
		Generation:     p.generation.Load(),
	}
	for i, c := range p.qcfg {
		qs := QueueState{Size: c.Size, Desc: c.Desc, Driver: c.Driver, Device: c.Device, Ready: c.Ready, Vector: c.vector}
		if p.active && c.Ready {
			qs.LastAvail, qs.UsedIdx = p.queues[i].positions()
		}
		st.Queues = append(st.Queues, qs)
	}
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	st.ConfigVector = s.cfgVector
	st.MSIXEnabled, st.MSIXMasked = s.enabled, s.funcMask
	for _, e := range s.table {
		st.MSIX = append(st.MSIX, MSIXEntryState{Address: e.msg.Address, Data: e.msg.Data, Masked: e.masked})
	}
	st.Pending = append([]uint64(nil), s.pending...)
	st.ISR = s.isr
	return st
}

// Restore loads st into a transport that has not been used yet (built
// like the saved one, over the same guest memory), re-routes its MSI-X
// vectors and, if the driver had set DRIVER_OK, maps the queues at their
// saved positions. The device is left quiesced: Resume starts it, once
// the rest of the machine is restored too. Restore the device model's
// own state first. An incompatible state is refused with an error and
// nothing is changed.
func (p *PCI) Restore(st PCIState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.active || p.status != 0:
		return fmt.Errorf("virtio: %s: restore into a device the driver already uses", p.name)
	case len(st.Queues) != len(p.queues):
		return fmt.Errorf("virtio: %s: restore: %d queues saved, the device has %d", p.name, len(st.Queues), len(p.queues))
	case len(st.MSIX) != len(p.irq.table):
		return fmt.Errorf("virtio: %s: restore: %d MSI-X vectors saved, the function has %d", p.name, len(st.MSIX), len(p.irq.table))
	case len(st.Pending) != len(p.irq.pending):
		return fmt.Errorf("virtio: %s: restore: pending bit array of %d words, want %d", p.name, len(st.Pending), len(p.irq.pending))
	case st.DriverFeatures&^p.offered != 0:
		return fmt.Errorf("virtio: %s: restore: driver features %#x include ones this device does not offer", p.name, st.DriverFeatures)
	}
	for i, q := range st.Queues {
		if q.Size > p.queues[i].maxSize {
			return fmt.Errorf("virtio: %s: restore: queue %d size %d is above the maximum %d", p.name, i, q.Size, p.queues[i].maxSize)
		}
	}
	if err := p.ConfigSpace.Restore(st.Config); err != nil {
		return fmt.Errorf("virtio: %s: %w", p.name, err)
	}
	p.devFeatSel, p.drvFeatSel, p.drvFeatures = st.DevFeatSelect, st.DrvFeatSelect, st.DriverFeatures
	p.queueSel = st.QueueSelect
	p.generation.Store(st.Generation)
	p.needsReset.Store(st.NeedsReset)
	for i, q := range st.Queues {
		p.qcfg[i] = queueConfig{QueueConfig: QueueConfig{Size: q.Size, Desc: q.Desc, Driver: q.Driver, Device: q.Device, Ready: q.Ready}, vector: p.validVector(q.Vector)}
	}
	s := &p.irq
	s.mu.Lock()
	s.cfgVector = p.validVector(st.ConfigVector)
	for i, q := range st.Queues {
		s.qVectors[i] = p.validVector(q.Vector)
	}
	s.enabled, s.funcMask = st.MSIXEnabled, st.MSIXMasked
	for i, e := range st.MSIX {
		s.table[i] = msixEntry{msg: MSIMessage{Address: e.Address, Data: e.Data}, masked: e.Masked}
		if !e.Masked && p.msixSink != nil {
			if err := p.msixSink.Route(i, s.table[i].msg); err != nil {
				s.mu.Unlock()
				return fmt.Errorf("virtio: %s: restore: route MSI-X vector %d: %w", p.name, i, err)
			}
			s.table[i].routed, s.table[i].route = true, s.table[i].msg
		}
	}
	copy(s.pending, st.Pending)
	s.isr = st.ISR
	p.updateINTxLocked()
	s.mu.Unlock()

	p.status = st.Status
	if st.Status&StatusDriverOK == 0 || st.NeedsReset {
		return nil
	}
	if err := p.mapQueues(st.Queues); err != nil {
		return fmt.Errorf("virtio: %s: restore: %w", p.name, err)
	}
	for _, q := range p.queues {
		q.Stop()
	}
	p.active, p.quiesced = true, true
	return nil
}
