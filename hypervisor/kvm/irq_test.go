package kvm

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// irqProgram initialises the master 8259A (vectors 0x20-0x27, only IR0 and
// IR4 unmasked), runs setup, reports ready on port 0x10 and waits for
// interrupts with HLT. installStubs provides the handlers.
func irqProgram(setup []insn) program {
	p := program{"irq", codeAddr, []insn{
		{[]byte{0xB0, 0x11}, "mov al,0x11"},
		{[]byte{0xE6, 0x20}, "out 0x20,al"}, // ICW1: edge, cascade, ICW4 follows
		{[]byte{0xB0, 0x20}, "mov al,0x20"},
		{[]byte{0xE6, 0x21}, "out 0x21,al"}, // ICW2: vector base 0x20
		{[]byte{0xB0, 0x04}, "mov al,0x4"},
		{[]byte{0xE6, 0x21}, "out 0x21,al"}, // ICW3: slave on IR2
		{[]byte{0xB0, 0x01}, "mov al,0x1"},
		{[]byte{0xE6, 0x21}, "out 0x21,al"}, // ICW4: 8086 mode
		{[]byte{0xB0, 0xEE}, "mov al,0xee"},
		{[]byte{0xE6, 0x21}, "out 0x21,al"}, // OCW1: unmask IR0 and IR4
	}}
	if setup != nil {
		p.name = "irq+pit"
		p.insns = append(p.insns, setup...)
	}
	p.insns = append(p.insns,
		insn{[]byte{0xB0, irqReady}, fmt.Sprintf("mov al,%#x", irqReady)},
		insn{[]byte{0xE6, 0x10}, "out 0x10,al"}, // ready
		insn{[]byte{0xFB}, "sti"},
	)
	hlt := p.end()
	p.insns = append(p.insns,
		insn{[]byte{0xF4}, "hlt"},
		insn{[]byte{0xEB, 0xFD}, fmt.Sprintf("jmp %#x", hlt)},
	)
	return p
}

// irqReady is the byte irqProgram writes to port 0x10 when it is ready.
const irqReady = 0x52

// pitSetup programs PIT channel 0 as a rate generator (mode 2) with count
// 0x1000, about 3.4 ms: IRQ0 fires periodically.
var pitSetup = []insn{
	{[]byte{0xB0, 0x34}, "mov al,0x34"},
	{[]byte{0xE6, 0x43}, "out 0x43,al"}, // channel 0, lobyte/hibyte, mode 2
	{[]byte{0xB0, 0x00}, "mov al,0x0"},
	{[]byte{0xE6, 0x40}, "out 0x40,al"},
	{[]byte{0xB0, 0x10}, "mov al,0x10"},
	{[]byte{0xE6, 0x40}, "out 0x40,al"},
}

// enableLAPIC software-enables the vCPU's local APIC (SVR bit 8), which a
// real-mode guest cannot do itself: fixed interrupts from the IOAPIC and
// MSIs need it. It also checks the APIC ID is the vCPU id.
func enableLAPIC(t *testing.T, g *testGuest) {
	t.Helper()
	s, err := g.vcpu.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if id := s.Get32(LAPICID) >> 24; id != uint32(g.vcpu.ID()) {
		t.Fatalf("LAPIC ID %d, want the vCPU id %d", id, g.vcpu.ID())
	}
	s.Set32(LAPICSVR, APICSVREnable|0xFF)
	if err := g.vcpu.SetLAPIC(s); err != nil {
		t.Fatal(err)
	}
	back, err := g.vcpu.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	if back.Get32(LAPICSVR)&APICSVREnable == 0 {
		t.Fatalf("SVR %#x after SetLAPIC, want the enable bit", back.Get32(LAPICSVR))
	}
}

// defaultRoutes rebuilds KVM's default routing of GSIs 0-15 to the PICs and
// 0-23 to the IOAPIC, which SetGSIRouting replaces.
func defaultRoutes() []RoutingEntry {
	var r []RoutingEntry
	for gsi := uint32(0); gsi < IOAPICNumPins; gsi++ {
		if gsi < 8 {
			r = append(r, RoutingEntry{GSI: gsi, Type: RoutingIRQChip, Chip: IRQChipPICMaster, Pin: gsi})
		} else if gsi < 16 {
			r = append(r, RoutingEntry{GSI: gsi, Type: RoutingIRQChip, Chip: IRQChipPICSlave, Pin: gsi - 8})
		}
		r = append(r, RoutingEntry{GSI: gsi, Type: RoutingIRQChip, Chip: IRQChipIOAPIC, Pin: gsi})
	}
	return r
}

