package serial

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

// lockedBuffer is a writer the test can read while the UART writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// guest drives a UART's registers as a driver does, by offset.
type guest struct {
	t *testing.T
	s *Serial
}

func (g guest) in(off int) byte {
	var b [1]byte
	g.s.ReadPort(g.s.Base()+uint16(off), b[:])
	return b[0]
}

func (g guest) out(off int, v byte) {
	g.s.WritePort(g.s.Base()+uint16(off), []byte{v})
}

// putc writes one byte the way Linux's console does: wait for THRE, then
// write THR.
func (g guest) putc(c byte) {
	for g.in(regLSR)&lsrTHRE == 0 {
	}
	g.out(regData, c)
}

func newUART(t *testing.T, out io.Writer) (guest, *devicestest.Line) {
	t.Helper()
	l := devicestest.NewLine()
	s := New(COM1Port, l, out)
	t.Cleanup(func() { s.Close() })
	return guest{t, s}, l
}

func TestTransmitReachesWriter(t *testing.T) {
	big := make([]byte, 2*OutputBufferSize+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"text", []byte("Linux version 6.1.0 (paddock)\r\n")},
		{"all byte values", func() []byte {
			b := make([]byte, 256)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}()},
		{"more than the output buffer", big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out lockedBuffer
			g, _ := newUART(t, &out)
			g.out(regLCR, 0x03) // 8N1
			for _, c := range tc.data {
				g.putc(c)
			}
			if err := g.s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := out.String(); got != string(tc.data) {
				t.Fatalf("writer got %d bytes, want %d (first difference at %d)", len(got), len(tc.data), firstDiff([]byte(got), tc.data))
			}
			if d := g.s.Dropped(); d != 0 {
				t.Fatalf("Dropped = %d, want 0 for a guest that honours THRE", d)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestLinuxAutoconfig replays the register sequence of autoconfig(),
// autoconfig_16550a() and size_fifo() in Linux's
// drivers/tty/serial/8250/8250_port.c and checks that each test comes
// out the way that makes Linux report a 16550A with a 16-byte FIFO.
func TestLinuxAutoconfig(t *testing.T) {
	var out lockedBuffer
	g, l := newUART(t, &out)
	const (
		lcrConfModeA = 0x80
		lcrConfModeB = 0xbf
	)

	// IER existence test.
	scratch := g.in(regIER)
	g.out(regIER, 0)
	scratch2 := g.in(regIER) & 0x0f
	g.out(regIER, 0x0f)
	scratch3 := g.in(regIER) & 0x0f
	g.out(regIER, scratch)
	if scratch2 != 0 || scratch3 != 0x0f {
		t.Fatalf("IER test failed (%02x, %02x)", scratch2, scratch3)
	}

	// Loopback test.
	saveMCR := g.in(regMCR)
	saveLCR := g.in(regLCR)
	g.out(regMCR, mcrLoop|0x0a)
	status1 := g.in(regMSR) & 0xf0
	g.out(regMCR, saveMCR)
	if status1 != 0x90 {
		t.Fatalf("LOOP test failed (%02x)", status1)
	}

	// FIFO type from the IIR's top bits (the "EFR" write lands on FCR).
	g.out(regLCR, lcrConfModeB)
	g.out(regIIR, 0)
	g.out(regLCR, 0)
	g.out(regIIR, fcrEnable)
	if got := g.in(regIIR) >> 6; got != 3 {
		t.Fatalf("IIR>>6 = %d, want 3 (16550A)", got)
	}

	// autoconfig_16550a: no EFR with DLAB, none with LCR=0xbf.
	g.out(regLCR, lcrConfModeA)
	if g.in(regIIR) == 0 {
		t.Fatal("EFR with DLAB reads 0: Linux would take this for an ST16C650V1")
	}
	g.out(regLCR, lcrConfModeB)
	if g.in(regIIR) == 0 {
		t.Fatal("EFR with LCR=0xbf reads 0: Linux would take this for an EFR UART")
	}
	// National Semiconductor SuperIO test: EXCR1 must not follow MCR.LOOP.
	g.out(regLCR, 0)
	st1 := g.in(regMCR)
	g.out(regLCR, 0xe0)
	st2 := g.in(regIIR)
	if (st2^st1)&mcrLoop == 0 {
		g.out(regLCR, 0)
		g.out(regMCR, st1^mcrLoop)
		g.out(regLCR, 0xe0)
		st2 = g.in(regIIR)
		g.out(regLCR, 0)
		g.out(regMCR, st1)
		if (st2^st1)&mcrLoop != 0 {
			t.Fatal("EXCR1 follows MCR.LOOP: Linux would take this for an NS16550A")
		}
	}
	// TI16750 test: IIR bit 5 must not report a 64-byte FIFO.
	g.out(regLCR, 0)
	g.out(regIIR, fcrEnable|0x20)
	s1 := g.in(regIIR) >> 5
	g.out(regIIR, fcrEnable)
	g.out(regLCR, lcrConfModeA)
	g.out(regIIR, fcrEnable|0x20)
	s2 := g.in(regIIR) >> 5
	g.out(regIIR, fcrEnable)
	g.out(regLCR, 0)
	if s1 == 6 && s2 == 7 {
		t.Fatal("UART passes the TI16750 test")
	}
	// XScale test: IER bit 6 (UUE) must not stick.
	iersave := g.in(regIER)
	g.out(regIER, iersave&^0x40)
	if g.in(regIER)&0x40 != 0 {
		t.Fatal("IER.UUE cannot be cleared")
	}
	g.out(regIER, iersave|0x40)
	if g.in(regIER)&0x40 != 0 {
		t.Fatal("IER.UUE sticks: Linux would take this for an XScale UART")
	}
	g.out(regIER, iersave)

	// size_fifo: 256 bytes into a loopback UART; count what arrives.
	oldLCR := g.in(regLCR)
	g.out(regLCR, 0)
	oldFCR := g.in(regIIR)
	oldMCR := g.in(regMCR)
	g.out(regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	g.out(regMCR, mcrLoop)
	g.out(regLCR, lcrConfModeA)
	oldDL := uint16(g.in(regData)) | uint16(g.in(regIER))<<8
	g.out(regData, 1)
	g.out(regIER, 0)
	g.out(regLCR, 0x03)
	for c := range 256 {
		g.out(regData, byte(c))
	}
	count := 0
	for ; g.in(regLSR)&lsrDR != 0 && count < 256; count++ {
		if got := g.in(regData); got != byte(count) {
			t.Fatalf("loopback byte %d = %#x, want %#x", count, got, count)
		}
	}
	g.out(regIIR, oldFCR)
	g.out(regMCR, oldMCR)
	g.out(regLCR, lcrConfModeA)
	g.out(regData, byte(oldDL))
	g.out(regIER, byte(oldDL>>8))
	g.out(regLCR, oldLCR)
	if count != FIFOSize {
		t.Fatalf("size_fifo counted %d bytes, want %d", count, FIFOSize)
	}

	// The tail of autoconfig: restore LCR and MCR, clear the FIFOs.
	g.out(regLCR, saveLCR)
	g.out(regMCR, saveMCR)
	g.out(regIIR, fcrEnable)
	g.out(regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	g.out(regIIR, 0)
	g.in(regData)
	g.out(regIER, 0)

	if err := g.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if out.String() != "" {
		t.Fatalf("loopback traffic leaked to the host: %q", out.String())
	}
	if l.High() {
		t.Fatal("IRQ line high after the probe, with interrupts disabled")
	}
}

// TestLinuxStartupTHRE replays serial8250_do_startup()'s two THRE probes:
// a UART that fails them gets Linux's UART_BUG_THRE or UART_BUG_TXEN
// workarounds (a polling timer), which a VM must not need.
func TestLinuxStartupTHRE(t *testing.T) {
	g, l := newUART(t, nil)
	// Clear the FIFOs and the interrupt registers.
	g.out(regIIR, fcrEnable)
	g.out(regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	g.out(regIIR, 0)
	g.in(regLSR)
	g.in(regData)
	g.in(regIIR)
	g.in(regMSR)
	if g.in(regLSR) == 0xff {
		t.Fatal("LSR safety check engaged")
	}

	// UART_BUG_THRE probe.
	for g.in(regLSR)&lsrTHRE == 0 {
	}
	g.out(regIER, ierTHRI)
	iir1 := g.in(regIIR)
	g.out(regIER, 0)
	g.out(regIER, ierTHRI)
	iir := g.in(regIIR)
	g.out(regIER, 0)
	if iir1&iirNone == 0 && iir&iirNone != 0 {
		t.Fatalf("THRE not re-asserted (iir1 %#x, iir %#x): Linux would set UART_BUG_THRE", iir1, iir)
	}
	if iir1&0x0f != iirTHRI || iir&0x0f != iirTHRI {
		t.Fatalf("IIR = %#x then %#x, want THR empty (%#x) both times", iir1, iir, iirTHRI)
	}

	// Initialise: 8N1, DTR|RTS|OUT2 as set_mctrl does.
	g.out(regLCR, 0x03)
	g.out(regMCR, mcrDTR|mcrRTS|mcrOUT2)

	// UART_BUG_TXEN probe.
	g.out(regIER, ierTHRI)
	if !l.High() {
		t.Fatal("enabling THRI with THR empty and OUT2 set did not raise the IRQ")
	}
	lsr := g.in(regLSR)
	iir = g.in(regIIR)
	g.out(regIER, 0)
	if lsr&lsrTEMT != 0 && iir&iirNone != 0 {
		t.Fatal("no THRE interrupt on enabling THRI: Linux would set UART_BUG_TXEN")
	}
	if l.High() {
		t.Fatal("IRQ line still high after IIR acknowledged THRE and THRI was disabled")
	}
}

func TestTHREInterrupt(t *testing.T) {
	type step struct {
		do       func(g guest)
		wantIIR  byte // IIR low nibble on the read that follows, if checkIIR
		checkIIR bool
		wantIRQ  bool
	}
	enable := func(g guest) { g.out(regMCR, mcrOUT2); g.out(regIER, ierTHRI) }
	readIIR := func(g guest) {}
	tests := []struct {
		name  string
		steps []step
	}{
		{"raised when enabled with THR empty, cleared by reading IIR", []step{
			{do: enable, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI, wantIRQ: false},
			{do: readIIR, checkIIR: true, wantIIR: iirNone, wantIRQ: false},
		}},
		{"re-armed by writing THR", []step{
			{do: enable, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI},
			{do: func(g guest) { g.out(regData, 'x') }, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI},
		}},
		{"not raised while IER.THRI stays set", []step{
			{do: enable, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI},
			{do: func(g guest) { g.out(regIER, ierTHRI) }, wantIRQ: false},
		}},
		{"re-raised by toggling IER.THRI", []step{
			{do: enable, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI},
			{do: func(g guest) { g.out(regIER, 0); g.out(regIER, ierTHRI) }, wantIRQ: true},
		}},
		{"gated by OUT2", []step{
			{do: func(g guest) { g.out(regIER, ierTHRI) }, wantIRQ: false},
			{do: func(g guest) { g.out(regMCR, mcrOUT2) }, wantIRQ: true},
			{do: func(g guest) { g.out(regMCR, 0) }, wantIRQ: false},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI, wantIRQ: false},
		}},
		{"reading IIR for a higher-priority cause keeps THRE pending", []step{
			{do: func(g guest) { enable(g); g.out(regIER, ierTHRI|ierRDI); g.s.Enqueue([]byte{'a'}) }, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirRDI, wantIRQ: true},
			{do: func(g guest) { g.in(regData) }, wantIRQ: true},
			{do: readIIR, checkIIR: true, wantIIR: iirTHRI, wantIRQ: false},
		}},
		{"disabling THRI drops the interrupt", []step{
			{do: enable, wantIRQ: true},
			{do: func(g guest) { g.out(regIER, 0) }, wantIRQ: false},
			{do: readIIR, checkIIR: true, wantIIR: iirNone},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, l := newUART(t, nil)
			for i, st := range tc.steps {
				st.do(g)
				if st.checkIIR {
					if got := g.in(regIIR) & 0x0f; got != st.wantIIR {
						t.Fatalf("step %d: IIR = %#x, want %#x", i, got, st.wantIIR)
					}
				}
				if got := l.High(); got != st.wantIRQ {
					t.Fatalf("step %d: IRQ line high = %v, want %v", i, got, st.wantIRQ)
				}
			}
		})
	}
}

func TestReceiveInterrupt(t *testing.T) {
	tests := []struct {
		name    string
		fcr     byte
		input   string
		wantN   int
		wantIIR byte
	}{
		{"16450 mode holds one byte", 0, "abc", 1, iirRDI},
		{"FIFO trigger 1", fcrEnable, "abc", 3, iirRDI},
		{"below trigger 8 reports a timeout", fcrEnable | 0x80, "abc", 3, iirTimeout},
		{"at trigger 8", fcrEnable | 0x80, "abcdefgh", 8, iirRDI},
		{"FIFO full at trigger 14", fcrEnable | 0xc0, "0123456789abcdefXYZ", FIFOSize, iirRDI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, l := newUART(t, nil)
			g.out(regIIR, tc.fcr)
			g.out(regMCR, mcrOUT2)
			g.out(regIER, ierRDI)
			if l.High() {
				t.Fatal("IRQ high before any input")
			}
			n := g.s.Enqueue([]byte(tc.input))
			if n != tc.wantN {
				t.Fatalf("Enqueue took %d bytes, want %d", n, tc.wantN)
			}
			if !l.High() {
				t.Fatal("IRQ not raised by received data")
			}
			iir := g.in(regIIR)
			if iir&0x0f != tc.wantIIR {
				t.Fatalf("IIR = %#x, want %#x", iir, tc.wantIIR)
			}
			if fifo := iir&iirFIFOs == iirFIFOs; fifo != (tc.fcr&fcrEnable != 0) {
				t.Fatalf("IIR FIFO bits %#x with FCR %#x", iir&iirFIFOs, tc.fcr)
			}
			var got []byte
			for g.in(regLSR)&lsrDR != 0 {
				got = append(got, g.in(regData))
			}
			if string(got) != tc.input[:n] {
				t.Fatalf("guest read %q, want %q", got, tc.input[:n])
			}
			if l.High() {
				t.Fatal("IRQ still high after the FIFO was drained")
			}
		})
	}
}

func TestOverflowPolicy(t *testing.T) {
	t.Run("host input waits for room", func(t *testing.T) {
		g, _ := newUART(t, nil)
		g.out(regIIR, fcrEnable)
		if n := g.s.Enqueue(make([]byte, 40)); n != FIFOSize {
			t.Fatalf("Enqueue took %d, want %d", n, FIFOSize)
		}
		if n := g.s.Enqueue([]byte{1}); n != 0 {
			t.Fatalf("Enqueue into a full FIFO took %d", n)
		}
		if g.in(regLSR)&lsrOE != 0 {
			t.Fatal("host input that was refused set the overrun error")
		}
	})
	t.Run("loopback overrun sets OE and the line status interrupt", func(t *testing.T) {
		g, _ := newUART(t, nil)
		g.out(regIIR, fcrEnable)
		g.out(regMCR, mcrLoop)
		g.out(regIER, ierRLSI|ierRDI)
		for c := range FIFOSize + 1 {
			g.out(regData, byte(c))
		}
		if g.s.Enqueue([]byte{1}) != 0 {
			t.Fatal("Enqueue took host input in loopback mode")
		}
		if iir := g.in(regIIR) & 0x0f; iir != iirRLSI {
			t.Fatalf("IIR = %#x, want line status %#x", iir, iirRLSI)
		}
		if lsr := g.in(regLSR); lsr&(lsrOE|lsrDR) != lsrOE|lsrDR {
			t.Fatalf("LSR = %#x, want OE and DR", lsr)
		}
		if lsr := g.in(regLSR); lsr&lsrOE != 0 {
			t.Fatalf("LSR = %#x: reading LSR did not clear OE", lsr)
		}
		if iir := g.in(regIIR) & 0x0f; iir != iirRDI {
			t.Fatalf("IIR = %#x after OE was read, want %#x", iir, iirRDI)
		}
		for c := range FIFOSize {
			if got := g.in(regData); got != byte(c) {
				t.Fatalf("byte %d = %d: the FIFO kept the wrong bytes", c, got)
			}
		}
	})
	t.Run("stuck host writer: THRE clears, then re-arms", func(t *testing.T) {
		w := newGateWriter()
		g, l := newUART(t, w)
		t.Cleanup(w.release) // before Close, which waits for the writer
		g.out(regMCR, mcrOUT2)
		g.out(regData, 0)
		<-w.entered // the writer goroutine holds byte 0 and is stuck
		sent := 1
		for g.in(regLSR)&lsrTHRE != 0 {
			g.out(regData, byte(sent))
			sent++
		}
		// THRE clears as soon as a FIFO load no longer fits the buffer.
		if want := 1 + OutputBufferSize - (FIFOSize - 1); sent != want {
			t.Fatalf("transmitter went busy after %d bytes, want %d", sent, want)
		}
		if g.in(regLSR)&lsrTEMT != 0 {
			t.Fatal("TEMT set while the transmitter is busy")
		}
		g.out(regIER, ierTHRI)
		if l.High() {
			t.Fatal("THRE interrupt while the transmitter is busy")
		}
		// A guest that ignores THRE fills the buffer, then loses bytes.
		for range FIFOSize - 1 + 5 {
			g.out(regData, byte(sent))
			sent++
		}
		if d := g.s.Dropped(); d != 5 {
			t.Fatalf("Dropped = %d, want 5", d)
		}
		w.release()
		l.Wait(true) // the writer drained: THRE interrupt
		if iir := g.in(regIIR) & 0x0f; iir != iirTHRI {
			t.Fatalf("IIR = %#x after the writer caught up, want THRE", iir)
		}
		if err := g.s.Close(); err != nil {
			t.Fatal(err)
		}
		if got, want := w.n(), sent-5; got != want {
			t.Fatalf("writer got %d bytes, want %d", got, want)
		}
	})
}

// gateWriter blocks every Write until released; entered is closed when
// the first Write begins.
type gateWriter struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
	first   sync.Once
	mu      sync.Mutex
	total   int
}

func newGateWriter() *gateWriter {
	return &gateWriter{entered: make(chan struct{}), open: make(chan struct{})}
}

func (w *gateWriter) release() { w.once.Do(func() { close(w.open) }) }

func (w *gateWriter) Write(p []byte) (int, error) {
	w.first.Do(func() { close(w.entered) })
	<-w.open
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total += len(p)
	return len(p), nil
}

func (w *gateWriter) n() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

func TestWriterError(t *testing.T) {
	werr := errors.New("console gone")
	g, _ := newUART(t, failWriter{werr})
	for _, c := range []byte("lost") {
		g.putc(c)
	}
	err := g.s.Close()
	if !errors.Is(err, werr) {
		t.Fatalf("Close = %v, want it to wrap %v", err, werr)
	}
	// The guest keeps a working, if mute, UART.
	g.putc('x')
	if g.in(regLSR)&lsrTHRE == 0 {
		t.Fatal("THRE stuck clear after the writer failed")
	}
}

type failWriter struct{ err error }

func (w failWriter) Write(p []byte) (int, error) { return 0, w.err }

func TestModemStatus(t *testing.T) {
	tests := []struct {
		name       string
		mcr        byte
		wantInputs byte
		wantDeltas byte
	}{
		{"idle line outside loopback", mcrDTR | mcrRTS | mcrOUT2, msrIdle, 0},
		{"loopback RTS|OUT2 (Linux's probe)", mcrLoop | mcrRTS | mcrOUT2, msrCTS | msrDCD, msrDDSR},
		{"loopback all outputs", mcrLoop | mcrDTR | mcrRTS | mcrOUT1 | mcrOUT2, msrCTS | msrDSR | msrRI | msrDCD, 0},
		{"loopback none", mcrLoop, 0, msrDCTS | msrDDSR | msrDDCD},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := newUART(t, nil)
			g.out(regMCR, tc.mcr)
			msr := g.in(regMSR)
			if msr&0xf0 != tc.wantInputs || msr&msrDeltas != tc.wantDeltas {
				t.Fatalf("MSR = %#x, want inputs %#x deltas %#x", msr, tc.wantInputs, tc.wantDeltas)
			}
			if again := g.in(regMSR); again&msrDeltas != 0 {
				t.Fatalf("MSR = %#x: reading MSR did not clear the deltas", again)
			}
			if got := g.in(regMCR); got != tc.mcr {
				t.Fatalf("MCR reads %#x, want %#x", got, tc.mcr)
			}
		})
	}
	t.Run("trailing edge of RI and the modem status interrupt", func(t *testing.T) {
		g, l := newUART(t, nil)
		g.out(regMCR, mcrLoop|mcrOUT1)
		g.in(regMSR)
		g.out(regIER, ierMSI)
		g.out(regMCR, mcrLoop)
		if msr := g.in(regMSR); msr&msrTERI == 0 {
			t.Fatalf("MSR = %#x, want TERI after RI fell", msr)
		}
		g.out(regMCR, mcrOUT2) // leave loopback: inputs change to the idle line
		if iir := g.in(regIIR) & 0x0f; iir != iirMSI {
			t.Fatalf("IIR = %#x, want modem status %#x", iir, iirMSI)
		}
		if !l.High() {
			t.Fatal("modem status interrupt not on the line")
		}
		g.in(regMSR)
		if l.High() {
			t.Fatal("line still high after MSR was read")
		}
	})
}

func TestDivisorLatch(t *testing.T) {
	g, _ := newUART(t, nil)
	g.out(regIER, ierRDI)
	g.s.Enqueue([]byte{'q'})
	g.out(regLCR, lcrDLAB|0x03)
	g.out(regData, 0x01)
	g.out(regIER, 0x02)
	if dll, dlm := g.in(regData), g.in(regIER); dll != 0x01 || dlm != 0x02 {
		t.Fatalf("divisor reads %#x/%#x, want 0x01/0x02", dll, dlm)
	}
	g.out(regLCR, 0x03)
	if ier := g.in(regIER); ier != ierRDI {
		t.Fatalf("IER = %#x after divisor writes, want %#x", ier, ierRDI)
	}
	if c := g.in(regData); c != 'q' {
		t.Fatalf("RBR = %q after divisor access, want 'q'", c)
	}
	g.out(regSCR, 0xa5)
	if v := g.in(regSCR); v != 0xa5 {
		t.Fatalf("SCR = %#x, want 0xa5", v)
	}
}

// TestPump feeds a large input through Pump while a guest goroutine
// drains the FIFO from its interrupt handler, and checks every byte
// arrives exactly once and in order.
func TestPump(t *testing.T) {
	input := make([]byte, 1<<18)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range input {
		input[i] = byte(rng.Uint32())
	}
	g, l := newUART(t, nil)
	g.out(regIIR, fcrEnable|0x80) // trigger at 8, as Linux programs it
	g.out(regMCR, mcrOUT2)
	g.out(regIER, ierRDI|ierRLSI)

	got := make([]byte, 0, len(input))
	guestDone := make(chan struct{})
	go func() {
		defer close(guestDone)
		for len(got) < len(input) {
			l.Wait(true)
			if g.in(regIIR)&iirNone != 0 {
				continue
			}
			for lsr := g.in(regLSR); lsr&lsrDR != 0; lsr = g.in(regLSR) {
				if lsr&lsrOE != 0 {
					t.Errorf("overrun after %d bytes", len(got))
				}
				got = append(got, g.in(regData))
			}
		}
	}()
	err := g.s.Pump(context.Background(), iotestHalfReader{bytes.NewReader(input)})
	if err != nil {
		t.Fatalf("Pump: %v", err)
	}
	<-guestDone
	if !bytes.Equal(got, input) {
		t.Fatalf("guest read %d bytes, differing from the input at %d", len(got), firstDiff(got, input))
	}
}

// iotestHalfReader returns at most half of what it is asked for, so that
// Pump sees many short reads.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	return h.r.Read(p[:(len(p)+1)/2])
}

