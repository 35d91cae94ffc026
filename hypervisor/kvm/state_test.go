package kvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStateRoundTrip sets each kind of vCPU state to values that differ
// from the reset state, reads it back, and checks KVM kept them.
func TestStateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, g *testGuest)
	}{{
		name: "Regs",
		run: func(t *testing.T, g *testGuest) {
			want := Regs{RAX: 1, RBX: 2, RCX: 3, RDX: 4, RSI: 5, RDI: 6, RSP: 7, RBP: 8,
				R8: 9, R9: 10, R10: 11, R11: 12, R12: 13, R13: 14, R14: 15, R15: 16,
				RIP: 0x1234, RFLAGS: RFLAGSReserved | RFLAGSCF | RFLAGSZF}
			check(t, g.vcpu.SetRegs(want))
			got, err := g.vcpu.Regs()
			check(t, err)
			if got != want {
				t.Fatalf("Regs = %+v, want %+v", got, want)
			}
		},
	}, {
		name: "Sregs",
		run: func(t *testing.T, g *testGuest) {
			s, err := g.vcpu.Sregs()
			check(t, err)
			// Reset state: real mode, CS = F000 with base FFFF0000.
			if s.CR0&CR0PE != 0 || s.CS.Selector != 0 {
				t.Fatalf("after newGuest: CR0 %#x CS %+v", s.CR0, s.CS)
			}
			s.DS = Segment{Base: 0x12340, Limit: 0xFFFF, Selector: 0x1234, Type: SegTypeDataRW, Present: 1, S: 1}
			s.GDT = DTable{Base: 0x500, Limit: 0x27}
			s.IDT = DTable{Base: 0x600, Limit: 0xFFF}
			s.CR8 = 5
			check(t, g.vcpu.SetSregs(s))
			got, err := g.vcpu.Sregs()
			check(t, err)
			if got.DS.Base != 0x12340 || got.DS.Selector != 0x1234 || got.DS.Limit != 0xFFFF ||
				got.GDT.Base != 0x500 || got.GDT.Limit != 0x27 || got.IDT != s.IDT || got.CR8 != 5 {
				t.Fatalf("Sregs read back DS %+v GDT %+v IDT %+v CR8 %d", got.DS, got.GDT, got.IDT, got.CR8)
			}
		},
	}, {
		name: "FPU",
		run: func(t *testing.T, g *testGuest) {
			f, err := g.vcpu.FPU()
			check(t, err)
			if f.FCW != 0x37F {
				t.Fatalf("reset FPU: FCW %#x, want 0x37f", f.FCW)
			}
			f.FCW = 0x27F
			for i := range f.XMM[3] {
				f.XMM[3][i] = byte(i + 1)
			}
			check(t, g.vcpu.SetFPU(f))
			got, err := g.vcpu.FPU()
			check(t, err)
			if got.FCW != 0x27F || got.XMM[3] != f.XMM[3] {
				t.Fatalf("FPU read back FCW %#x XMM3 % x", got.FCW, got.XMM[3])
			}
			// KVM_GET_FPU leaves MXCSR out; the XSAVE area has it, at byte 24.
			x, err := g.vcpu.XSave()
			check(t, err)
			if mxcsr := binary.LittleEndian.Uint32(x.Region[24:]); mxcsr != 0x1F80 {
				t.Fatalf("MXCSR in the XSAVE area %#x, want the reset value 0x1f80", mxcsr)
			}
		},
	}, {
		name: "XSave",
		run: func(t *testing.T, g *testGuest) {
			x, err := g.vcpu.XSave()
			check(t, err)
			if len(x.Region) < XSaveLegacySize {
				t.Fatalf("XSAVE region of %d bytes", len(x.Region))
			}
			// XMM2 sits at byte 160+2*16 of the legacy (FXSAVE) area; XSTATE_BV
			// bit 1 says the SSE state is live.
			for i := 0; i < 16; i++ {
				x.Region[160+32+i] = 0xA0 + byte(i)
			}
			x.Region[XSaveHeaderOffset] |= XCR0X87 | XCR0SSE
			check(t, g.vcpu.SetXSave(x))
			f, err := g.vcpu.FPU()
			check(t, err)
			if !bytes.Equal(f.XMM[2][:], x.Region[192:208]) {
				t.Fatalf("XMM2 after SetXSave: % x, want % x", f.XMM[2], x.Region[192:208])
			}
			back, err := g.vcpu.XSave()
			check(t, err)
			if !bytes.Equal(back.Region[192:208], x.Region[192:208]) || back.XStateBV()&XCR0SSE == 0 {
				t.Fatalf("XSAVE read back XMM2 % x XSTATE_BV %#x", back.Region[192:208], back.XStateBV())
			}
		},
	}, {
		name: "XSave2",
		run: func(t *testing.T, g *testGuest) {
			// Force the KVM_GET_XSAVE2 path, which a host whose CapXSave2
			// is 4096 (no AMX) does not take by itself, with a buffer
			// larger than the CapXSave2 bytes KVM writes, whatever the
			// host's size: KVM fills its own size and leaves the rest, so
			// the first 4 KiB must equal what XSave read before.
			legacy, err := g.vcpu.XSave()
			check(t, err)
			size := max(g.vcpu.xsaveSize, XSaveLegacySize) + XSaveLegacySize
			g.vcpu.xsaveSize = size
			x, err := g.vcpu.XSave()
			check(t, err)
			if len(x.Region) != size || !bytes.Equal(x.Region[:XSaveLegacySize], legacy.Region[:XSaveLegacySize]) {
				t.Fatalf("KVM_GET_XSAVE2 region (%d bytes) differs from KVM_GET_XSAVE's", len(x.Region))
			}
			check(t, g.vcpu.SetXSave(x))
		},
	}, {
		name: "XCRs",
		run: func(t *testing.T, g *testGuest) {
			x, err := g.vcpu.XCRs()
			check(t, err)
			if x.NrXCRs < 1 || x.XCRs[0].XCR != 0 || x.XCRs[0].Value != XCR0X87 {
				t.Fatalf("reset XCRs %+v, want XCR0 = x87", x.XCRs[:x.NrXCRs])
			}
			// XCR0 may only name features the guest's CPUID offers.
			cpuid, err := g.sys.SupportedCPUID()
			check(t, err)
			check(t, g.vcpu.SetCPUID2(cpuid))
			x.XCRs[0].Value = XCR0X87 | XCR0SSE
			check(t, g.vcpu.SetXCRs(x))
			got, err := g.vcpu.XCRs()
			check(t, err)
			if got.XCRs[0].Value != XCR0X87|XCR0SSE {
				t.Fatalf("XCR0 read back %#x, want 0x3", got.XCRs[0].Value)
			}
		},
	}, {
		name: "MSRs",
		run: func(t *testing.T, g *testGuest) {
			want := []MSREntry{
				{Index: MSRSysenterCS, Data: 0x10},
				{Index: MSRSysenterESP, Data: 0xFFFF8000_00001000},
				{Index: MSRSTAR, Data: 0x0023_0010_0000_0000},
				{Index: MSRLSTAR, Data: 0xFFFFFFFF_81000000},
				{Index: MSRCSTAR, Data: 0xFFFFFFFF_81000100},
				{Index: MSRSFMask, Data: 0x47700},
				{Index: MSRKernelGSBase, Data: 0xFFFF8880_00000000},
				{Index: MSRPAT, Data: 0x0007040600070406 ^ 0x0100},
			}
			check(t, g.vcpu.SetMSRs(want))
			idx := make([]uint32, len(want))
			for i, e := range want {
				idx[i] = e.Index
			}
			got, err := g.vcpu.MSRs(idx)
			check(t, err)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("MSRs read back %+v, want %+v", got, want)
			}
		},
	}, {
		name: "LAPIC",
		run: func(t *testing.T, g *testGuest) {
			s, err := g.vcpu.LAPIC()
			check(t, err)
			s.Set32(LAPICTPR, 0x30)
			s.Set32(LAPICLVTLINT1, APICDeliveryNMI)
			check(t, g.vcpu.SetLAPIC(s))
			got, err := g.vcpu.LAPIC()
			check(t, err)
			if got.Get32(LAPICTPR) != 0x30 || got.Get32(LAPICLVTLINT1) != APICDeliveryNMI {
				t.Fatalf("LAPIC read back TPR %#x LINT1 %#x", got.Get32(LAPICTPR), got.Get32(LAPICLVTLINT1))
			}
		},
	}, {
		name: "VCPUEvents",
		run: func(t *testing.T, g *testGuest) {
			e, err := g.vcpu.VCPUEvents()
			check(t, err)
			if e.NMI.Pending != 0 || e.Exception.Injected != 0 {
				t.Fatalf("reset events %+v", e)
			}
			e.Flags = VCPUEventValidNMIPending | VCPUEventValidShadow
			e.NMI.Pending = 1
			e.NMI.Masked = 1
			e.Interrupt.Shadow = ShadowIntSTI
			check(t, g.vcpu.SetVCPUEvents(e))
			got, err := g.vcpu.VCPUEvents()
			check(t, err)
			if got.NMI.Pending != 1 || got.NMI.Masked != 1 || got.Interrupt.Shadow != ShadowIntSTI {
				t.Fatalf("events read back %+v", got)
			}
		},
	}, {
		name: "MPState",
		run: func(t *testing.T, g *testGuest) {
			// vCPU 3 is an application processor: it waits for INIT/SIPI.
			s, err := g.vcpu.MPState()
			check(t, err)
			if s != MPStateUninitialized {
				t.Fatalf("AP MP state %v, want MPStateUninitialized", s)
			}
			check(t, g.vcpu.SetMPState(MPStateRunnable))
			s, err = g.vcpu.MPState()
			check(t, err)
			if s != MPStateRunnable {
				t.Fatalf("MP state %v after setting MPStateRunnable", s)
			}
			bsp := newGuest(t, guestOptions{irqchip: true})
			if s, err := bsp.vcpu.MPState(); err != nil || s != MPStateRunnable {
				t.Fatalf("BSP MP state %v, %v; want MPStateRunnable", s, err)
			}
		},
	}, {
		name: "DebugRegs",
		run: func(t *testing.T, g *testGuest) {
			d, err := g.vcpu.DebugRegs()
			check(t, err)
			d.DB = [4]uint64{0x1000, 0x2000, 0x3000, 0x4000}
			d.DR7 = 0x400 | 1<<0 | 1<<2 // L0 and L1 enabled
			check(t, g.vcpu.SetDebugRegs(d))
			got, err := g.vcpu.DebugRegs()
			check(t, err)
			if got.DB != d.DB || got.DR7 != d.DR7 {
				t.Fatalf("debug registers read back %+v, want DB %x DR7 %#x", got, d.DB, d.DR7)
			}
		},
	}, {
		name: "CPUID2",
		run: func(t *testing.T, g *testGuest) {
			// KVM_GET_CPUID2 returns the table KVM keeps after
			// KVM_SET_CPUID2, which the API does not promise to be the
			// table set: KVM may drop or merge entries it does not
			// support (one host kept 54 of its own 56 supported
			// entries), and it rewrites some bits as the guest runs
			// (leaf 1's OSXSAVE and APIC bits, leaf 0xD's sizes). What
			// holds: nothing comes back that was not set, and the
			// leaves paddock's CPUID policy rests on (leaf 0's vendor,
			// leaf 1, KVM's signature and features leaves) are kept,
			// leaf 0 exactly as set.
			supported, err := g.sys.SupportedCPUID()
			check(t, err)
			want := append([]CPUIDEntry(nil), supported...)
			// A recognisable vendor string on leaf 0.
			e := FindCPUID(want, 0, 0)
			if e == nil {
				t.Fatal("no leaf 0 in the supported CPUID")
			}
			e.EBX, e.EDX, e.ECX = 0x64646150, 0x206b636f, 0x20204d56 // "Paddock VM  "
			check(t, g.vcpu.SetCPUID2(want))
			got, err := g.vcpu.CPUID2()
			check(t, err)
			if len(got) > len(want) {
				t.Errorf("CPUID2 returned %d entries, more than the %d set", len(got), len(want))
			}
			type leaf struct{ function, index uint32 }
			key := func(e CPUIDEntry) leaf {
				if e.Flags&CPUIDFlagSignificantIndex == 0 {
					return leaf{e.Function, 0}
				}
				return leaf{e.Function, e.Index}
			}
			set := map[leaf]bool{}
			for _, e := range want {
				set[key(e)] = true
			}
			kept := map[leaf]bool{}
			for _, e := range got {
				if !set[key(e)] {
					t.Errorf("CPUID2 returned leaf %#x.%d, which was not set", e.Function, e.Index)
				}
				kept[key(e)] = true
			}
			var dropped []string
			for _, e := range want {
				if !kept[key(e)] {
					dropped = append(dropped, fmt.Sprintf("%#x.%d", e.Function, e.Index))
				}
			}
			if len(dropped) > 0 {
				t.Logf("KVM kept %d of the %d entries set; not kept: %s", len(got), len(want), strings.Join(dropped, " "))
			}
			if leaf0 := FindCPUID(got, 0, 0); leaf0 == nil || *leaf0 != *e {
				t.Errorf("leaf 0 read back %+v, want %+v", leaf0, e)
			}
			for _, fn := range []uint32{1, CPUIDSignatureLeaf, CPUIDFeaturesLeaf} {
				if FindCPUID(want, fn, 0) != nil && FindCPUID(got, fn, 0) == nil {
					t.Errorf("leaf %#x was set but not kept", fn)
				}
			}
		},
	}, {
		name: "TSCKHz",
		run: func(t *testing.T, g *testGuest) {
			khz, err := g.vcpu.TSCKHz()
			check(t, err)
			if khz == 0 {
				t.Fatal("TSC frequency 0 kHz")
			}
			// Setting the current frequency always works; another one
			// needs CapTSCControl (scaling hardware).
			check(t, g.vcpu.SetTSCKHz(khz))
			if n, _ := g.sys.CheckExtension(CapTSCControl); n > 0 {
				check(t, g.vcpu.SetTSCKHz(khz/2))
				got, err := g.vcpu.TSCKHz()
				check(t, err)
				if got != khz/2 {
					t.Fatalf("TSC %d kHz after setting %d", got, khz/2)
				}
			}
		},
	}, {
		name: "KVMClockCtrl",
		run: func(t *testing.T, g *testGuest) {
			err := g.vcpu.KVMClockCtrl()
			if !errors.Is(err, unix.EINVAL) {
				t.Fatalf("KVMClockCtrl before the guest enabled kvmclock: %v, want EINVAL", err)
			}
			// What a guest kernel does at boot: point the kvmclock MSR at a
			// page of its memory, with the enable bit.
			check(t, g.vcpu.SetMSRs([]MSREntry{{Index: MSRKVMSystemTimeNew, Data: 0x5000 | MSRKVMEnabled}}))
			check(t, g.vcpu.KVMClockCtrl())
		},
	}, {
		name: "Translate",
		run: func(t *testing.T, g *testGuest) {
			tr, err := g.vcpu.Translate(0x1234)
			check(t, err)
			if tr.Valid != 1 || tr.PhysicalAddress != 0x1234 {
				t.Fatalf("real-mode translation of 0x1234: %+v", tr)
			}
		},
	}, {
		name: "NMI",
		run: func(t *testing.T, g *testGuest) {
			check(t, g.vcpu.NMI())
			e, err := g.vcpu.VCPUEvents()
			check(t, err)
			if e.NMI.Pending == 0 && e.NMI.Injected == 0 {
				t.Fatalf("no NMI pending after KVM_NMI: %+v", e.NMI)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newGuest(t, guestOptions{irqchip: true, vcpuID: 3}))
		})
	}
}

