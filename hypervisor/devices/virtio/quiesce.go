package virtio

import "fmt"

// Quiesce stops an active device without the driver noticing: it stops
// the queues, waits until the device model has completed every request
// it took and its goroutines have returned (Device.Reset), and then
// delivers the interrupts the device still owed the driver for chains
// it used. The queues stay mapped at their ring positions and every
// driver-visible register keeps its value, so Save sees a device at
// rest, and Resume starts it again where it stopped. Quiescing a device
// the driver has not started, or one already quiesced, does nothing.
//
// Precondition: the vCPUs are paused, so the driver cannot reset or
// reconfigure the device meanwhile. Chains the driver makes available
// while the device is quiesced wait for Resume.
func (p *PCI) Quiesce() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active || p.quiesced {
		return
	}
	for _, q := range p.queues {
		q.Stop()
	}
	p.dev.Reset()
	p.quiesced = true
	for i, q := range p.queues {
		if p.qcfg[i].Ready {
			q.Notify()
		}
	}
}

// Resume restarts a device stopped by Quiesce, or restored by Restore,
// on its queues at their current ring positions. A device that is not
// quiesced is left alone. An error means the device model could not be
// started again; the device then needs a reset (DEVICE_NEEDS_RESET), as
// if it had failed.
func (p *PCI) Resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active || !p.quiesced {
		return nil
	}
	p.quiesced = false
	if p.needsReset.Load() {
		return nil // it stays stopped until the driver resets it
	}
	if err := p.start(); err != nil {
		p.active = false
		p.fail(err)
		return fmt.Errorf("virtio: %s: resume: %w", p.name, err)
	}
	return nil
}

// Quiesced reports whether the device is stopped by Quiesce or waits for
// Resume after a restore.
func (p *PCI) Quiesced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.quiesced
}
