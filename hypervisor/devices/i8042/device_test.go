package i8042

import (
	"reflect"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

type rig struct {
	t        *testing.T
	c        *Controller
	kbd, aux *devicestest.Line
	resets   int
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, kbd: devicestest.NewLine(), aux: devicestest.NewLine()}
	r.c = New(r.kbd, r.aux, func() { r.resets++ })
	return r
}

func (r *rig) inb(port uint16) byte {
	b := []byte{0}
	r.c.ReadPort(port, b)
	return b[0]
}

func (r *rig) outb(port uint16, v byte) { r.c.WritePort(port, []byte{v}) }

// waitWrite and waitRead are Linux's i8042_wait_write/i8042_wait_read,
// bounded to a single status read: the controller must never make the
// guest wait.
func (r *rig) waitWrite() {
	r.t.Helper()
	if r.inb(CommandPort)&statusIBF != 0 {
		r.t.Fatal("input buffer full: the guest would spin")
	}
}

func (r *rig) waitRead() {
	r.t.Helper()
	if r.inb(CommandPort)&statusOBF == 0 {
		r.t.Fatal("no output after a command that returns a byte: Linux would wait out I8042_CTL_TIMEOUT")
	}
}

// command is Linux's __i8042_command: a command, its parameters, then
// the bytes it returns.
func (r *rig) command(cmd byte, params []byte, results int) []byte {
	r.t.Helper()
	r.waitWrite()
	r.outb(CommandPort, cmd)
	for _, p := range params {
		r.waitWrite()
		r.outb(DataPort, p)
	}
	var out []byte
	for range results {
		r.waitRead()
		if cmd == cmdWriteAuxBuf && r.inb(CommandPort)&statusAuxData == 0 {
			r.t.Fatal("AUX_LOOP result without the aux data bit: Linux reports auxerr")
		}
		out = append(out, r.inb(DataPort))
	}
	return out
}

// flush is Linux's i8042_flush; it returns how many bytes it discarded.
func (r *rig) flush() int {
	n := 0
	for ; r.inb(CommandPort)&statusOBF != 0 && n < 4096; n++ {
		r.inb(DataPort)
	}
	return n
}