// TestMSRsStopEarly checks that an MSR KVM refuses ends the list with an
// error naming it, after the entries before it.
func TestMSRsStopEarly(t *testing.T) {
	g := newGuest(t, guestOptions{})
	const bogus = 0xDEAD0000
	got, err := g.vcpu.MSRs([]uint32{MSRSysenterCS, MSRSTAR, bogus, MSRLSTAR})
	if !errors.Is(err, ErrMSRRejected) {
		t.Fatalf("MSRs with %#x: %v, want ErrMSRRejected", bogus, err)
	}
	var kerr *Error
	if !errors.As(err, &kerr) || kerr.Op != "KVM_GET_MSRS" || kerr.Detail != "vCPU 0, MSR 0xdead0000, entry 3 of 4" {
		t.Fatalf("error %q (%#v)", err, err)
	}
	if len(got) != 2 || got[0].Index != MSRSysenterCS || got[1].Index != MSRSTAR {
		t.Fatalf("entries before the refused MSR: %+v", got)
	}
	err = g.vcpu.SetMSRs([]MSREntry{{Index: MSRSTAR, Data: 1 << 32}, {Index: bogus, Data: 1}})
	if !errors.Is(err, ErrMSRRejected) || !errors.As(err, &kerr) || kerr.Detail != "vCPU 0, MSR 0xdead0000, entry 2 of 2" {
		t.Fatalf("SetMSRs with %#x: %v", bogus, err)
	}
	if got, err := g.vcpu.MSRs(nil); err != nil || got != nil {
		t.Fatalf("MSRs(nil) = %v, %v", got, err)
	}
}

