package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Common configuration fields (struct virtio_pci_common_cfg and the
// virtio 1.2 additions).
const (
	cfgDevFeatSel   = 0x00
	cfgDevFeat      = 0x04
	cfgDrvFeatSel   = 0x08
	cfgDrvFeat      = 0x0c
	cfgMSIXConfig   = 0x10
	cfgNumQueues    = 0x12
	cfgStatus       = 0x14
	cfgGeneration   = 0x15
	cfgQueueSel     = 0x16
	cfgQueueSize    = 0x18
	cfgQueueVector  = 0x1a
	cfgQueueEnable  = 0x1c
	cfgQueueNotify  = 0x1e
	cfgQueueDesc    = 0x20
	cfgQueueDriver  = 0x28
	cfgQueueDevice  = 0x30
	cfgQueueNotData = 0x38
	cfgQueueReset   = 0x3a
)

// commonFields lists each field's offset and width.
var commonFields = [...]struct{ off, size int }{
	{cfgDevFeatSel, 4}, {cfgDevFeat, 4}, {cfgDrvFeatSel, 4}, {cfgDrvFeat, 4},
	{cfgMSIXConfig, 2}, {cfgNumQueues, 2}, {cfgStatus, 1}, {cfgGeneration, 1},
	{cfgQueueSel, 2}, {cfgQueueSize, 2}, {cfgQueueVector, 2}, {cfgQueueEnable, 2},
	{cfgQueueNotify, 2}, {cfgQueueDesc, 8}, {cfgQueueDriver, 8}, {cfgQueueDevice, 8},
	{cfgQueueNotData, 2}, {cfgQueueReset, 2},
}

// readCommon reads the common configuration at off: each field the
// access covers contributes its bytes.
func (p *PCI) readCommon(off int, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eachField(off, data, false)
}

// writeCommon merges the written bytes into each field the access covers
// and applies the new values.
func (p *PCI) writeCommon(off int, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eachField(off, data, true)
}

// eachField copies between data (an access at off) and each field it
// covers: into the field, which is then applied, when write is set.
// Precondition: mu is held.
func (p *PCI) eachField(off int, data []byte, write bool) {
	for _, f := range commonFields {
		if f.off >= off+len(data) || f.off+f.size <= off {
			continue
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], p.commonField(f.off))
		for i := 0; i < f.size; i++ {
			if j := f.off + i - off; j >= 0 && j < len(data) {
				if write {
					b[i] = data[j]
				} else {
					data[j] = b[i]
				}
			}
		}
		if write {
			p.setCommonField(f.off, binary.LittleEndian.Uint64(b[:]))
		}
	}
}

// selected returns the selected queue's configuration, or nil.
// Precondition: mu is held.
func (p *PCI) selected() *queueConfig {
	if int(p.queueSel) < len(p.qcfg) {
		return &p.qcfg[p.queueSel]
	}
	return nil
}

// commonField returns a common configuration field. Precondition: mu is
// held.
func (p *PCI) commonField(off int) uint64 {
	q := p.selected()
	switch off {
	case cfgDevFeatSel:
		return uint64(p.devFeatSel)
	case cfgDevFeat:
		if p.devFeatSel < 2 {
			return uint64(uint32(p.offered >> (32 * p.devFeatSel)))
		}
	case cfgDrvFeatSel:
		return uint64(p.drvFeatSel)
	case cfgDrvFeat:
		if p.drvFeatSel < 2 {
			return uint64(uint32(p.drvFeatures >> (32 * p.drvFeatSel)))
		}
	case cfgMSIXConfig:
		p.irq.mu.Lock()
		defer p.irq.mu.Unlock()
		return uint64(p.irq.cfgVector)
	case cfgNumQueues:
		return uint64(len(p.queues))
	case cfgStatus:
		s := p.status
		if p.needsReset.Load() {
			s |= StatusDeviceNeedsReset
		}
		return uint64(s)
	case cfgGeneration:
		return uint64(uint8(p.generation.Load()))
	case cfgQueueSel:
		return uint64(p.queueSel)
	case cfgQueueNotify, cfgQueueNotData:
		if q != nil {
			return uint64(p.queueSel)
		}
	}
	if q == nil {
		return 0
	}
	switch off {
	case cfgQueueSize:
		return uint64(q.Size)
	case cfgQueueVector:
		return uint64(q.vector)
	case cfgQueueEnable:
		if q.Ready {
			return 1
		}
	case cfgQueueDesc:
		return q.Desc
	case cfgQueueDriver:
		return q.Driver
	case cfgQueueDevice:
		return q.Device
	}
	return 0
}

