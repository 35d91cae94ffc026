package kvm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// exitProgram exercises every kind of exit a device model sees. ES points
// at 0x20000, past the only memory slot, so accesses through it are MMIO.
var exitProgram = program{"exits", codeAddr, []insn{
	{[]byte{0xB0, 0x42}, "mov al,0x42"},
	{[]byte{0xE6, 0x10}, "out 0x10,al"}, // IO OUT port 0x10, 1 byte: 0x42
	{[]byte{0xBB, 0x00, 0x20}, "mov bx,0x2000"},
	{[]byte{0x8E, 0xC3}, "mov es,bx"},
	{[]byte{0x26, 0xA2, 0x10, 0x00}, "mov es:0x10,al"},                // MMIO write 0x20010, 1 byte: 0x42
	{[]byte{0x26, 0x8B, 0x1E, 0x20, 0x00}, "mov bx,WORD PTR es:0x20"}, // MMIO read 0x20020, 2 bytes
	{[]byte{0x89, 0xD8}, "mov ax,bx"},
	{[]byte{0xE7, 0x11}, "out 0x11,ax"},            // IO OUT port 0x11, 2 bytes: what the MMIO read got
	{[]byte{0xE4, 0x12}, "in al,0x12"},             // IO IN port 0x12, 1 byte
	{[]byte{0xA2, 0x00, 0x30}, "mov ds:0x3000,al"}, // RAM write: dirties page 3
	{[]byte{0xF4}, "hlt"},                          // HLT exit (no in-kernel irqchip)
}}

// haltProgram exits once on port 0x10, then halts.
var haltProgram = program{"halt", codeAddr, []insn{
	{[]byte{0xE6, 0x10}, "out 0x10,al"},
	{[]byte{0xF4}, "hlt"},
}}

// spinProgram never exits by itself.
var spinProgram = program{"spin", codeAddr, []insn{
	{[]byte{0xEB, 0xFE}, "jmp 0x1000"},
}}

// windowProgram enables interrupts after one exit and then spins.
var windowProgram = program{"window", codeAddr, []insn{
	{[]byte{0xE6, 0x10}, "out 0x10,al"}, // IF is still clear here
	{[]byte{0xFB}, "sti"},
	{[]byte{0x90}, "nop"}, // the STI interrupt shadow ends here
	{[]byte{0xEB, 0xFE}, "jmp 0x1004"},
}}

// ioeventProgram writes to ports with ioeventfds (0x30, and 0x31 with
// datamatch 9) and to plain ports.
var ioeventProgram = program{"ioevent", codeAddr, []insn{
	{[]byte{0xB0, 0x07}, "mov al,0x7"},
	{[]byte{0xE6, 0x30}, "out 0x30,al"}, // ioeventfd: no exit
	{[]byte{0xE6, 0x31}, "out 0x31,al"}, // datamatch 9 does not match: exit
	{[]byte{0xB0, 0x09}, "mov al,0x9"},
	{[]byte{0xE6, 0x31}, "out 0x31,al"}, // matches: no exit
	{[]byte{0xE6, 0x10}, "out 0x10,al"}, // exit
	{[]byte{0xE6, 0x30}, "out 0x30,al"}, // deassigned by then: exit
	{[]byte{0xF4}, "hlt"},
}}

// ioeventMMIOProgram writes to an MMIO address with an ioeventfd.
var ioeventMMIOProgram = program{"ioevent-mmio", codeAddr, []insn{
	{[]byte{0xBB, 0x00, 0x20}, "mov bx,0x2000"},
	{[]byte{0x8E, 0xC3}, "mov es,bx"},
	{[]byte{0xB0, 0x05}, "mov al,0x5"},
	{[]byte{0x26, 0xA2, 0x40, 0x00}, "mov es:0x40,al"}, // MMIO 0x20040, ioeventfd: no exit
	{[]byte{0xE6, 0x10}, "out 0x10,al"},
	{[]byte{0xF4}, "hlt"},
}}