// savedVCPU is everything a snapshot keeps of one vCPU.
type savedVCPU struct {
	regs   Regs
	sregs  Sregs
	fpu    FPU
	xsave  XSave
	xcrs   XCRs
	lapic  LAPICState
	events VCPUEvents
	mp     MPState
	dregs  DebugRegs
	msrs   []MSREntry
}

// saveVCPU reads every piece of c's state; msrs lists the MSRs to save.
func saveVCPU(t testing.TB, c *VCPU, msrs []uint32) savedVCPU {
	t.Helper()
	var s savedVCPU
	var errs [10]error
	s.regs, errs[0] = c.Regs()
	s.sregs, errs[1] = c.Sregs()
	s.fpu, errs[2] = c.FPU()
	s.xsave, errs[3] = c.XSave()
	s.xcrs, errs[4] = c.XCRs()
	s.lapic, errs[5] = c.LAPIC()
	s.events, errs[6] = c.VCPUEvents()
	s.mp, errs[7] = c.MPState()
	s.dregs, errs[8] = c.DebugRegs()
	s.msrs, errs[9] = c.MSRs(msrs)
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	return s
}

// restore loads the state into c, in the order a restore must use: special
// registers before the MSRs and events that depend on the mode.
func (s savedVCPU) restore(t testing.TB, c *VCPU) {
	t.Helper()
	err := errors.Join(
		c.SetSregs(s.sregs),
		c.SetRegs(s.regs),
		c.SetFPU(s.fpu),
		c.SetXSave(s.xsave),
		c.SetXCRs(s.xcrs),
		c.SetLAPIC(s.lapic),
		c.SetMSRs(s.msrs),
		c.SetVCPUEvents(s.events),
		c.SetMPState(s.mp),
		c.SetDebugRegs(s.dregs),
	)
	if err != nil {
		t.Fatal(err)
	}
}

