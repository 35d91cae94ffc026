// Package acpipm emulates the ACPI fixed hardware a non-hardware-reduced
// FADT describes, reduced to what a VM needs: the PM1a event block
// (PM1_STS and PM1_EN, with the fixed power button), the PM1a control
// block (SCI_EN, SLP_TYP, SLP_EN) and the FADT reset register. The guest
// powers off by writing SLP_EN with the S5 sleep type its DSDT's \_S5
// object gives, and resets by writing the reset value to the reset
// register; the machine learns of both through callbacks. The host
// presses the power button (for a graceful shutdown) with
// PressPowerButton, which raises the SCI while the guest has the button
// event enabled.
//
// There is no PM timer, no GPE block, no sleep button and no sleep state
// other than S5: the FADT must not advertise them. SCI_EN reads as 1
// always (the machine has no SMM to hand ACPI over from), so the FADT's
// SMI_CMD must be 0.
package acpipm

import (
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// The ports and values paddock's ACPI tables describe. The FADT gives
// PM1a_EVT_BLK = DefaultEventPort (PM1_EVT_LEN = EventBlockLen),
// PM1a_CNT_BLK = DefaultControlPort (PM1_CNT_LEN = ControlBlockLen),
// RESET_REG = DefaultResetPort in system I/O space (8 bits wide) with
// RESET_VALUE = DefaultResetValue, and SCI_INT = SCIIRQ; the DSDT's \_S5
// package gives DefaultSleepTypeS5 for SLP_TYPa.
const (
	DefaultEventPort   = 0x600
	DefaultControlPort = 0x604
	DefaultResetPort   = 0x608
	DefaultResetValue  = 0x06
	DefaultSleepTypeS5 = 5
	SCIIRQ             = 9

	EventBlockLen   = 4
	ControlBlockLen = 2
	ResetLen        = 1
)

// PM1 status and enable bits (the same positions in both registers).
const (
	tmrEn  = 0x0001 // TMR_EN
	gblEn  = 0x0020 // GBL_EN
	pwrbtn = 0x0100 // PWRBTN_STS / PWRBTN_EN
	slpbtn = 0x0200 // SLPBTN_EN
	rtcEn  = 0x0400 // RTC_EN
	wakSts = 0x8000 // WAK_STS
	// stsMask is the status bits that exist; others read 0. Only the
	// power button ever raises one.
	stsMask = pwrbtn | wakSts
	// enMask is the enable bits the guest can set and read back. ACPICA
	// verifies each enable it writes (GBL_EN for the global lock, RTC_EN
	// for the RTC's fixed event) and reports an error when it does not
	// stick; only PWRBTN_EN has an event behind it here.
	enMask = tmrEn | gblEn | pwrbtn | slpbtn | rtcEn
)

// PM1 control bits.
const (
	cntSCIEn    = 0x0001 // SCI_EN: reads 1, the OS owns ACPI from the start
	cntBMRld    = 0x0002 // BM_RLD
	cntGblRls   = 0x0004 // GBL_RLS, write-only
	cntSlpTyp   = 0x1c00 // SLP_TYPx, bits 10-12
	cntSlpEn    = 0x2000 // SLP_EN, write-only
	slpTypShift = 10
	cntMask     = cntBMRld | cntSlpTyp // the bits that are stored
)

// Config describes the power-management block.
type Config struct {
	EventPort   uint16 // PM1a_EVT_BLK: PM1_STS at +0, PM1_EN at +2
	ControlPort uint16 // PM1a_CNT_BLK: PM1_CNT
	ResetPort   uint16 // the FADT RESET_REG
	ResetValue  uint8  // the FADT RESET_VALUE
	SleepTypeS5 uint8  // SLP_TYP of \_S5, 0-7
	// SCI is the ACPI system control interrupt, driven level-style
	// (active high, as the MADT's override declares it). Nil: no SCI.
	SCI devices.InterruptLine
	// OnPowerOff is called when the guest enters S5; OnReset when it
	// writes the reset value to the reset register. Both are called
	// without any lock held, once per such write; nil ignores them.
	OnPowerOff func()
	OnReset    func()
}

// DefaultConfig returns the standard ports and values, with no SCI line
// and no callbacks.
func DefaultConfig() Config {
	return Config{
		EventPort:   DefaultEventPort,
		ControlPort: DefaultControlPort,
		ResetPort:   DefaultResetPort,
		ResetValue:  DefaultResetValue,
		SleepTypeS5: DefaultSleepTypeS5,
	}
}

// PM is the ACPI fixed hardware. It implements devices.PortDevice for the
// ports of its three blocks. All methods are safe for concurrent use.
type PM struct {
	cfg Config

	mu       sync.Mutex
	sts, en  uint16
	cnt      uint16 // BM_RLD and SLP_TYP as last written
	sciLevel bool
	sciErr   error
}

// New returns the power-management block described by cfg, or an error
// if its blocks overlap, leave the I/O space or the S5 type does not fit
// SLP_TYP.
func New(cfg Config) (*PM, error) {
	if cfg.SleepTypeS5 > 7 {
		return nil, fmt.Errorf("acpipm: S5 sleep type %d does not fit the 3-bit SLP_TYP field", cfg.SleepTypeS5)
	}
	blocks := []struct {
		name string
		port uint16
		n    int
	}{
		{"PM1a event block", cfg.EventPort, EventBlockLen},
		{"PM1a control block", cfg.ControlPort, ControlBlockLen},
		{"reset register", cfg.ResetPort, ResetLen},
	}
	for i, a := range blocks {
		if int(a.port)+a.n > 1<<16 {
			return nil, fmt.Errorf("acpipm: %s at %#x+%d runs past the I/O space", a.name, a.port, a.n)
		}
		for _, b := range blocks[i+1:] {
			if int(a.port) < int(b.port)+b.n && int(b.port) < int(a.port)+a.n {
				return nil, fmt.Errorf("acpipm: %s at %#x+%d overlaps %s at %#x+%d", a.name, a.port, a.n, b.name, b.port, b.n)
			}
		}
	}
	return &PM{cfg: cfg}, nil
}

// Config returns the configuration the block was built with.
func (p *PM) Config() Config { return p.cfg }

// Err returns the first error the SCI line reported, if any.
func (p *PM) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sciErr
}

