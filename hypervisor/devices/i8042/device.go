// Package i8042 emulates the PC's 8042 keyboard controller with nothing
// plugged into it: enough for Linux's i8042 driver to probe it quickly
// and quietly, and for the guest to reset the machine through it (command
// 0xFE, or an output-port write with bit 0 clear), which is one of the
// ways Linux reboots.
//
// No keyboard or mouse is attached. A byte sent to either device is
// answered at once by the controller with 0xFE and the time-out status
// bit, as a real controller does for an empty connector, so Linux's
// atkbd and psmouse give up after one command instead of waiting out
// their timeouts. Reading the data port with nothing queued returns the
// last byte read (0x00 after power-on), as the 8042's output buffer
// simply keeps it.
package i8042

import (
	"fmt"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// Ports and interrupts of the controller on a PC.
const (
	DataPort    = 0x60
	CommandPort = 0x64 // status register on read
	KeyboardIRQ = 1
	AuxIRQ      = 12
)

// Status register bits.
const (
	statusOBF     = 0x01 // output buffer full
	statusIBF     = 0x02 // input buffer full (never: commands complete at once)
	statusSys     = 0x04 // system flag, mirrors the command byte's
	statusCommand = 0x08 // the last write was to the command port
	statusUnlock  = 0x10 // keyboard not inhibited by the key lock
	statusAuxData = 0x20 // the byte in the output buffer is from the aux port
	statusTimeout = 0x40 // the device did not answer
)

// Command byte (controller RAM byte 0) bits.
const (
	ctrKbdInt  = 0x01
	ctrAuxInt  = 0x02
	ctrSys     = 0x04
	ctrKbdDis  = 0x10
	ctrAuxDis  = 0x20
	ctrXlate   = 0x40
	resetCTR   = ctrXlate | ctrAuxDis | ctrSys | ctrKbdInt
	ramSize    = 32
	queueDepth = 16
)

// Output port bits.
const (
	outReset   = 0x01 // 0 holds the CPU in reset
	outA20     = 0x02
	outKbdFull = 0x10 // reflects the keyboard output buffer
	outAuxFull = 0x20 // reflects the aux output buffer
	resetOut   = outReset | outA20
)

// Controller commands.
const (
	cmdReadRAM      = 0x20 // 0x20-0x3F: read RAM byte cmd&0x1F
	cmdWriteRAM     = 0x60 // 0x60-0x7F: write RAM byte cmd&0x1F
	cmdPassword     = 0xa4
	cmdAuxDisable   = 0xa7
	cmdAuxEnable    = 0xa8
	cmdAuxTest      = 0xa9
	cmdSelfTest     = 0xaa
	cmdKbdTest      = 0xab
	cmdKbdDisable   = 0xad
	cmdKbdEnable    = 0xae
	cmdReadInput    = 0xc0
	cmdReadOutput   = 0xd0
	cmdWriteOutput  = 0xd1
	cmdWriteKbdBuf  = 0xd2
	cmdWriteAuxBuf  = 0xd3
	cmdWriteAux     = 0xd4
	cmdA20Disable   = 0xdd
	cmdA20Enable    = 0xdf
	cmdReadTest     = 0xe0
	cmdPulse        = 0xf0 // 0xF0-0xFF: pulse output port bits 0-3 low where clear
	selfTestOK      = 0x55
	interfaceOK     = 0x00
	noPassword      = 0xf1
	noDeviceAnswer  = 0xfe
	inputPortUnlock = 0x80
)

// Controller is an i8042 with empty keyboard and aux connectors. It
// implements devices.PortDevice for DataPort and CommandPort. All
// methods are safe for concurrent use.
type Controller struct {
	kbdIRQ, auxIRQ devices.InterruptLine
	onReset        func()

	mu       sync.Mutex
	ram      [ramSize]byte // byte 0 is the command byte
	out      byte          // output port
	queue    []outByte     // controller output, oldest first
	last     byte          // last byte read from the data port
	pending  byte          // command waiting for its data byte, or 0
	lastCmd  bool          // the last write went to the command port
	kbdLevel bool
	auxLevel bool
	irqErr   error
}

// outByte is one byte waiting in the controller's output buffer.
type outByte struct {
	data    byte
	aux     bool
	timeout bool
}

// New returns a controller that raises kbdIRQ (IRQ 1) and auxIRQ (IRQ 12)
// level-style while a byte for that port waits in its output buffer and
// the command byte enables the port's interrupt; either may be nil for no
// interrupt. onReset is called, without any lock held, when the guest
// pulses the CPU reset line; nil ignores such requests.
func New(kbdIRQ, auxIRQ devices.InterruptLine, onReset func()) *Controller {
	c := &Controller{kbdIRQ: kbdIRQ, auxIRQ: auxIRQ, onReset: onReset}
	c.mu.Lock()
	c.resetLocked()
	c.mu.Unlock()
	return c
}

// Reset returns the controller to its power-on state.
func (c *Controller) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
}