// TestPumpIdleGuest checks that a guest that never reads costs nothing:
// Pump reads only a bounded amount ahead and returns when cancelled.
func TestPumpIdleGuest(t *testing.T) {
	g, _ := newUART(t, nil)
	g.out(regIIR, fcrEnable)
	g.out(regMCR, mcrOUT2)
	g.out(regIER, ierRDI)
	r := &countingReader{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.s.Pump(ctx, r) }()
	// Wait until the FIFO is full: then Pump must be blocked on the guest.
	for g.in(regLSR)&lsrDR == 0 || len(g.s.Save().RX) < FIFOSize {
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pump = %v, want context.Canceled", err)
	}
	if n := r.total(); n > FIFOSize+256 {
		t.Fatalf("Pump read %d bytes ahead of a guest that never reads", n)
	}
}

// countingReader is an endless source of 'z' that counts what it gave.
type countingReader struct {
	mu sync.Mutex
	n  int
}

func (r *countingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		p[i] = 'z'
	}
	r.n += len(p)
	return len(p), nil
}

func (r *countingReader) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func TestSaveRestore(t *testing.T) {
	g, _ := newUART(t, nil)
	g.out(regIIR, fcrEnable|0x40)
	g.out(regLCR, lcrDLAB)
	g.out(regData, 0x34)
	g.out(regIER, 0x12)
	g.out(regLCR, 0x1b)
	g.out(regMCR, mcrDTR|mcrOUT2)
	g.out(regSCR, 0x77)
	g.out(regIER, ierRDI|ierTHRI)
	g.s.Enqueue([]byte("saved"))
	st := g.s.Save()

	h, l := newUART(t, nil)
	if err := h.s.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !l.High() {
		t.Fatal("Restore did not drive the pending interrupt onto the line")
	}
	if got := h.s.Save(); !equalState(got, st) {
		t.Fatalf("state after restore = %+v, want %+v", got, st)
	}
	var got []byte
	for h.in(regLSR)&lsrDR != 0 {
		got = append(got, h.in(regData))
	}
	if string(got) != "saved" {
		t.Fatalf("restored FIFO reads %q", got)
	}

	bad := []struct {
		name string
		mod  func(*State)
	}{
		{"IER high bits", func(s *State) { s.IER = 0x40 }},
		{"MCR high bits", func(s *State) { s.MCR = 0x80 }},
		{"FCR without enable", func(s *State) { s.FCR = 0x80 }},
		{"LSR non-error bits", func(s *State) { s.LSRErrors = lsrDR }},
		{"MSR input bits", func(s *State) { s.MSRDeltas = msrCTS }},
		{"RX larger than the FIFO", func(s *State) { s.RX = make([]byte, FIFOSize+1) }},
		{"RX larger than the holding register", func(s *State) { s.FCR = 0; s.RX = []byte("ab") }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s := st
			s.RX = append([]byte(nil), st.RX...)
			tc.mod(&s)
			before := h.s.Save()
			if err := h.s.Restore(s); err == nil {
				t.Fatal("Restore accepted an impossible state")
			}
			if after := h.s.Save(); !equalState(after, before) {
				t.Fatal("a refused Restore changed the UART")
			}
		})
	}
}

