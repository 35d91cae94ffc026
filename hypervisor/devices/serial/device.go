// Package serial emulates a 16550A UART (the 8250 family) the way Linux's
// 8250 driver expects to find it on a PC: eight I/O ports from a base
// (COM1 is 0x3F8, IRQ 4), 16-byte FIFOs, the IIR priority scheme, the
// THRE interrupt semantics of real parts, loopback mode for the driver's
// probe, and the MCR OUT2 bit gating the interrupt as a PC board does.
//
// The line is infinitely fast: a byte written to THR is "on the wire"
// at once, unless the host cannot keep up (see New), and a byte given to
// Enqueue is in the receive FIFO at once. Baud rate, parity and stop bits
// are stored for the guest to read back and otherwise ignored.
package serial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// Conventional PC serial port resources.
const (
	COM1Port = 0x3F8
	COM1IRQ  = 4
	COM2Port = 0x2F8
	COM2IRQ  = 3
)

// Ports is the number of consecutive I/O ports a UART decodes.
const Ports = 8

// FIFOSize is the depth of the 16550A's receive and transmit FIFOs.
const FIFOSize = 16

// OutputBufferSize bounds the bytes the guest has transmitted that the
// host writer has not yet taken.
const OutputBufferSize = 64 << 10

// outputChunk is the most the writer goroutine hands to the writer at once.
const outputChunk = 4 << 10

// outputCoalesce is the least time between two writes of output: short
// enough to be invisible on an interactive console, long enough to turn a
// boot log's thousands of one-byte writes into a few hundred.
const outputCoalesce = 2 * time.Millisecond