// resetLocked sets the power-on state. Precondition: mu is held.
func (c *Controller) resetLocked() {
	c.ram = [ramSize]byte{resetCTR}
	c.out = resetOut
	c.queue = c.queue[:0]
	c.last, c.pending, c.lastCmd = 0, 0, false
	c.updateIRQ()
}

// Err returns the first error an interrupt line reported, if any.
func (c *Controller) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.irqErr
}

// ReadPort implements devices.PortDevice. Only the first byte of a wider
// access is decoded; the rest read as open bus.
func (c *Controller) ReadPort(port uint16, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
	if len(data) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch port {
	case DataPort:
		data[0] = c.readData()
	case CommandPort:
		data[0] = c.status()
	}
}

// WritePort implements devices.PortDevice. Only the first byte of a wider
// access is decoded.
func (c *Controller) WritePort(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	c.mu.Lock()
	reset := false
	switch port {
	case DataPort:
		c.lastCmd = false
		reset = c.writeData(data[0])
	case CommandPort:
		c.lastCmd = true
		reset = c.command(data[0])
	}
	c.mu.Unlock()
	if reset && c.onReset != nil {
		c.onReset()
	}
}

// status returns the status register. Precondition: mu is held.
func (c *Controller) status() byte {
	v := byte(statusUnlock)
	if c.ram[0]&ctrSys != 0 {
		v |= statusSys
	}
	if c.lastCmd {
		v |= statusCommand
	}
	if len(c.queue) > 0 {
		v |= statusOBF
		if c.queue[0].aux {
			v |= statusAuxData
		}
		if c.queue[0].timeout {
			v |= statusTimeout
		}
	}
	return v
}

// readData takes the oldest byte from the output buffer, or repeats the
// last one when it is empty. Precondition: mu is held.
func (c *Controller) readData() byte {
	if len(c.queue) == 0 {
		return c.last
	}
	c.last = c.queue[0].data
	c.queue = append(c.queue[:0], c.queue[1:]...)
	c.updateIRQ()
	return c.last
}

// push queues a byte of controller output. A guest that issues commands
// without reading their results eventually loses the newest ones, as the
// real controller's single output buffer would. Precondition: mu is held.
func (c *Controller) push(b outByte) {
	if len(c.queue) >= queueDepth {
		return
	}
	c.queue = append(c.queue, b)
	c.updateIRQ()
}

