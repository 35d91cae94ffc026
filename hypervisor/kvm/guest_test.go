package kvm

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/internal/testenv"
	"golang.org/x/sys/unix"
)

// Helpers shared by the tests that drive the host's /dev/kvm with tiny
// real-mode guest programs. docs/hosts.md: CPL0 guest code is emulated here, so
// the programs stick to integer instructions, IN/OUT and memory accesses.

// guestMemSize is the size of the test guests' only memory slot, at guest
// physical address 0. Addresses from guestMemSize up are unmapped, so guest
// accesses there exit as MMIO.
const guestMemSize = 0x10000

// codeAddr is where test programs start (CS=0, IP=codeAddr).
const codeAddr = 0x1000

// stubBase is where the interrupt stubs installed by installStubs live:
// vector v's stub is at stubBase+16*v.
const stubBase = 0x2000

// watchdog bounds how long one guest run may take before the test fails
// instead of hanging; guests here exit within microseconds.
const watchdog = 30 * time.Second

// openSystem declares t a host KVM test and opens /dev/kvm; without a
// usable /dev/kvm the test ends (testenv.RequireKVM).
func openSystem(t testing.TB) *System {
	t.Helper()
	testenv.RequireKVM(t)
	sys, err := Open(DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	return sys
}

// testGuest is a VM with one memory slot and one vCPU, ready to run a
// real-mode program.
type testGuest struct {
	sys  *System
	vm   *VM
	mem  []byte
	vcpu *VCPU

	efd, rfd int // eventfds a test case wires up
}

// guestOptions configure newGuest.
type guestOptions struct {
	slotFlags uint32 // MemoryRegion.Flags of slot 0
	irqchip   bool   // create the in-kernel irqchip (after the slot)
	vcpuID    int
}

// newGuest creates a VM with guestMemSize bytes of anonymous memory at
// guest address 0 and one vCPU in real mode at 0000:codeAddr.
func newGuest(t testing.TB, o guestOptions) *testGuest {
	t.Helper()
	g := &testGuest{sys: openSystem(t)}
	vm, err := g.sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	g.vm = vm
	mem, err := unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	g.mem = mem
	if err := vm.SetUserMemoryRegion(MemoryRegion{Slot: 0, Flags: o.slotFlags, MemorySize: guestMemSize, UserspaceAddr: UserspaceAddr(mem)}); err != nil {
		t.Fatal(err)
	}
	if o.irqchip {
		if err := vm.CreateIRQChip(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := vm.CreateVCPU(o.vcpuID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g.vcpu = c
	g.setRealModeEntry(t, codeAddr)
	return g
}

// setRealModeEntry points CS:IP at 0000:ip, with a stack below 0x8000.
func (g *testGuest) setRealModeEntry(t testing.TB, ip uint64) {
	t.Helper()
	s, err := g.vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CS.Base, s.CS.Selector = 0, 0
	if err := g.vcpu.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := g.vcpu.SetRegs(Regs{RIP: ip, RFLAGS: RFLAGSReserved, RSP: 0x8000}); err != nil {
		t.Fatal(err)
	}
}

// load copies a program to its origin in guest memory.
func (g *testGuest) load(p program) { copy(g.mem[p.origin:], p.bytes()) }

// installStubs fills the real-mode interrupt vector table so that vector v
// runs stubProgram(v) at stubBase+16*v: it reports v on port 0x11, sends
// the master PIC an EOI, reports that on port 0x12 and halts.
func (g *testGuest) installStubs() {
	for v := 0; v < 256; v++ {
		stub := stubProgram(byte(v))
		g.mem[4*v], g.mem[4*v+1] = byte(stub.origin), byte(stub.origin>>8) // offset
		g.mem[4*v+2], g.mem[4*v+3] = 0, 0                                  // segment
		g.load(stub)
	}
}

// lockThread pins the test goroutine to its OS thread, as a vCPU loop is,
// and returns the thread id for kicks.
func lockThread(t testing.TB) int {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	return unix.Gettid()
}

// kick interrupts a KVM_RUN in progress on thread tid: immediate_exit makes
// the kernel return EINTR as soon as it notices the pending signal, and
// keeps a Run that has not started yet from entering the guest.
func kick(c *VCPU, tid int) {
	c.SetImmediateExit(true)
	unix.Tgkill(unix.Getpid(), tid, unix.SIGURG) // Go's runtime ignores a stray SIGURG
}

// run runs the vCPU until it exits for a reason other than EINTR or
// EAGAIN, which it retries as a vCPU loop does, and returns that reason.
// A run longer than watchdog fails the test.
func (g *testGuest) run(t testing.TB) ExitReason {
	t.Helper()
	tid := lockThread(t)
	timer := time.AfterFunc(watchdog, func() { kick(g.vcpu, tid) })
	defer timer.Stop()
	for {
		err := g.vcpu.Run()
		if err == nil {
			return g.vcpu.ExitReason()
		}
		if g.vcpu.ImmediateExit() {
			regs, _ := g.vcpu.Regs()
			t.Fatalf("guest still running after %v (RIP %#x)", watchdog, regs.RIP)
		}
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			t.Fatal(err)
		}
	}
}

// runIO runs until the next exit, which must be port I/O, and returns it.
func (g *testGuest) runIO(t testing.TB) IOExit {
	t.Helper()
	if r := g.run(t); r != ExitIO {
		g.fatalExit(t, r, "ExitIO")
	}
	return g.vcpu.IO()
}

// expectOut runs until the next exit and checks it is a one-byte OUT of
// value to port.
func (g *testGuest) expectOut(t testing.TB, port uint16, value byte) {
	t.Helper()
	io := g.runIO(t)
	if io.In || io.Port != port || io.Size != 1 || io.Count != 1 || len(io.Data) != 1 || io.Data[0] != value {
		t.Fatalf("exit %+v, want OUT %#x to port %#x", io, value, port)
	}
}

// fatalExit fails the test with what the unexpected exit was.
func (g *testGuest) fatalExit(t testing.TB, r ExitReason, want string) {
	t.Helper()
	regs, _ := g.vcpu.Regs()
	switch r {
	case ExitIO:
		t.Fatalf("exit %v %+v at RIP %#x, want %s", r, g.vcpu.IO(), regs.RIP, want)
	case ExitMMIO:
		t.Fatalf("exit %v %+v at RIP %#x, want %s", r, g.vcpu.MMIO(), regs.RIP, want)
	case ExitInternalError:
		t.Fatalf("exit %v %+v at RIP %#x, want %s", r, g.vcpu.InternalError(), regs.RIP, want)
	default:
		t.Fatalf("exit %v at RIP %#x, want %s", r, regs.RIP, want)
	}
}

// newEventFD returns a non-blocking eventfd closed with the test.
func newEventFD(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// eventCount reads and resets an eventfd's counter; 0 means not signalled.
func eventCount(t testing.TB, fd int) uint64 {
	t.Helper()
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	if errors.Is(err, unix.EAGAIN) {
		return 0
	}
	if err != nil || n != 8 {
		t.Fatalf("reading eventfd: n=%d, %v", n, err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// signalEvent adds 1 to an eventfd's counter.
func signalEvent(t testing.TB, fd int) {
	t.Helper()
	b := [8]byte{1}
	if _, err := unix.Write(fd, b[:]); err != nil {
		t.Fatalf("writing eventfd: %v", err)
	}
}