func TestExits(t *testing.T) {
	g := newGuest(t, guestOptions{slotFlags: MemLogDirtyPages})
	g.load(exitProgram)

	g.expectOut(t, 0x10, 0x42)

	if r := g.run(t); r != ExitMMIO {
		g.fatalExit(t, r, "ExitMMIO write")
	}
	if m := g.vcpu.MMIO(); !m.Write || m.Addr != 0x20010 || len(m.Data) != 1 || m.Data[0] != 0x42 {
		t.Fatalf("MMIO write exit %+v, want 1-byte write of 0x42 to 0x20010", m)
	}

	if r := g.run(t); r != ExitMMIO {
		g.fatalExit(t, r, "ExitMMIO read")
	}
	m := g.vcpu.MMIO()
	if m.Write || m.Addr != 0x20020 || len(m.Data) != 2 {
		t.Fatalf("MMIO read exit %+v, want 2-byte read of 0x20020", m)
	}
	m.Data[0], m.Data[1] = 0xEF, 0xBE // the device's answer: 0xBEEF

	io := g.runIO(t)
	if io.In || io.Port != 0x11 || io.Size != 2 || io.Count != 1 || len(io.Data) != 2 {
		t.Fatalf("exit %+v, want 2-byte OUT to port 0x11", io)
	}
	if got := uint16(io.Data[0]) | uint16(io.Data[1])<<8; got != 0xBEEF {
		t.Fatalf("guest read %#x from MMIO, want 0xbeef", got)
	}

	io = g.runIO(t)
	if !io.In || io.Port != 0x12 || io.Size != 1 || io.Count != 1 || len(io.Data) != 1 {
		t.Fatalf("exit %+v, want 1-byte IN from port 0x12", io)
	}
	io.Data[0] = 0x5A

	if r := g.run(t); r != ExitHLT {
		g.fatalExit(t, r, "ExitHLT")
	}
	if g.mem[0x3000] != 0x5A {
		t.Fatalf("guest stored %#x from its IN, want 0x5a", g.mem[0x3000])
	}
	regs, err := g.vcpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(exitProgram.end()); regs.RIP != want {
		t.Errorf("RIP after HLT = %#x, want %#x", regs.RIP, want)
	}

	bitmap := make([]uint64, DirtyBitmapWords(guestMemSize))
	if err := g.vm.DirtyLog(0, bitmap); err != nil {
		t.Fatal(err)
	}
	if bitmap[0]&(1<<3) == 0 {
		t.Errorf("dirty bitmap %#x: page 3 (guest wrote 0x3000) not dirty", bitmap[0])
	}
	if bitmap[0]&(1<<8) != 0 {
		t.Errorf("dirty bitmap %#x: page 8 dirty, the guest never wrote it", bitmap[0])
	}
	t.Logf("dirty pages: %#x", bitmap[0])
	if err := g.vm.DirtyLog(0, bitmap); err != nil {
		t.Fatal(err)
	}
	if bitmap[0]&(1<<3) != 0 {
		t.Errorf("page 3 still dirty after the log was read (KVM_GET_DIRTY_LOG clears it): %#x", bitmap[0])
	}
}

func TestImmediateExit(t *testing.T) {
	g := newGuest(t, guestOptions{})
	g.load(haltProgram)
	lockThread(t)

	g.vcpu.SetImmediateExit(true)
	if !g.vcpu.ImmediateExit() {
		t.Fatal("ImmediateExit() = false after SetImmediateExit(true)")
	}
	err := g.vcpu.Run()
	if !errors.Is(err, unix.EINTR) {
		t.Fatalf("Run with immediate_exit set: %v, want EINTR", err)
	}
	var kerr *Error
	if !errors.As(err, &kerr) || kerr.Op != "KVM_RUN" {
		t.Fatalf("Run error %#v, want a *Error for KVM_RUN", err)
	}
	regs, err := g.vcpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if regs.RIP != codeAddr {
		t.Fatalf("RIP = %#x after an immediate exit, want %#x (no guest instruction run)", regs.RIP, codeAddr)
	}

	g.vcpu.SetImmediateExit(false)
	g.expectOut(t, 0x10, 0)
}

// TestKick stops a guest that never exits by itself, the way a vCPU loop is
// paused: immediate_exit plus a signal to the vCPU thread.
func TestKick(t *testing.T) {
	g := newGuest(t, guestOptions{})
	g.load(spinProgram)
	tid := lockThread(t)

	// Whether the kick lands before or during KVM_RUN, Run must return
	// EINTR with immediate_exit set: a kick is never lost.
	kicked := make(chan struct{})
	go func() {
		kick(g.vcpu, tid)
		close(kicked)
	}()
	for {
		err := g.vcpu.Run()
		if err == nil {
			g.fatalExit(t, g.vcpu.ExitReason(), "EINTR")
		}
		if !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
		if g.vcpu.ImmediateExit() {
			break // our kick, not a runtime signal
		}
	}
	<-kicked
}

// TestRunFlagsConcurrent flips request_interrupt_window on the vCPU
// goroutine while another goroutine flips immediate_exit, the byte next to
// it: neither may clobber the other.
func TestRunFlagsConcurrent(t *testing.T) {
	g := newGuest(t, guestOptions{})
	const rounds = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < rounds; i++ {
			g.vcpu.SetImmediateExit(i%2 == 0)
		}
		g.vcpu.SetImmediateExit(true)
	}()
	for i := 0; i < rounds; i++ {
		g.vcpu.RequestInterruptWindow(i%2 == 0)
	}
	g.vcpu.RequestInterruptWindow(true)
	<-done
	if !g.vcpu.ImmediateExit() || g.vcpu.hdr.RequestInterruptWindow != 1 {
		t.Fatalf("immediate_exit=%d request_interrupt_window=%d, want both 1",
			g.vcpu.hdr.ImmediateExit, g.vcpu.hdr.RequestInterruptWindow)
	}
}