// TestLinuxProbe replays the register traffic of Linux's i8042 driver
// (drivers/input/serio/i8042.c) probing this controller: controller
// check, self-test, CTR setup, AUX detection with its IRQ test, MUX
// detection, then atkbd's first command to the absent keyboard.
func TestLinuxProbe(t *testing.T) {
	r := newRig(t)

	// i8042_controller_check: the flush must end well before the buffer size.
	if n := r.flush(); n != 0 {
		t.Fatalf("flush discarded %d bytes from an idle controller", n)
	}
	// i8042_controller_selftest.
	if got := r.command(cmdSelfTest, nil, 1); got[0] != selfTestOK {
		t.Fatalf("self-test returned %#x, want %#x", got[0], selfTestOK)
	}
	// i8042_controller_init: read CTR, check the key lock, write CTR.
	ctr := r.command(cmdReadRAM, nil, 1)[0]
	if ctr&ctrSys == 0 {
		t.Fatalf("CTR %#x lacks the system flag after self-test", ctr)
	}
	if r.inb(CommandPort)&statusUnlock == 0 {
		t.Fatal("status reports the key lock active: Linux warns")
	}
	ctr = (ctr | ctrKbdDis) &^ ctrKbdInt
	r.command(cmdWriteRAM, []byte{ctr}, 0)
	if got := r.command(cmdReadRAM, nil, 1)[0]; got != ctr {
		t.Fatalf("CTR reads %#x after writing %#x", got, ctr)
	}

	// i8042_check_aux: loopback, then toggling the AUX port.
	r.flush()
	if got := r.command(cmdWriteAuxBuf, []byte{0x5a}, 1); got[0] != 0x5a {
		t.Fatalf("AUX_LOOP returned %#x, want 0x5a", got[0])
	}
	r.command(cmdAuxDisable, nil, 0)
	if got := r.command(cmdReadRAM, nil, 1)[0]; got&ctrAuxDis == 0 {
		t.Fatalf("CTR %#x: AUX_DISABLE did not set AUXDIS", got)
	}
	r.command(cmdAuxEnable, nil, 0)
	if got := r.command(cmdReadRAM, nil, 1)[0]; got&ctrAuxDis != 0 {
		t.Fatalf("CTR %#x: AUX_ENABLE did not clear AUXDIS", got)
	}
	// AUX IRQ delivery test.
	ctr = (ctr &^ ctrAuxDis) | ctrAuxInt
	r.command(cmdWriteRAM, []byte{ctr}, 0)
	r.command(cmdWriteAuxBuf, []byte{0xa5}, 0)
	if !r.aux.High() || r.kbd.High() {
		t.Fatalf("after AUX_LOOP with AUXINT: aux line %v, keyboard line %v; want only aux", r.aux.High(), r.kbd.High())
	}
	st := r.inb(CommandPort)
	if st&(statusOBF|statusAuxData) != statusOBF|statusAuxData || r.inb(DataPort) != 0xa5 {
		t.Fatalf("the IRQ handler does not find 0xa5 from the aux port (status %#x)", st)
	}
	if r.aux.High() {
		t.Fatal("aux line still high after the byte was read")
	}

	// i8042_set_mux_mode(1): a legacy controller echoes all three bytes,
	// which tells Linux there is no active multiplexer.
	r.flush()
	for _, b := range []byte{0xf0, 0x56, 0xa4} {
		if got := r.command(cmdWriteAuxBuf, []byte{b}, 1); got[0] != b {
			t.Fatalf("AUX_LOOP %#x returned %#x", b, got[0])
		}
	}

	// psmouse sends to the absent mouse: an immediate time-out.
	r.command(cmdWriteAux, []byte{0xf2}, 0)
	st = r.inb(CommandPort)
	if want := byte(statusOBF | statusAuxData | statusTimeout); st&want != want {
		t.Fatalf("status %#x after a byte to the absent mouse, want %#x set", st, want)
	}
	if got := r.inb(DataPort); got != noDeviceAnswer {
		t.Fatalf("absent mouse answered %#x, want %#x", got, noDeviceAnswer)
	}

	// i8042_enable_kbd_port, then atkbd's GETID to the absent keyboard.
	ctr = (ctr &^ ctrKbdDis) | ctrKbdInt
	r.command(cmdWriteRAM, []byte{ctr}, 0)
	edges := r.kbd.Edges()
	r.waitWrite()
	r.outb(DataPort, 0xf2)
	st = r.inb(CommandPort)
	if st&(statusOBF|statusTimeout|statusAuxData) != statusOBF|statusTimeout {
		t.Fatalf("status %#x after a byte to the absent keyboard", st)
	}
	if r.kbd.Edges() != edges+1 {
		t.Fatal("no keyboard interrupt for the time-out")
	}
	if got := r.inb(DataPort); got != noDeviceAnswer {
		t.Fatalf("absent keyboard answered %#x, want %#x", got, noDeviceAnswer)
	}
	if r.kbd.High() || r.aux.High() {
		t.Fatal("a line is still high with the output buffer empty")
	}
	if r.resets != 0 {
		t.Fatalf("probe caused %d resets", r.resets)
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name   string
		cmd    byte
		params []byte
		want   []byte
	}{
		{"self-test", cmdSelfTest, nil, []byte{selfTestOK}},
		{"keyboard interface test", cmdKbdTest, nil, []byte{interfaceOK}},
		{"aux interface test", cmdAuxTest, nil, []byte{interfaceOK}},
		{"password installed", cmdPassword, nil, []byte{noPassword}},
		{"read command byte", cmdReadRAM, nil, []byte{resetCTR}},
		{"read input port", cmdReadInput, nil, []byte{inputPortUnlock}},
		{"read output port", cmdReadOutput, nil, []byte{resetOut}},
		{"read test inputs", cmdReadTest, nil, []byte{0}},
		{"write keyboard buffer", cmdWriteKbdBuf, []byte{0x1c}, []byte{0x1c}},
		{"write aux buffer", cmdWriteAuxBuf, []byte{0x33}, []byte{0x33}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if got := r.command(tc.cmd, tc.params, len(tc.want)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("command %#x returned %#x, want %#x", tc.cmd, got, tc.want)
			}
			if r.inb(CommandPort)&statusOBF != 0 {
				t.Fatal("more output than the command returns")
			}
		})
	}
	t.Run("controller RAM", func(t *testing.T) {
		r := newRig(t)
		r.command(cmdWriteRAM+5, []byte{0x42}, 0)
		if got := r.command(cmdReadRAM+5, nil, 1)[0]; got != 0x42 {
			t.Fatalf("RAM[5] = %#x, want 0x42", got)
		}
	})
	t.Run("A20 gate", func(t *testing.T) {
		r := newRig(t)
		r.command(cmdA20Disable, nil, 0)
		if got := r.command(cmdReadOutput, nil, 1)[0]; got&outA20 != 0 {
			t.Fatalf("output port %#x: A20 still enabled", got)
		}
		r.command(cmdA20Enable, nil, 0)
		if got := r.command(cmdReadOutput, nil, 1)[0]; got&outA20 == 0 {
			t.Fatalf("output port %#x: A20 not enabled", got)
		}
	})
}

