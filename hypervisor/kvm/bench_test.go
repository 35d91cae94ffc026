package kvm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// benchProgram exits on every iteration: one Run is one exit round trip.
var benchProgram = program{"bench", codeAddr, []insn{
	{[]byte{0xE6, 0x10}, "out 0x10,al"},
	{[]byte{0xEB, 0xFC}, "jmp 0x1000"},
}}

// runOnce runs until a real exit, retrying EINTR and EAGAIN.
func runOnce(b *testing.B, c *VCPU) {
	for {
		err := c.Run()
		if err == nil {
			return
		}
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			b.Fatal(err)
		}
	}
}

// BenchmarkIOExit measures one KVM_RUN with a port I/O exit: the cost a
// device access pays on this host.
func BenchmarkIOExit(b *testing.B) {
	g := newGuest(b, guestOptions{})
	g.load(benchProgram)
	lockThread(b)
	for b.Loop() {
		runOnce(b, g.vcpu)
		if g.vcpu.ExitReason() != ExitIO {
			b.Fatalf("exit %v", g.vcpu.ExitReason())
		}
	}
}

// BenchmarkCreateVM measures VM creation to the first guest exit: a VM, a
// 1 GiB memory slot, the irqchip, one vCPU and one KVM_RUN. Tearing the VM
// down (which takes the kernel longer) is not timed.
func BenchmarkCreateVM(b *testing.B) {
	sys := openSystem(b)
	const size = 1 << 30
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(mem)
	copy(mem[benchProgram.origin:], benchProgram.bytes())
	lockThread(b)
	for b.Loop() {
		vm, err := sys.CreateVM()
		if err != nil {
			b.Fatal(err)
		}
		if err := vm.SetUserMemoryRegion(MemoryRegion{MemorySize: size, UserspaceAddr: UserspaceAddr(mem)}); err != nil {
			b.Fatal(err)
		}
		if err := vm.CreateIRQChip(); err != nil {
			b.Fatal(err)
		}
		c, err := vm.CreateVCPU(0)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.Sregs()
		if err != nil {
			b.Fatal(err)
		}
		s.CS.Base, s.CS.Selector = 0, 0
		if err := c.SetSregs(s); err != nil {
			b.Fatal(err)
		}
		if err := c.SetRegs(Regs{RIP: codeAddr, RFLAGS: RFLAGSReserved}); err != nil {
			b.Fatal(err)
		}
		runOnce(b, c)
		if c.ExitReason() != ExitIO {
			b.Fatalf("exit %v", c.ExitReason())
		}
		b.StopTimer()
		c.Close()
		vm.Close()
		b.StartTimer()
	}
}

// BenchmarkSaveVCPUState measures reading the state a snapshot saves of
// one vCPU.
func BenchmarkSaveVCPUState(b *testing.B) {
	g := newGuest(b, guestOptions{irqchip: true})
	msrs, err := g.sys.MSRIndexList()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		saveVCPU(b, g.vcpu, msrs)
	}
}