// Register offsets from the base port.
const (
	regData = 0 // RBR on read, THR on write; DLL while LCR.DLAB
	regIER  = 1 // DLM while LCR.DLAB
	regIIR  = 2 // IIR on read, FCR on write
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// IER bits.
const (
	ierRDI  = 0x01 // received data available (and character timeout)
	ierTHRI = 0x02 // transmitter holding register empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0f // a 16550A implements only these
)

// IIR values: interrupt identification, highest priority first.
const (
	iirNone    = 0x01
	iirRLSI    = 0x06
	iirRDI     = 0x04
	iirTimeout = 0x0c
	iirTHRI    = 0x02
	iirMSI     = 0x00
	iirFIFOs   = 0xc0 // both bits set while the FIFOs are enabled
)

// FCR bits.
const (
	fcrEnable  = 0x01
	fcrClearRX = 0x02
	fcrClearTX = 0x04
	fcrDMA     = 0x08
	fcrTrigger = 0xc0
)

// LCR bits.
const lcrDLAB = 0x80

// MCR bits.
const (
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f // the 16550A reads bits 5-7 as 0
)

// LSR bits.
const (
	lsrDR     = 0x01
	lsrOE     = 0x02
	lsrPE     = 0x04
	lsrFE     = 0x08
	lsrBI     = 0x10
	lsrTHRE   = 0x20
	lsrTEMT   = 0x40
	lsrErrors = lsrOE | lsrPE | lsrFE | lsrBI
)

// MSR bits: the low nibble latches changes of the high nibble.
const (
	msrDCTS   = 0x01
	msrDDSR   = 0x02
	msrTERI   = 0x04
	msrDDCD   = 0x08
	msrCTS    = 0x10
	msrDSR    = 0x20
	msrRI     = 0x40
	msrDCD    = 0x80
	msrDeltas = 0x0f
	// msrIdle is what the host end of the line presents outside loopback:
	// a terminal that is present (DCD, DSR) and ready (CTS).
	msrIdle = msrDCD | msrDSR | msrCTS
)

// Power-on register values.
const (
	resetDivisor = 12 // 9600 baud from the PC's 1.8432 MHz clock
)

// Serial is one 16550A UART. It implements devices.PortDevice for the
// ports [base, base+Ports). All methods are safe for concurrent use.
type Serial struct {
	base uint16
	irq  devices.InterruptLine
	w    io.Writer

	// room receives a token whenever the guest frees receive FIFO space;
	// Pump waits on it.
	room chan struct{}
	// done is closed when the writer goroutine has exited.
	done chan struct{}

	mu sync.Mutex
	// cond is signalled, with mu, when output is queued or Close begins.
	cond *sync.Cond

	ier, lcr, mcr, scr byte
	dll, dlm           byte
	fcr                byte // enable, DMA mode and trigger bits as last written
	lsrErr             byte // OE/PE/FE/BI, cleared by reading LSR
	msrDelta           byte // the MSR's low nibble
	thrPending         bool // THR-empty interrupt armed (cleared by IIR read or THR write)
	rx                 rxFIFO

	out     byteRing // transmitted bytes waiting for the writer goroutine
	closed  bool
	dropped uint64 // bytes the guest wrote while the transmitter was busy
	outErr  error  // the first error from the writer; later output is discarded

	irqLevel bool
	irqErr   error
}

// New returns a UART decoding the eight ports from base and starts its
// writer goroutine; call Close to stop it. irq is the UART's interrupt
// wire, driven level-style (high while an enabled interrupt is pending and
// MCR.OUT2 is set); nil means no interrupt. Transmitted bytes are written
// to out (nil discards them).
//
// Output policy: the vCPU that writes THR only appends the byte to a
// buffer of OutputBufferSize bytes that a goroutine drains into out, so a
// slow or stuck writer never blocks a vCPU. When fewer than FIFOSize bytes
// of that buffer are free, the UART reports its transmitter busy (LSR.THRE
// and TEMT clear, no THR-empty interrupt) until the writer catches up, so
// a guest that honours THRE, as Linux does, loses nothing and waits
// exactly as it would for a slow line. Bytes written while THRE is clear
// and the buffer is completely full are dropped and counted (Dropped).
// After out returns an error, output is discarded and the error is
// reported by Close.
func New(base uint16, irq devices.InterruptLine, out io.Writer) *Serial {
	if out == nil {
		out = io.Discard
	}
	s := &Serial{
		base: base,
		irq:  irq,
		w:    out,
		room: make(chan struct{}, 1),
		done: make(chan struct{}),
		out:  newByteRing(OutputBufferSize),
	}
	s.cond = sync.NewCond(&s.mu)
	s.resetLocked()
	go s.writeLoop()
	return s
}

// Base returns the first port the UART decodes.
func (s *Serial) Base() uint16 { return s.base }

// Close stops accepting output, waits until the writer goroutine has
// written everything already transmitted, and stops it. It returns the
// first error the writer returned, if any. If out can block forever,
// unblock it (for example by closing it) or Close will wait as long.
// The UART keeps working after Close; its output is discarded.
func (s *Serial) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outErr != nil {
		return fmt.Errorf("serial %#x: write output: %w", s.base, s.outErr)
	}
	return nil
}

// Dropped returns how many transmitted bytes were discarded because the
// guest wrote THR while the transmitter reported itself busy and the
// output buffer was full, or after the writer failed or Close.
func (s *Serial) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Err returns the first error the interrupt line reported, if any. The
// UART keeps running after such an error; the machine should report it.
func (s *Serial) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.irqErr
}

// Reset puts the registers back to their power-on values, as the UART's
// reset pin does. Received bytes are discarded; transmitted bytes still
// reach the writer.
func (s *Serial) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

// resetLocked sets the power-on state. Precondition: mu is held.
func (s *Serial) resetLocked() {
	s.ier, s.lcr, s.mcr, s.scr = 0, 0, 0, 0
	s.dll, s.dlm = resetDivisor, 0
	s.fcr, s.lsrErr, s.msrDelta = 0, 0, 0
	s.thrPending = false
	s.clearRX()
	s.updateIRQ()
}