func TestReset(t *testing.T) {
	tests := []struct {
		name      string
		cmd       byte
		params    []byte
		wantReset bool
	}{
		{"pulse reset line (0xFE)", 0xfe, nil, true},
		{"pulse bits 0-3 (0xF0)", 0xf0, nil, true},
		{"pulse nothing (0xFF)", 0xff, nil, false},
		{"pulse bit 1 only (0xFD)", 0xfd, nil, false},
		{"output port with bit 0 clear", cmdWriteOutput, []byte{0x02}, true},
		{"output port with bit 0 set", cmdWriteOutput, []byte{0x03}, false},
		{"self-test", cmdSelfTest, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.outb(CommandPort, tc.cmd)
			for _, p := range tc.params {
				r.outb(DataPort, p)
			}
			if got := r.resets == 1; got != tc.wantReset || r.resets > 1 {
				t.Fatalf("%d resets, want reset %v", r.resets, tc.wantReset)
			}
		})
	}
	t.Run("Linux's reboot loop", func(t *testing.T) {
		// arch/x86/kernel/reboot.c BOOT_KBD: kb_wait() then 0xFE, ten times.
		r := newRig(t)
		for range 10 {
			for i := 0; r.inb(CommandPort)&statusIBF != 0; i++ {
				if i > 0x10000 {
					t.Fatal("kb_wait would time out")
				}
			}
			r.outb(CommandPort, 0xfe)
		}
		if r.resets != 10 {
			t.Fatalf("%d resets from 10 reset commands", r.resets)
		}
	})
}

func TestEmptyDataPort(t *testing.T) {
	r := newRig(t)
	if got := r.inb(DataPort); got != 0 {
		t.Fatalf("data port reads %#x after power-on, want 0", got)
	}
	r.command(cmdWriteKbdBuf, []byte{0x9c}, 1)
	if got := r.inb(DataPort); got != 0x9c {
		t.Fatalf("data port reads %#x with nothing queued, want the last byte 0x9c", got)
	}
	if r.inb(CommandPort)&statusOBF != 0 {
		t.Fatal("re-reading the last byte set OBF")
	}
}

func TestOutputBufferBound(t *testing.T) {
	r := newRig(t)
	for range 10 * queueDepth {
		r.outb(CommandPort, cmdSelfTest)
	}
	n := r.flush()
	if n != queueDepth {
		t.Fatalf("flushed %d bytes, want the %d the buffer keeps", n, queueDepth)
	}
}