// setCommonField applies a driver write. Precondition: mu is held.
func (p *PCI) setCommonField(off int, v uint64) {
	q := p.selected()
	live := p.status&StatusDriverOK != 0
	switch off {
	case cfgDevFeatSel:
		p.devFeatSel = uint32(v)
	case cfgDrvFeatSel:
		p.drvFeatSel = uint32(v)
	case cfgDrvFeat:
		if p.drvFeatSel < 2 && p.status&StatusFeaturesOK == 0 {
			shift := 32 * p.drvFeatSel
			p.drvFeatures = p.drvFeatures&^(0xffffffff<<shift) | uint64(uint32(v))<<shift
		}
	case cfgMSIXConfig:
		p.irq.mu.Lock()
		p.irq.cfgVector = p.validVector(uint16(v))
		p.irq.mu.Unlock()
	case cfgStatus:
		p.setStatus(uint8(v))
	case cfgQueueSel:
		p.queueSel = uint16(v)
	case cfgQueueSize:
		if q != nil && !q.Ready && !live {
			q.Size = uint16(v)
		}
	case cfgQueueVector:
		if q != nil {
			q.vector = p.validVector(uint16(v))
			p.irq.mu.Lock()
			p.irq.qVectors[p.queueSel] = q.vector
			p.irq.mu.Unlock()
		}
	case cfgQueueEnable:
		if q != nil && v&1 == 1 && !live {
			q.Ready = true
		}
	case cfgQueueDesc:
		if q != nil && !q.Ready && !live {
			q.Desc = v
		}
	case cfgQueueDriver:
		if q != nil && !q.Ready && !live {
			q.Driver = v
		}
	case cfgQueueDevice:
		if q != nil && !q.Ready && !live {
			q.Device = v
		}
	}
}

// validVector returns v if it names a vector of this function, else
// NoVector: reading back NoVector tells the driver the assignment failed.
func (p *PCI) validVector(v uint16) uint16 {
	if int(v) < p.nvec {
		return v
	}
	return NoVector
}

// setStatus applies a write to device_status. Precondition: mu is held.
func (p *PCI) setStatus(v uint8) {
	if v == 0 {
		p.reset()
		return
	}
	old := p.status
	v &^= StatusDeviceNeedsReset // the device's bit
	if v&old != old {
		// Only a reset clears bits.
		p.logf("%s: driver cleared status bits %#x without a reset; ignored", p.name, old&^v)
		v |= old
	}
	if v&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 {
		if err := p.checkFeatures(); err != nil {
			p.logf("%s: %v", p.name, err)
			v &^= StatusFeaturesOK // the driver reads it back and gives up
		}
	}
	if v&StatusDriverOK != 0 && old&StatusDriverOK == 0 {
		if v&StatusFeaturesOK == 0 {
			p.logf("%s: DRIVER_OK without FEATURES_OK", p.name)
			v &^= StatusDriverOK
		} else {
			p.status = v
			if err := p.activate(); err != nil {
				p.fail(err)
			}
			return
		}
	}
	p.status = v
}

// checkFeatures validates the driver's feature selection.
func (p *PCI) checkFeatures() error {
	if extra := p.drvFeatures &^ p.offered; extra != 0 {
		return fmt.Errorf("driver accepted features %#x the device does not offer", extra)
	}
	if p.drvFeatures&FeatureVersion1 == 0 {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)")
	}
	return nil
}

// activate maps the enabled queues and starts the device.
// Precondition: mu is held.
func (p *PCI) activate() error {
	if err := p.mapQueues(nil); err != nil {
		return err
	}
	if err := p.start(); err != nil {
		return err
	}
	p.active = true
	return nil
}

// mapQueues maps the enabled queues' rings; saved, if not nil, gives
// their ring positions (restore). Precondition: mu is held.
func (p *PCI) mapQueues(saved []QueueState) error {
	for i, q := range p.queues {
		if !p.qcfg[i].Ready {
			continue
		}
		if err := q.activate(p.mem, p.qcfg[i].QueueConfig, p.drvFeatures); err != nil {
			return err
		}
		if saved != nil {
			q.restore(saved[i].LastAvail, saved[i].UsedIdx)
		}
	}
	return nil
}

// start activates the device model on the mapped queues. Precondition:
// mu is held and the queues are mapped.
func (p *PCI) start() error {
	qs := make([]*Queue, len(p.queues))
	for i, q := range p.queues {
		if p.qcfg[i].Ready {
			q.restart()
			qs[i] = q
		}
	}
	err := p.dev.Activate(Env{
		Mem:           p.mem,
		Features:      p.drvFeatures,
		Queues:        qs,
		Fail:          p.fail,
		ConfigChanged: p.ConfigChanged,
	})
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	return nil
}

func (p *PCI) reset() {
	for _, q := range p.queues {
		q.Stop()
	}
	if p.active && !p.quiesced {
		p.dev.Reset()
	}
	p.active, p.quiesced = false, false
	for _, q := range p.queues {
		q.reset()
	}
	p.resetRegisters()
}

// fail puts the device into DEVICE_NEEDS_RESET, stops every queue (the
// device's Next returns false from now on, so none of its loops takes
// another chain until the driver resets it, like QEMU's virtio_error
// marking a device broken) and tells the driver. Safe from device
// goroutines.
func (p *PCI) fail(err error) {
	if p.needsReset.Swap(true) {
		return
	}
	for _, q := range p.queues {
		q.Stop()
	}
	p.logf("%s: %v; the device needs a reset", p.name, err)
	p.configInterrupt()
}