// ReadPort implements devices.PortDevice. A multi-byte access reads
// consecutive registers, as consecutive byte accesses would.
func (s *Serial) ReadPort(port uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		off := int(port) + i - int(s.base)
		if off < 0 || off >= Ports {
			data[i] = 0xff
			continue
		}
		data[i] = s.readReg(off)
	}
}

// WritePort implements devices.PortDevice.
func (s *Serial) WritePort(port uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range data {
		off := int(port) + i - int(s.base)
		if off < 0 || off >= Ports {
			continue
		}
		s.writeReg(off, v)
	}
}

// readReg performs a guest read of one register, with its side effects.
// Precondition: mu is held.
func (s *Serial) readReg(off int) byte {
	switch off {
	case regData:
		if s.lcr&lcrDLAB != 0 {
			return s.dll
		}
		b, ok := s.rx.pop()
		if ok {
			s.signalRoom()
			s.updateIRQ()
		}
		return b
	case regIER:
		if s.lcr&lcrDLAB != 0 {
			return s.dlm
		}
		return s.ier
	case regIIR:
		id := s.pending()
		if id == iirTHRI {
			// Reading IIR while it reports THR empty acknowledges it.
			s.thrPending = false
			s.updateIRQ()
		}
		if s.fcr&fcrEnable != 0 {
			id |= iirFIFOs
		}
		return id
	case regLCR:
		return s.lcr
	case regMCR:
		return s.mcr
	case regLSR:
		v := s.lsr()
		if s.lsrErr != 0 {
			s.lsrErr = 0
			s.updateIRQ()
		}
		return v
	case regMSR:
		v := s.modemInputs() | s.msrDelta
		if s.msrDelta != 0 {
			s.msrDelta = 0
			s.updateIRQ()
		}
		return v
	default: // regSCR
		return s.scr
	}
}

// writeReg performs a guest write of one register. Precondition: mu is held.
func (s *Serial) writeReg(off int, v byte) {
	switch off {
	case regData:
		if s.lcr&lcrDLAB != 0 {
			s.dll = v
			return
		}
		s.transmit(v)
	case regIER:
		if s.lcr&lcrDLAB != 0 {
			s.dlm = v
			return
		}
		s.writeIER(v)
	case regIIR:
		s.writeFCR(v)
	case regLCR:
		s.lcr = v
	case regMCR:
		s.writeMCR(v)
	case regLSR, regMSR:
		// Factory test registers on real parts: writes are ignored.
	default: // regSCR
		s.scr = v
	}
}

// transmit sends one byte written to THR: back into the receiver in
// loopback mode, to the output buffer otherwise. The transmission is
// complete at once, so THR is empty again and the THR-empty interrupt is
// re-armed — unless the output buffer has no room for another FIFO load,
// in which case the writer goroutine re-arms it when it catches up.
// Precondition: mu is held.
func (s *Serial) transmit(v byte) {
	switch {
	case s.mcr&mcrLoop != 0:
		if !s.rx.push(v, s.rxCapacity()) {
			s.lsrErr |= lsrOE
		}
	case s.closed || s.outErr != nil || s.out.free() == 0:
		s.dropped++
	default:
		s.out.write([]byte{v})
		s.cond.Signal()
	}
	s.thrPending = s.txReady()
	s.updateIRQ()
}

// writeIER sets the interrupt enables. Enabling the THR-empty interrupt
// while THR is empty raises it even if an earlier one was acknowledged:
// real 16550s do this and Linux's THRE and TXEN probes depend on it.
// Precondition: mu is held.
func (s *Serial) writeIER(v byte) {
	v &= ierMask
	changed := s.ier ^ v
	s.ier = v
	if changed&ierTHRI != 0 {
		s.thrPending = v&ierTHRI != 0 && s.txReady()
	}
	if changed&ierRDI != 0 && s.listening() {
		s.signalRoom() // Pump holds input until a driver listens
	}
	s.updateIRQ()
}