// Reset returns the registers to their power-on values.
func (p *PM) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sts, p.en, p.cnt = 0, 0, 0
	p.updateSCI()
}

// PressPowerButton sets PWRBTN_STS, as pressing the fixed power button
// does; the SCI rises if the guest enabled the event. The status stays
// set until the guest clears it, so repeated presses are one event.
func (p *PM) PressPowerButton() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sts |= pwrbtn
	p.updateSCI()
}

// ReadPort implements devices.PortDevice. Each byte of a wider access
// reads the register byte at its own port.
func (p *PM) ReadPort(port uint16, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range data {
		data[i] = p.readByte(int(port) + i)
	}
}

// WritePort implements devices.PortDevice. Each byte of a wider access
// writes the register byte at its own port, in order, so a 16-bit write
// of SLP_TYP|SLP_EN acts once its high byte arrives.
func (p *PM) WritePort(port uint16, data []byte) {
	var powerOff, reset int
	p.mu.Lock()
	for i, v := range data {
		off, reg := p.decode(int(port) + i)
		switch reg {
		case regStatus:
			// Write 1 to clear.
			p.sts &^= uint16(v) << (8 * off) & stsMask
			p.updateSCI()
		case regEnable:
			p.en = setByte(p.en, off, v) & enMask
			p.updateSCI()
		case regControl:
			val := setByte(p.cnt, off, v)
			p.cnt = val & cntMask
			if off == 1 && val&cntSlpEn != 0 && uint8((val&cntSlpTyp)>>slpTypShift) == p.cfg.SleepTypeS5 {
				powerOff++
			}
		case regReset:
			if v == p.cfg.ResetValue {
				reset++
			}
		}
	}
	p.mu.Unlock()
	for range powerOff {
		if p.cfg.OnPowerOff != nil {
			p.cfg.OnPowerOff()
		}
	}
	for range reset {
		if p.cfg.OnReset != nil {
			p.cfg.OnReset()
		}
	}
}

// Registers of the block, as decoded from a port.
const (
	regNone = iota
	regStatus
	regEnable
	regControl
	regReset
)

// decode maps a port to a register and the byte within it.
func (p *PM) decode(port int) (off, reg int) {
	switch e, c := int(p.cfg.EventPort), int(p.cfg.ControlPort); {
	case port >= e && port < e+2:
		return port - e, regStatus
	case port >= e+2 && port < e+4:
		return port - e - 2, regEnable
	case port >= c && port < c+2:
		return port - c, regControl
	case port == int(p.cfg.ResetPort):
		return 0, regReset
	}
	return 0, regNone
}

// readByte returns the register byte at port. Precondition: mu is held.
func (p *PM) readByte(port int) byte {
	off, reg := p.decode(port)
	switch reg {
	case regStatus:
		return byte(p.sts >> (8 * off))
	case regEnable:
		return byte(p.en >> (8 * off))
	case regControl:
		return byte((p.cnt | cntSCIEn) >> (8 * off))
	case regReset:
		return 0
	}
	return 0xff
}

// setByte replaces byte off (0 or 1) of v.
func setByte(v uint16, off int, b byte) uint16 {
	shift := 8 * off
	return v&^(0xff<<shift) | uint16(b)<<shift
}

// updateSCI drives the SCI: high while an enabled fixed event is
// pending. Precondition: mu is held.
func (p *PM) updateSCI() {
	level := p.sts&p.en != 0
	if level == p.sciLevel {
		return
	}
	p.sciLevel = level
	if p.cfg.SCI == nil {
		return
	}
	if err := p.cfg.SCI.SetLevel(level); err != nil && p.sciErr == nil {
		p.sciErr = fmt.Errorf("acpipm: set SCI level %v: %w", level, err)
	}
}