func equalState(a, b State) bool {
	ra, rb := a.RX, b.RX
	a.RX, b.RX = nil, nil
	return reflect.DeepEqual(a, b) && bytes.Equal(ra, rb)
}

func TestReset(t *testing.T) {
	g, l := newUART(t, nil)
	g.out(regMCR, mcrOUT2)
	g.out(regIER, ierTHRI)
	g.s.Enqueue([]byte("x"))
	g.s.Reset()
	if l.High() {
		t.Fatal("IRQ high after reset")
	}
	if lsr := g.in(regLSR); lsr != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR = %#x after reset, want %#x", lsr, lsrTHRE|lsrTEMT)
	}
	if iir := g.in(regIIR); iir != iirNone {
		t.Fatalf("IIR = %#x after reset, want %#x", iir, iirNone)
	}
}

// FuzzRegisters drives random register traffic and host input and checks
// the UART's invariants: no panic, the FIFO within its depth, and the
// interrupt line at the level the registers imply.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x0b, 0x01, 0x00, 0x02, 0x12, 0x0f, 0x20, 0x41, 0x09, 0x03})
	f.Add([]byte{0x22, 0xc7, 0x24, 0x10, 0x20, 0xff, 0x20, 0x00, 0x05, 0x06, 0x02})
	f.Fuzz(func(t *testing.T, ops []byte) {
		l := devicestest.NewLine()
		s := New(COM1Port, l, io.Discard)
		defer s.Close()
		g := guest{t, s}
		for len(ops) >= 2 {
			op, v := ops[0], ops[1]
			ops = ops[2:]
			off := int(op & 7)
			switch op >> 3 & 3 {
			case 0:
				g.in(off)
			case 1:
				g.out(off, v)
			case 2:
				s.Enqueue(bytes.Repeat([]byte{v}, int(op>>5)+1))
			default:
				// An access that runs past the UART's ports.
				buf := []byte{v, v, v, v}
				s.WritePort(COM1Port+Ports-2, buf)
				s.ReadPort(COM1Port+Ports-2, buf)
				if buf[2] != 0xff || buf[3] != 0xff {
					t.Fatalf("read beyond the UART returned %#x", buf)
				}
			}
			s.mu.Lock()
			n, capacity, want := s.rx.n, s.rxCapacity(), s.wantIRQ()
			s.mu.Unlock()
			if n > capacity {
				t.Fatalf("receiver holds %d bytes, capacity %d", n, capacity)
			}
			if l.High() != want {
				t.Fatalf("line high = %v, registers imply %v", l.High(), want)
			}
		}
	})
}