// writeFCR handles a FIFO control write. Changing the enable bit empties
// both FIFOs, as do the self-clearing reset bits. Precondition: mu is held.
func (s *Serial) writeFCR(v byte) {
	switch {
	case v&fcrEnable == 0:
		// Leaving FIFO mode empties the FIFOs; with the enable bit clear
		// the other bits are not programmed.
		if s.fcr&fcrEnable != 0 {
			s.clearRX()
		}
		s.fcr = 0
	default:
		if s.fcr&fcrEnable == 0 || v&fcrClearRX != 0 {
			s.clearRX()
		}
		// The transmit FIFO is always empty: bytes leave as they are
		// written, so its reset bit has nothing to do.
		s.fcr = v & (fcrEnable | fcrDMA | fcrTrigger)
		if s.listening() {
			s.signalRoom()
		}
	}
	s.updateIRQ()
}

// clearRX empties the receive FIFO. Precondition: mu is held.
func (s *Serial) clearRX() {
	s.rx.clear()
	s.signalRoom()
}

// writeMCR sets the modem control outputs. In loopback mode they drive
// the modem status inputs, so changing them latches MSR deltas.
// Precondition: mu is held.
func (s *Serial) writeMCR(v byte) {
	before := s.modemInputs()
	wasLoop := s.mcr&mcrLoop != 0
	s.mcr = v & mcrMask
	s.latchModemDeltas(before, s.modemInputs())
	if wasLoop && s.mcr&mcrLoop == 0 || s.listening() {
		// The host end is connected to the receiver again, or a driver
		// may have just started listening.
		s.signalRoom()
	}
	s.updateIRQ()
}