// TestInterruptWindow injects an interrupt without an in-kernel irqchip:
// wait for the interrupt window, then KVM_INTERRUPT.
func TestInterruptWindow(t *testing.T) {
	g := newGuest(t, guestOptions{})
	g.installStubs()
	g.load(windowProgram)
	g.expectOut(t, 0x10, 0)
	if g.vcpu.IFFlag() {
		t.Error("IFFlag() = true before the guest's STI")
	}
	g.vcpu.RequestInterruptWindow(true)
	if r := g.run(t); r != ExitIRQWindowOpen {
		g.fatalExit(t, r, "ExitIRQWindowOpen")
	}
	if !g.vcpu.IFFlag() || !g.vcpu.ReadyForInterruptInjection() {
		t.Fatalf("at the interrupt window: IFFlag=%v ReadyForInterruptInjection=%v, want both true",
			g.vcpu.IFFlag(), g.vcpu.ReadyForInterruptInjection())
	}
	g.vcpu.RequestInterruptWindow(false)
	if err := g.vcpu.Interrupt(0x30); err != nil {
		t.Fatal(err)
	}
	g.expectOut(t, 0x11, 0x30)
}

// TestIOEventFD checks that a guest OUT to a port with an ioeventfd does not
// exit but signals the eventfd, that datamatch filters, and that deassigned
// ports exit again.
func TestIOEventFD(t *testing.T) {
	g := newGuest(t, guestOptions{})
	any, match := newEventFD(t), newEventFD(t)
	if err := g.vm.IOEventFD(IOEvent{Addr: 0x30, Len: 1, Fd: any, Flags: IOEventPIO}); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.IOEventFD(IOEvent{Addr: 0x31, Len: 1, Fd: match, Datamatch: 9, Flags: IOEventPIO | IOEventDatamatch}); err != nil {
		t.Fatal(err)
	}
	g.load(ioeventProgram)
	g.expectOut(t, 0x31, 7)
	if n := eventCount(t, any); n != 1 {
		t.Errorf("eventfd of port 0x30 counted %d, want 1", n)
	}
	if n := eventCount(t, match); n != 0 {
		t.Errorf("eventfd of port 0x31 counted %d for a non-matching write, want 0", n)
	}
	g.expectOut(t, 0x10, 9)
	if n := eventCount(t, match); n != 1 {
		t.Errorf("eventfd of port 0x31 counted %d for a matching write, want 1", n)
	}
	if err := g.vm.IOEventFD(IOEvent{Addr: 0x30, Len: 1, Fd: any, Flags: IOEventPIO | IOEventDeassign}); err != nil {
		t.Fatal(err)
	}
	g.expectOut(t, 0x30, 9)
	if n := eventCount(t, any); n != 0 {
		t.Errorf("deassigned eventfd counted %d", n)
	}
}

// TestIOEventFDMMIO does the same for an MMIO address.
func TestIOEventFDMMIO(t *testing.T) {
	g := newGuest(t, guestOptions{})
	fd := newEventFD(t)
	if err := g.vm.IOEventFD(IOEvent{Addr: 0x20040, Len: 1, Fd: fd}); err != nil {
		t.Fatal(err)
	}
	g.load(ioeventMMIOProgram)
	g.expectOut(t, 0x10, 5)
	if n := eventCount(t, fd); n != 1 {
		t.Errorf("eventfd of MMIO 0x20040 counted %d, want 1", n)
	}
}

// TestSingleStep checks guest debugging: one instruction, then ExitDebug
// with #DB at the next instruction.
func TestSingleStep(t *testing.T) {
	g := newGuest(t, guestOptions{})
	g.load(exitProgram)
	check(t, g.vcpu.SetGuestDebug(GuestDebug{Control: GuestDebugEnable | GuestDebugSingleStep}))
	if r := g.run(t); r != ExitDebug {
		g.fatalExit(t, r, "ExitDebug")
	}
	next := uint64(codeAddr + len(exitProgram.insns[0].code))
	if d := g.vcpu.Debug(); d.Exception != VectorDB || d.PC != next {
		t.Fatalf("debug exit %+v, want #DB at %#x", d, next)
	}
	check(t, g.vcpu.SetGuestDebug(GuestDebug{}))
	g.expectOut(t, 0x10, 0x42)
}