// TestInterrupts delivers an interrupt to a halted real-mode guest through
// each path the machine uses and checks which vector arrives.
func TestInterrupts(t *testing.T) {
	tests := []struct {
		name   string
		setup  []insn                           // guest code before it reports ready
		before func(t *testing.T, g *testGuest) // host setup before the guest runs
		fire   func(t *testing.T, g *testGuest) // after the guest is ready and halted
		vector byte                             // expected vector
		after  func(t *testing.T, g *testGuest) // once the vector arrived
	}{{
		name: "IRQLine to the PIC",
		fire: func(t *testing.T, g *testGuest) {
			check(t, g.vm.IRQLine(4, true))
			check(t, g.vm.IRQLine(4, false))
		},
		vector: 0x24,
	}, {
		name: "IRQLine to the IOAPIC",
		before: func(t *testing.T, g *testGuest) {
			enableLAPIC(t, g)
			chip, err := g.vm.IRQChip(IRQChipIOAPIC)
			check(t, err)
			io := chip.IOAPIC()
			if io.BaseAddress != 0xFEC00000 {
				t.Fatalf("IOAPIC base %#x, want 0xfec00000", io.BaseAddress)
			}
			if !io.RedirTbl[5].Masked() {
				t.Fatalf("IOAPIC pin 5 %#x not masked after reset", uint64(io.RedirTbl[5]))
			}
			io.RedirTbl[5] = 0x45 // fixed, physical, edge, active high, unmasked, APIC 0
			chip.SetIOAPIC(io)
			check(t, g.vm.SetIRQChip(chip))
			back, err := g.vm.IRQChip(IRQChipIOAPIC)
			check(t, err)
			if e := back.IOAPIC().RedirTbl[5]; e.Vector() != 0x45 || e.Masked() || e.LevelTriggered() {
				t.Fatalf("IOAPIC pin 5 reads back %#x", uint64(e))
			}
		},
		fire: func(t *testing.T, g *testGuest) {
			check(t, g.vm.IRQLine(5, true))
			check(t, g.vm.IRQLine(5, false))
		},
		vector: 0x45,
	}, {
		name: "IRQFD",
		before: func(t *testing.T, g *testGuest) {
			efd := newEventFD(t)
			check(t, g.vm.IRQFD(efd, 4))
			t.Cleanup(func() { check(t, g.vm.DeassignIRQFD(efd, 4)) })
			g.efd = efd
		},
		fire:   func(t *testing.T, g *testGuest) { signalEvent(t, g.efd) },
		vector: 0x24,
	}, {
		name: "IRQFDResample",
		before: func(t *testing.T, g *testGuest) {
			g.efd, g.rfd = newEventFD(t), newEventFD(t)
			check(t, g.vm.IRQFDResample(g.efd, g.rfd, 4))
		},
		fire: func(t *testing.T, g *testGuest) { signalEvent(t, g.efd) },
		after: func(t *testing.T, g *testGuest) {
			if n := eventCount(t, g.rfd); n != 0 {
				t.Fatalf("resamplefd signalled %d before the guest's EOI", n)
			}
			g.expectOut(t, 0x12, 0x20) // the stub has sent the EOI
			if n := eventCount(t, g.rfd); n != 1 {
				t.Fatalf("resamplefd counted %d after the guest's EOI, want 1", n)
			}
			check(t, g.vm.DeassignIRQFD(g.efd, 4))
		},
		vector: 0x24,
	}, {
		name:   "SignalMSI",
		before: enableLAPIC,
		fire: func(t *testing.T, g *testGuest) {
			n, err := g.vm.SignalMSI(MSIAddressBase, 0, 0x40)
			check(t, err)
			if n <= 0 {
				t.Fatalf("SignalMSI = %d, want > 0 (delivered)", n)
			}
		},
		vector: 0x40,
	}, {
		name: "MSI route and IRQFD",
		before: func(t *testing.T, g *testGuest) {
			enableLAPIC(t, g)
			routes := append(defaultRoutes(), RoutingEntry{GSI: 24, Type: RoutingMSI, AddressLo: MSIAddressBase, Data: 0x41})
			check(t, g.vm.SetGSIRouting(routes))
			g.efd = newEventFD(t)
			check(t, g.vm.IRQFD(g.efd, 24))
		},
		fire:   func(t *testing.T, g *testGuest) { signalEvent(t, g.efd) },
		vector: 0x41,
	}, {
		name:  "PIT",
		setup: pitSetup,
		before: func(t *testing.T, g *testGuest) {
			check(t, g.vm.CreatePIT2(PITSpeakerDummy))
		},
		vector: 0x20,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuest(t, guestOptions{irqchip: true})
			g.installStubs()
			g.load(irqProgram(tc.setup))
			if tc.before != nil {
				tc.before(t, g)
			}
			g.expectOut(t, 0x10, irqReady)
			pic, err := g.vm.IRQChip(IRQChipPICMaster)
			check(t, err)
			if s := pic.PIC(); s.IRQBase != 0x20 || s.IMR != 0xEE {
				t.Fatalf("master PIC state %+v, want the guest's vector base 0x20 and mask 0xee", s)
			}
			if tc.fire != nil {
				tc.fire(t, g)
			}
			g.expectOut(t, 0x11, tc.vector)
			if tc.after != nil {
				tc.after(t, g)
			}
		})
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPIT2State(t *testing.T) {
	g := newGuest(t, guestOptions{irqchip: true})
	check(t, g.vm.CreatePIT2(PITSpeakerDummy))
	s, err := g.vm.PIT2()
	check(t, err)
	// After reset KVM loads count 0 (= 65536) and opens the gates of
	// channels 0 and 1; channel 2's gate is the speaker port's bit 0.
	if s.Channels[0].Count != 65536 || s.Channels[0].Gate != 1 || s.Channels[2].Gate != 0 {
		t.Fatalf("PIT state after reset %+v", s)
	}
	s.Channels[2].Gate = 1
	s.Channels[0].Mode = 2
	s.Channels[0].Count = 0x1234
	check(t, g.vm.SetPIT2(s))
	back, err := g.vm.PIT2()
	check(t, err)
	if back.Channels[2].Gate != 1 || back.Channels[0].Mode != 2 || back.Channels[0].Count != 0x1234 {
		t.Fatalf("PIT state read back %+v", back)
	}
}

func TestIRQChipPICRoundTrip(t *testing.T) {
	g := newGuest(t, guestOptions{irqchip: true})
	chip, err := g.vm.IRQChip(IRQChipPICSlave)
	check(t, err)
	if chip.ChipID != IRQChipPICSlave {
		t.Fatalf("ChipID %d", chip.ChipID)
	}
	s := chip.PIC()
	s.IRQBase, s.IMR, s.ELCR = 0x70, 0x5A, 0x0C
	chip.SetPIC(s)
	check(t, g.vm.SetIRQChip(chip))
	back, err := g.vm.IRQChip(IRQChipPICSlave)
	check(t, err)
	if b := back.PIC(); b.IRQBase != 0x70 || b.IMR != 0x5A || b.ELCR&0x0C != 0x0C {
		t.Fatalf("slave PIC read back %+v", b)
	}
	master, err := g.vm.IRQChip(IRQChipPICMaster)
	check(t, err)
	if master.PIC().IRQBase == 0x70 {
		t.Fatal("setting the slave PIC changed the master")
	}
}

// TestAPStartup starts an application processor the way a guest kernel
// does, with INIT and STARTUP IPIs (sent here as MSIs), and checks that its
// first KVM_RUN returns to user space without running it (EAGAIN, as
// docs/hosts.md records) and that it then runs from the SIPI page.
func TestAPStartup(t *testing.T) {
	g := newGuest(t, guestOptions{irqchip: true})
	ap, err := g.vm.CreateVCPU(1)
	check(t, err)
	t.Cleanup(func() { ap.Close() })
	g.load(haltProgram) // at 0x1000: SIPI vector 0x01
	if s, err := ap.MPState(); err != nil || s != MPStateUninitialized {
		t.Fatalf("AP MP state %v, %v; want MPStateUninitialized", s, err)
	}

	// On this host KVM delivers MSIs, INIT and STARTUP included, only to
	// software-enabled local APICs (SignalMSI returns 0 otherwise).
	apLAPIC, err := ap.LAPIC()
	check(t, err)
	apLAPIC.Set32(LAPICSVR, APICSVREnable|0xFF)
	check(t, ap.SetLAPIC(apLAPIC))

	type result struct {
		first  error // the first KVM_RUN's
		eagain int
		exit   ExitReason
		io     IOExit
		regs   Regs
		err    error
	}
	tids := make(chan int, 1)
	results := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		var r result
		for i := 0; ; i++ {
			err := ap.Run()
			if i == 0 {
				r.first = err
			}
			switch {
			case err == nil:
				r.exit, r.io = ap.ExitReason(), ap.IO()
				r.regs, r.err = ap.Regs()
				results <- r
				return
			case errors.Is(err, unix.EAGAIN):
				r.eagain++
			case errors.Is(err, unix.EINTR) && !ap.ImmediateExit():
			default:
				r.err = err
				results <- r
				return
			}
		}
	}()
	tid := <-tids
	timer := time.AfterFunc(watchdog, func() { kick(ap, tid) })
	defer timer.Stop()

	dest := uint32(MSIAddressBase | 1<<MSIAddressDestShift) // APIC ID 1
	for _, data := range []uint32{APICDeliveryINIT | MSIDataLevelAssert, APICDeliveryStartUp | 0x01} {
		if n, err := g.vm.SignalMSI(dest, 0, data); err != nil || n <= 0 {
			t.Fatalf("SignalMSI(%#x, data %#x) = %d, %v; want delivered", dest, data, n, err)
		}
	}
	r := <-results
	if r.err != nil {
		t.Fatalf("AP: %v (after %d EAGAIN)", r.err, r.eagain)
	}
	// An uninitialised AP's first KVM_RUN waits for INIT/SIPI, takes
	// them and returns EAGAIN, or EINTR if a signal (the Go runtime's
	// preemption) is pending then: either way, not a guest exit.
	if !errors.Is(r.first, unix.EAGAIN) && !errors.Is(r.first, unix.EINTR) {
		t.Errorf("the AP's first KVM_RUN returned %v, want EAGAIN or EINTR", r.first)
	}
	if r.exit != ExitIO || r.io.Port != 0x10 || r.regs.RIP != 2 {
		t.Fatalf("AP exit %v %+v at RIP %#x, want OUT to port 0x10 at CS:IP 0100:0002", r.exit, r.io, r.regs.RIP)
	}
}