// command executes a controller command written to the command port and
// reports whether it asks for a CPU reset. Precondition: mu is held.
func (c *Controller) command(cmd byte) (reset bool) {
	c.pending = 0
	switch {
	case cmd >= cmdReadRAM && cmd < cmdReadRAM+ramSize:
		c.push(outByte{data: c.ram[cmd-cmdReadRAM]})
	case takesData(cmd):
		c.pending = cmd
	case cmd == cmdPassword:
		c.push(outByte{data: noPassword})
	case cmd == cmdAuxDisable:
		c.setCTR(c.ram[0] | ctrAuxDis)
	case cmd == cmdAuxEnable:
		c.setCTR(c.ram[0] &^ ctrAuxDis)
	case cmd == cmdAuxTest, cmd == cmdKbdTest:
		c.push(outByte{data: interfaceOK})
	case cmd == cmdSelfTest:
		c.setCTR(c.ram[0] | ctrSys)
		c.push(outByte{data: selfTestOK})
	case cmd == cmdKbdDisable:
		c.setCTR(c.ram[0] | ctrKbdDis)
	case cmd == cmdKbdEnable:
		c.setCTR(c.ram[0] &^ ctrKbdDis)
	case cmd == cmdReadInput:
		c.push(outByte{data: inputPortUnlock})
	case cmd == cmdReadOutput:
		c.push(outByte{data: c.outputPort()})
	case cmd == cmdA20Disable:
		c.out &^= outA20
	case cmd == cmdA20Enable:
		c.out |= outA20
	case cmd == cmdReadTest:
		c.push(outByte{data: 0})
	case cmd >= cmdPulse:
		// Bits 0-3 clear in the command are pulsed low; bit 0 is reset.
		return cmd&outReset == 0
	}
	// Other commands (vendor diagnostics, password handling) are ignored.
	return false
}

// writeData handles a byte written to the data port: a parameter for the
// pending command, or a byte for the keyboard. It reports whether it
// asks for a CPU reset. Precondition: mu is held.
func (c *Controller) writeData(v byte) (reset bool) {
	cmd := c.pending
	c.pending = 0
	switch {
	case cmd >= cmdWriteRAM && cmd < cmdWriteRAM+ramSize:
		if cmd == cmdWriteRAM {
			c.setCTR(v)
		} else {
			c.ram[cmd-cmdWriteRAM] = v
		}
	case cmd == cmdWriteOutput:
		c.out = v &^ (outKbdFull | outAuxFull)
		return v&outReset == 0
	case cmd == cmdWriteKbdBuf:
		c.push(outByte{data: v})
	case cmd == cmdWriteAuxBuf:
		c.push(outByte{data: v, aux: true})
	case cmd == cmdWriteAux:
		c.push(outByte{data: noDeviceAnswer, aux: true, timeout: true})
	default:
		// A byte for the keyboard, which is not there.
		c.push(outByte{data: noDeviceAnswer, timeout: true})
	}
	return false
}

// setCTR writes the command byte. Precondition: mu is held.
func (c *Controller) setCTR(v byte) {
	c.ram[0] = v
	c.updateIRQ()
}

// outputPort returns the output port with its buffer-full bits.
// Precondition: mu is held.
func (c *Controller) outputPort() byte {
	v := c.out
	if len(c.queue) > 0 {
		if c.queue[0].aux {
			v |= outAuxFull
		} else {
			v |= outKbdFull
		}
	}
	return v
}

// wantIRQ returns the levels the keyboard and aux lines should have.
// Precondition: mu is held.
func (c *Controller) wantIRQ() (kbd, aux bool) {
	if len(c.queue) == 0 {
		return false, false
	}
	if c.queue[0].aux {
		return false, c.ram[0]&ctrAuxInt != 0
	}
	return c.ram[0]&ctrKbdInt != 0, false
}

// updateIRQ drives both lines from the output buffer and the command
// byte. Precondition: mu is held.
func (c *Controller) updateIRQ() {
	kbd, aux := c.wantIRQ()
	c.setLine(c.kbdIRQ, &c.kbdLevel, kbd, "keyboard")
	c.setLine(c.auxIRQ, &c.auxLevel, aux, "aux")
}

// setLine moves one line to level if it is not there. Precondition: mu
// is held.
func (c *Controller) setLine(l devices.InterruptLine, cur *bool, level bool, name string) {
	if *cur == level {
		return
	}
	*cur = level
	if l == nil {
		return
	}
	if err := l.SetLevel(level); err != nil && c.irqErr == nil {
		c.irqErr = fmt.Errorf("i8042: set %s interrupt level %v: %w", name, level, err)
	}
}