// TestSaveRestoreVCPU moves a running guest to a brand-new VM with the
// state getters and setters, the way a snapshot does, and checks that it
// carries on where it stopped.
func TestSaveRestoreVCPU(t *testing.T) {
	// Both vCPUs get a CPUID table first, as a VMM's always have: which
	// of the listed MSRs KVM lets user space read can depend on it (the
	// PMU counters on leaf 0xA, on some kernels), so a vCPU without
	// one is not what a snapshot saves.
	src := newGuest(t, guestOptions{irqchip: true})
	cpuid, err := src.sys.SupportedCPUID()
	check(t, err)
	check(t, src.vcpu.SetCPUID2(cpuid))
	src.load(exitProgram)
	src.expectOut(t, 0x10, 0x42) // stopped after its first OUT

	index, err := src.sys.MSRIndexList()
	check(t, err)
	saved := saveVCPU(t, src.vcpu, index)
	clock, err := src.vm.Clock()
	check(t, err)

	dst := newGuest(t, guestOptions{irqchip: true})
	check(t, dst.vcpu.SetCPUID2(cpuid))
	copy(dst.mem, src.mem)
	saved.restore(t, dst.vcpu)
	check(t, dst.vm.SetClock(ClockData{Clock: clock.Clock}))
	if again := saveVCPU(t, dst.vcpu, index); again.regs != saved.regs || again.sregs != saved.sregs {
		t.Fatalf("restored registers differ:\n%+v\n%+v", again.regs, saved.regs)
	}

	if r := dst.run(t); r != ExitMMIO {
		dst.fatalExit(t, r, "the MMIO write that follows the first OUT")
	}
	if m := dst.vcpu.MMIO(); !m.Write || m.Addr != 0x20010 || m.Data[0] != 0x42 {
		t.Fatalf("restored guest's next exit %+v, want its MMIO write of 0x42 to 0x20010", m)
	}
}

