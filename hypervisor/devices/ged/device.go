// Package ged emulates the hardware side of paddock's ACPI Generic Event
// Device (GED, ACPI0013): one level-triggered interrupt line and a
// one-byte event register in I/O space. A device that has news for the
// guest sets its event bit (Trigger), which raises the line; the GED's
// _EVT method in the DSDT (hypervisor/boot/acpi) runs in the guest on
// the interrupt, reads the register once and notifies the ACPI devices
// whose bits are set. The read returns the pending events and clears
// them, which lowers the line; an event triggered after the read raises
// it again, so none is lost. The line stays high until the guest reads,
// so an event triggered while the guest cannot take the interrupt (its
// IOAPIC pin masked, the driver not bound yet) waits for it.
package ged

import (
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// The GED's place in a paddock machine: the register's port, next to the
// ACPI PM blocks, and the interrupt's GSI, an IOAPIC pin no other device
// uses (the PCI INTx lines take 16-19).
const (
	DefaultPort = 0x610
	DefaultGSI  = 20
	// Len is the register's size in ports.
	Len = 1
)

// Events: the bits of the register.
const (
	// EventGenerationID says the VM generation ID changed; _EVT
	// notifies the VGEN device (hypervisor/devices/vmgenid).
	EventGenerationID = 0

	// events is the mask of the bits that have an event.
	events = 1 << EventGenerationID
)

// Config describes the GED.
type Config struct {
	// Port is the event register's I/O port.
	Port uint16
	// Line is the GED's interrupt, driven level-style (active high, as
	// the DSDT's _CRS declares it). Nil: no interrupt.
	Line devices.InterruptLine
}

// GED is the Generic Event Device. It implements devices.PortDevice for
// its register. All methods are safe for concurrent use.
type GED struct {
	cfg Config

	mu      sync.Mutex
	pending uint8
	level   bool
	lineErr error
}

// New returns a GED with no event pending.
func New(cfg Config) *GED { return &GED{cfg: cfg} }

// Trigger makes event (one of the Event constants) pending and raises
// the line. It fails for an event the GED does not have, or when the
// line cannot be driven.
func (g *GED) Trigger(event int) error {
	if event < 0 || event > 7 || events&(1<<event) == 0 {
		return fmt.Errorf("ged: no event %d", event)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending |= 1 << event
	return g.update()
}

// Pending returns the events the guest has not read yet.
func (g *GED) Pending() uint8 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending
}

// Err returns the first error the line reported while the guest read the
// register, if any.
func (g *GED) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lineErr
}

// ReadPort implements devices.PortDevice: the register's byte returns the
// pending events and clears them; other bytes of a wider access read
// 0xff, as open bus.
func (g *GED) ReadPort(port uint16, data []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range data {
		if int(port)+i != int(g.cfg.Port) {
			data[i] = 0xff
			continue
		}
		data[i] = g.pending
		g.pending = 0
		if err := g.update(); err != nil && g.lineErr == nil {
			g.lineErr = err
		}
	}
}

// WritePort implements devices.PortDevice. The register is read-only:
// writes are ignored.
func (g *GED) WritePort(port uint16, data []byte) {}

// update drives the line: high while an event is pending. Precondition:
// mu is held.
func (g *GED) update() error {
	level := g.pending != 0
	if level == g.level {
		return nil
	}
	g.level = level
	if g.cfg.Line == nil {
		return nil
	}
	if err := g.cfg.Line.SetLevel(level); err != nil {
		return fmt.Errorf("ged: set the interrupt line %v: %w", level, err)
	}
	return nil
}