func BenchmarkTransmit(b *testing.B) {
	s := New(COM1Port, devicestest.NewLine(), io.Discard)
	defer s.Close()
	g := guest{nil, s}
	g.out(regMCR, mcrOUT2)
	b.SetBytes(1)
	for b.Loop() {
		g.putc('x')
	}
}

// TestPumpWaitsForDriver replays a Linux boot: the console input is typed
// before the 8250 driver opens the port. The driver's probe sets every IER
// bit for a moment (OUT2 still clear); opening the port resets the FIFOs,
// drains the receiver, sets OUT2 and only then enables the receive
// interrupt. Pump holds the input through all of it and delivers it whole.
func TestPumpWaitsForDriver(t *testing.T) {
	g, _ := newUART(t, nil)
	read := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- g.s.Pump(context.Background(), &notifyReader{r: strings.NewReader("reboot\n"), read: read})
	}()
	<-read // Pump has the input and is offering it to the UART
	// autoconfig's IER probe
	g.out(regIER, 0x0f)
	g.in(regIER)
	g.out(regIER, 0)
	// serial8250_do_startup
	g.out(regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	g.out(regIIR, 0)
	g.in(regLSR)
	g.in(regData)
	g.out(regMCR, mcrOUT2|0x03) // OUT2, RTS, DTR
	g.in(regLSR)
	g.in(regData)
	if g.in(regLSR)&lsrDR != 0 {
		t.Fatal("input delivered before the driver enabled the receive interrupt")
	}
	g.out(regIER, ierRLSI|ierRDI)
	if g.in(regLSR)&lsrDR != 0 {
		t.Fatal("input delivered while the FIFOs were off (set_termios turns them on, discarding it)")
	}
	g.out(regIIR, fcrEnable) // set_termios enables the FIFO
	var got []byte
	for len(got) < 7 {
		if g.in(regLSR)&lsrDR != 0 {
			got = append(got, g.in(regData))
		}
	}
	if string(got) != "reboot\n" {
		t.Fatalf("guest read %q, want %q", got, "reboot\n")
	}
	if err := <-done; err != nil {
		t.Fatalf("Pump = %v", err)
	}
}

// notifyReader closes read after its first successful Read.
type notifyReader struct {
	r    io.Reader
	read chan struct{}
	once sync.Once
}

func (n *notifyReader) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if k > 0 {
		n.once.Do(func() { close(n.read) })
	}
	return k, err
}