func TestClock(t *testing.T) {
	g := newGuest(t, guestOptions{irqchip: true})
	c1, err := g.vm.Clock()
	check(t, err)
	const ahead = 1000e9 // 1000 s
	check(t, g.vm.SetClock(ClockData{Clock: c1.Clock + ahead}))
	c2, err := g.vm.Clock()
	check(t, err)
	if c2.Clock < c1.Clock+ahead {
		t.Fatalf("clock %d after setting it to %d", c2.Clock, c1.Clock+ahead)
	}
	if c2.Flags&ClockRealtime != 0 && c2.Realtime == 0 {
		t.Errorf("ClockRealtime set but Realtime is 0")
	}
}

// TestMSRsBatches reads and writes more MSRs than one KVM_GET_MSRS may
// carry (255) and checks the error of a refused MSR in a later batch names
// its place in the whole list.
func TestMSRsBatches(t *testing.T) {
	g := newGuest(t, guestOptions{})
	const n = 600
	idx := make([]uint32, n)
	set := make([]MSREntry, n)
	for i := range idx {
		idx[i] = MSRSysenterESP
		set[i] = MSREntry{Index: MSRSysenterESP, Data: uint64(i)}
	}
	check(t, g.vcpu.SetMSRs(set))
	got, err := g.vcpu.MSRs(idx)
	check(t, err)
	if len(got) != n || got[n-1].Data != n-1 {
		t.Fatalf("read %d MSRs, last %+v; want %d, the last value written", len(got), got[len(got)-1], n)
	}
	idx[400] = 0xDEAD0000
	got, err = g.vcpu.MSRs(idx)
	var kerr *Error
	if !errors.As(err, &kerr) || !errors.Is(err, ErrMSRRejected) || kerr.Detail != "vCPU 0, MSR 0xdead0000, entry 401 of 600" {
		t.Fatalf("refused MSR in the second batch: %v", err)
	}
	if len(got) != 400 {
		t.Fatalf("%d entries before the refused one, want 400", len(got))
	}
	set[300].Index = 0xDEAD0000
	err = g.vcpu.SetMSRs(set)
	if !errors.As(err, &kerr) || kerr.Detail != "vCPU 0, MSR 0xdead0000, entry 301 of 600" {
		t.Fatalf("refused MSR write in the second batch: %v", err)
	}
}