func TestInterruptEnables(t *testing.T) {
	r := newRig(t)
	r.command(cmdWriteRAM, []byte{0}, 0) // both interrupts off
	r.outb(DataPort, 0xee)
	if r.kbd.High() {
		t.Fatal("keyboard line high with KBDINT clear")
	}
	r.command(cmdWriteRAM, []byte{ctrKbdInt}, 0)
	if !r.kbd.High() {
		t.Fatal("enabling KBDINT with a byte waiting did not raise the line")
	}
	r.inb(DataPort)
	if r.kbd.High() {
		t.Fatal("keyboard line high after the byte was read")
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t)
	r.command(cmdWriteRAM, []byte{ctrKbdInt | ctrAuxInt | ctrSys}, 0)
	r.command(cmdWriteRAM+3, []byte{0x77}, 0)
	r.outb(CommandPort, cmdWriteAuxBuf)
	r.outb(DataPort, 0x11)
	r.outb(DataPort, 0x22) // to the absent keyboard
	r.outb(CommandPort, cmdWriteOutput)
	st := r.c.Save()

	q := newRig(t)
	if err := q.c.Restore(devicestest.Golden(t, "state", st)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !reflect.DeepEqual(q.c.Save(), st) {
		t.Fatalf("state after restore = %+v, want %+v", q.c.Save(), st)
	}
	if !q.aux.High() || q.kbd.High() {
		t.Fatal("restored lines do not match the aux byte at the head of the buffer")
	}
	q.outb(DataPort, 0x03) // the pending output-port write completes
	if q.resets != 0 {
		t.Fatal("output port write with bit 0 set reset the machine")
	}
	got := q.command(cmdReadOutput, nil, 3)
	if want := []byte{0x11, noDeviceAnswer, 0x03 | outAuxFull}; !reflect.DeepEqual(got, want) {
		t.Fatalf("restored buffer then output port read %#x, want %#x", got, want)
	}

	for _, bad := range []State{
		{Queue: make([]QueuedByte, queueDepth+1)},
		{Pending: cmdSelfTest},
	} {
		before := q.c.Save()
		if err := q.c.Restore(bad); err == nil {
			t.Fatalf("Restore accepted %+v", bad)
		}
		if !reflect.DeepEqual(q.c.Save(), before) {
			t.Fatal("a refused Restore changed the controller")
		}
	}
}

// FuzzPorts drives random traffic on both ports and checks that the
// controller never stalls the guest, keeps its buffer bounded, drives
// its lines consistently and resets only when asked to.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{0x64, 0xaa, 0x60, 0x00, 0x64, 0xd3, 0x60, 0x5a})
	f.Add([]byte{0x64, 0xd1, 0x60, 0x02, 0x64, 0xfe})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newRig(t)
		for len(ops) >= 2 {
			op, v := ops[0], ops[1]
			ops = ops[2:]
			before := r.resets
			pending := r.c.Save().Pending
			port := uint16(DataPort)
			if op&1 != 0 {
				port = CommandPort
			}
			wantReset := false
			if op&2 != 0 {
				r.outb(port, v)
				wantReset = port == CommandPort && v >= cmdPulse && v&1 == 0 ||
					port == DataPort && pending == cmdWriteOutput && v&1 == 0
			} else {
				buf := []byte{0, 0}
				r.c.ReadPort(port, buf)
				if buf[1] != 0xff {
					t.Fatalf("second byte of a word read = %#x, want open bus", buf[1])
				}
			}
			if got := r.resets - before; got != 0 && !wantReset || wantReset && got != 1 {
				t.Fatalf("%d resets, want reset %v (op %#x value %#x)", got, wantReset, op, v)
			}
			st := r.inb(CommandPort)
			if st&statusIBF != 0 {
				t.Fatal("IBF set")
			}
			r.c.mu.Lock()
			n := len(r.c.queue)
			kbd, aux := r.c.wantIRQ()
			r.c.mu.Unlock()
			if n > queueDepth {
				t.Fatalf("output buffer holds %d bytes", n)
			}
			if r.kbd.High() != kbd || r.aux.High() != aux {
				t.Fatalf("lines kbd %v aux %v, state implies %v %v", r.kbd.High(), r.aux.High(), kbd, aux)
			}
		}
	})
}