// modemInputs returns the MSR's high nibble: the outputs looped back in
// loopback mode (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD), the host's
// idle line otherwise. Precondition: mu is held.
func (s *Serial) modemInputs() byte {
	if s.mcr&mcrLoop == 0 {
		return msrIdle
	}
	var v byte
	if s.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if s.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if s.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if s.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// latchModemDeltas records which modem inputs changed. RI latches only
// its trailing edge. Precondition: mu is held.
func (s *Serial) latchModemDeltas(before, after byte) {
	changed := before ^ after
	if changed&msrCTS != 0 {
		s.msrDelta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		s.msrDelta |= msrDDSR
	}
	if before&msrRI != 0 && after&msrRI == 0 {
		s.msrDelta |= msrTERI
	}
	if changed&msrDCD != 0 {
		s.msrDelta |= msrDDCD
	}
}

// lsr returns the line status. Precondition: mu is held.
func (s *Serial) lsr() byte {
	v := s.lsrErr
	if s.rx.n > 0 {
		v |= lsrDR
	}
	if s.txReady() {
		v |= lsrTHRE | lsrTEMT
	}
	return v
}

// txReady reports whether THR is empty: always in loopback, otherwise
// when the output buffer has room for a whole FIFO load, so that a driver
// that writes FIFOSize bytes per THRE, as Linux does, never overflows it.
// Precondition: mu is held.
func (s *Serial) txReady() bool {
	if s.mcr&mcrLoop != 0 || s.closed || s.outErr != nil {
		return true
	}
	return s.out.free() >= FIFOSize
}

// rxCapacity is the receive FIFO depth: 16 with the FIFOs enabled, the
// single holding register without. Precondition: mu is held.
func (s *Serial) rxCapacity() int {
	if s.fcr&fcrEnable != 0 {
		return FIFOSize
	}
	return 1
}

// rxTrigger returns the receive FIFO trigger level from FCR.
// Precondition: mu is held.
func (s *Serial) rxTrigger() int {
	return [4]int{1, 4, 8, 14}[s.fcr>>6]
}

// pending returns the IIR identification of the highest-priority enabled
// interrupt, or iirNone. Data below the FIFO trigger level is reported as
// a character timeout at once: the line is idle whenever the guest looks,
// since the host delivers input in bursts. Precondition: mu is held.
func (s *Serial) pending() byte {
	switch {
	case s.ier&ierRLSI != 0 && s.lsrErr != 0:
		return iirRLSI
	case s.ier&ierRDI != 0 && s.rx.n > 0:
		if s.fcr&fcrEnable != 0 && s.rx.n < s.rxTrigger() {
			return iirTimeout
		}
		return iirRDI
	case s.ier&ierTHRI != 0 && s.thrPending:
		return iirTHRI
	case s.ier&ierMSI != 0 && s.msrDelta != 0:
		return iirMSI
	}
	return iirNone
}

// updateIRQ drives the interrupt line from the current state: high while
// an enabled interrupt is pending and the OUT2 output enables the PC's
// interrupt buffer. In loopback mode the 16550 forces its OUT2 pin
// inactive, so the line is low then. Precondition: mu is held (so that
// level changes reach the line in the order they happen).
func (s *Serial) updateIRQ() {
	level := s.wantIRQ()
	if level == s.irqLevel {
		return
	}
	s.irqLevel = level
	if s.irq == nil {
		return
	}
	if err := s.irq.SetLevel(level); err != nil && s.irqErr == nil {
		s.irqErr = fmt.Errorf("serial %#x: set interrupt level %v: %w", s.base, level, err)
	}
}

// wantIRQ reports the level the interrupt line should have.
// Precondition: mu is held.
func (s *Serial) wantIRQ() bool {
	return s.pending() != iirNone && s.mcr&(mcrOUT2|mcrLoop) == mcrOUT2
}

// signalRoom tells a waiting Pump that receive FIFO space may be free.
// Precondition: mu is held.
func (s *Serial) signalRoom() {
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// Enqueue puts as much of p into the receive FIFO as fits and returns how
// many bytes it took, raising the receive interrupt if enabled. It takes
// nothing in loopback mode, where the receiver listens to the transmitter.
func (s *Serial) Enqueue(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enqueueLocked(p)
}

// enqueueLocked is Enqueue. Precondition: mu is held.
func (s *Serial) enqueueLocked(p []byte) int {
	if s.mcr&mcrLoop != 0 {
		return 0
	}
	n := 0
	for n < len(p) && s.rx.push(p[n], s.rxCapacity()) {
		n++
	}
	if n > 0 {
		s.updateIRQ()
	}
	return n
}

// listening reports whether a driver is receiving with interrupts in
// FIFO mode: the receive-data interrupt enabled and routed (MCR.OUT2, the
// PC's IRQ gate) and the FIFOs on. Linux's 8250 driver reaches that state
// only when it has finished opening the port: its probe enables every IER
// bit for a moment with OUT2 clear; opening resets the FIFOs, drains the
// receiver, enables the interrupt with the FIFOs off and then turns them
// on, which on a 16550A discards what they held.
// Precondition: mu is held.
func (s *Serial) listening() bool {
	return s.ier&ierRDI != 0 && s.mcr&(mcrOUT2|mcrLoop) == mcrOUT2 && s.fcr&fcrEnable != 0
}

// offer is Pump's Enqueue: it takes input only while a driver is
// listening, so input typed before the guest opened its console is not
// thrown away by the driver's own start-up, but arrives once it has.
func (s *Serial) offer(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listening() {
		return 0
	}
	return s.enqueueLocked(p)
}

// Pump feeds r into the receive FIFO as the guest drains it, until r
// returns io.EOF (Pump returns nil), another error (returned, wrapped) or
// ctx is done (ctx.Err()). Input waits while the guest has the receive
// interrupt disabled (see offer). It never polls: while the FIFO is full
// or the interrupt is off it sleeps until the guest reads RBR, resets the
// FIFO, leaves loopback or enables the interrupt,
// and it reads no further ahead of the guest than one small buffer, so a
// guest that never reads costs neither CPU nor memory. ctx is checked
// while waiting for the guest; a Read blocked in r returns only when r
// does (close r to end it). Run at most one Pump per UART.
func (s *Serial) Pump(ctx context.Context, r io.Reader) error {
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			p = p[s.offer(p):]
			if len(p) == 0 {
				break
			}
			select {
			case <-s.room:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("serial %#x: read input: %w", s.base, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// writeLoop hands buffered output to the writer, outside the lock, until
// Close. Freeing buffer space may make THR empty again, which re-arms the
// THR-empty interrupt.
func (s *Serial) writeLoop() {
	defer close(s.done)
	chunk := make([]byte, outputChunk)
	var last time.Time // when the writer was last handed output
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for s.out.len() == 0 && !s.closed {
			s.cond.Wait()
		}
		if s.out.len() == 0 {
			return // closed and flushed
		}
		if wait := outputCoalesce - time.Since(last); wait > 0 && s.out.len() < outputChunk && !s.closed {
			// In a burst, let output accumulate: a guest writes its
			// console a byte per exit, and waking this goroutine (and the
			// writer) for every byte costs a context switch each. The
			// first byte after a quiet spell goes out at once.
			s.mu.Unlock()
			time.Sleep(wait)
			s.mu.Lock()
		}
		last = time.Now()
		wasReady := s.txReady()
		n := s.out.read(chunk)
		s.rearm(wasReady)
		s.mu.Unlock()
		_, err := s.w.Write(chunk[:n])
		s.mu.Lock()
		if err != nil && s.outErr == nil {
			wasReady := s.txReady()
			s.outErr = err
			s.dropped += uint64(s.out.len())
			s.out.reset()
			s.rearm(wasReady)
		}
	}
}

// rearm raises the THR-empty interrupt if THR has just become empty
// (the transmitter was busy and is not any more) and it is enabled.
// Precondition: mu is held.
func (s *Serial) rearm(wasReady bool) {
	if !wasReady && s.txReady() && s.ier&ierTHRI != 0 {
		s.thrPending = true
		s.updateIRQ()
	}
}

// rxFIFO is the receive FIFO.
type rxFIFO struct {
	buf  [FIFOSize]byte
	head int // index of the oldest byte
	n    int
}

// push appends b unless the FIFO holds capacity bytes already.
func (f *rxFIFO) push(b byte, capacity int) bool {
	if f.n >= capacity {
		return false
	}
	f.buf[(f.head+f.n)%FIFOSize] = b
	f.n++
	return true
}

// pop removes the oldest byte; an empty FIFO reads as 0.
func (f *rxFIFO) pop() (byte, bool) {
	if f.n == 0 {
		return 0, false
	}
	b := f.buf[f.head]
	f.head = (f.head + 1) % FIFOSize
	f.n--
	return b, true
}

func (f *rxFIFO) clear() { f.head, f.n = 0, 0 }

// bytes returns the FIFO's contents, oldest first.
func (f *rxFIFO) bytes() []byte {
	out := make([]byte, f.n)
	for i := range out {
		out[i] = f.buf[(f.head+i)%FIFOSize]
	}
	return out
}

// byteRing is a fixed-capacity FIFO of bytes.
type byteRing struct {
	buf  []byte
	head int
	n    int
}

func newByteRing(capacity int) byteRing { return byteRing{buf: make([]byte, capacity)} }

func (r *byteRing) len() int  { return r.n }
func (r *byteRing) free() int { return len(r.buf) - r.n }
func (r *byteRing) reset()    { r.head, r.n = 0, 0 }

// write appends as much of p as fits and returns how much that was.
func (r *byteRing) write(p []byte) int {
	k := min(len(p), r.free())
	for i := 0; i < k; {
		tail := (r.head + r.n) % len(r.buf)
		c := copy(r.buf[tail:min(len(r.buf), tail+k-i)], p[i:k])
		i += c
		r.n += c
	}
	return k
}

// read moves up to len(p) of the oldest bytes into p.
func (r *byteRing) read(p []byte) int {
	k := min(len(p), r.n)
	for i := 0; i < k; {
		c := copy(p[i:k], r.buf[r.head:min(len(r.buf), r.head+k-i)])
		i += c
		r.head = (r.head + c) % len(r.buf)
		r.n -= c
	}
	return k
}
