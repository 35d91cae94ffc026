package machine

import (
	"bytes"
	"context"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/boot/smbios"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// The x86 reset state of a vCPU: CS:IP = F000:FFF0 with CS based at
// FFFF0000 (the reset vector just below 4 GiB), real mode.
const (
	resetRIP      = 0xfff0
	resetCS       = 0xf000
	resetCSBase   = 0xffff_0000
	rsdpSignature = "RSD PTR "
)

// checkGuestMemoryZero fails unless every byte of the guest's RAM is zero.
func checkGuestMemoryZero(t *testing.T, m *Machine) {
	t.Helper()
	zero := make([]byte, 1<<20)
	for i, b := range m.mem.maps {
		for off := 0; off < len(b); off += len(zero) {
			chunk := b[off:min(off+len(zero), len(b))]
			if !bytes.Equal(chunk, zero[:len(chunk)]) {
				gpa := m.mem.regions[i].gpa + uint64(off+bytes.IndexFunc(chunk, func(r rune) bool { return r != 0 }))
				t.Fatalf("guest memory written near %#x", gpa)
			}
		}
	}
}

// vcpuAtReset reports whether vCPU i's registers are the reset state.
func vcpuAtReset(t *testing.T, m *Machine, i int) bool {
	t.Helper()
	regs, err := m.vcpus[i].k.Regs()
	if err != nil {
		t.Fatal(err)
	}
	sregs, err := m.vcpus[i].k.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	return regs.RIP == resetRIP && sregs.CS.Selector == resetCS && sregs.CS.Base == resetCSBase && sregs.CR0&kvm.CR0PE == 0
}

// TestBuildThenBoot builds a machine with two vCPUs and a disk without
// booting it: guest memory is untouched, every vCPU is at its reset
// state, and Run refuses to start it. Then it boots the serial guest into
// the same machine and runs it to its power-off.
func TestBuildThenBoot(t *testing.T) {
	requireKVM(t)
	kernel := guestKernel(t, "serial", nil)
	con := newConsole()
	cfg := Config{KVM: testKVM(t), CPUs: 2, Memory: 64 << 20, Console: con, Disks: []Disk{openDisk(t, rawImage(t, 1<<20), disk.Options{})}, RNG: true, UUID: [16]byte{0x6f, 0x1e, 15: 0x3e}}
	m, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	checkGuestMemoryZero(t, m)
	for i := range m.vcpus {
		if !vcpuAtReset(t, m, i) {
			t.Errorf("vCPU %d is not at its reset state after Build", i)
		}
	}
	if m.Entry() != nil {
		t.Errorf("Entry() = %v before Boot", m.Entry())
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	if _, err := m.Run(ctx); err == nil {
		t.Fatal("Run before Boot succeeded")
	}

	if err := m.Boot(BootConfig{Kernel: kernel}); err != nil {
		t.Fatal(err)
	}
	regs, err := m.vcpus[0].k.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if e := m.Entry(); e == nil || regs.RIP != e.RIP {
		t.Errorf("after Boot vCPU 0 is at %#x, the entry is %+v", regs.RIP, e)
	}
	if !vcpuAtReset(t, m, 1) {
		t.Error("Boot moved vCPU 1, which waits for INIT/SIPI")
	}
	rsdp, err := m.Memory().Slice(ACPIStart, uint64(len(rsdpSignature)))
	if err != nil || string(rsdp) != rsdpSignature {
		t.Errorf("no RSDP at %#x after Boot: %q, %v", ACPIStart, rsdp, err)
	}
	want, err := smbios.Build(smbios.Config{UUID: cfg.UUID, CPUs: cfg.CPUs}, SMBIOSStart)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Memory().Slice(SMBIOSStart, uint64(len(want))); err != nil || !bytes.Equal(got, want) {
		t.Errorf("SMBIOS area at %#x after Boot: % x, %v; want the tables for the machine's UUID and CPUs", SMBIOSStart, got[:min(len(got), 32)], err)
	}
	if err := m.Boot(BootConfig{Kernel: kernel}); err == nil {
		t.Error("a second Boot succeeded")
	}

	e, err := m.Run(ctx)
	if err != nil || e.Reason != exit.PowerOff {
		t.Fatalf("Run = %v (%s), %v; want poweroff", e.Reason, e.Detail, err)
	}
	if got, want := con.String(), "hello from the serial guest\n"; got != want {
		t.Fatalf("console %q, want %q", got, want)
	}
}

// TestBuildOnVMAhead: a machine built on a VM created ahead
// (Config.VM) runs on that VM, and closes it when it closes; a machine
// that refuses its config closes the VM at once.
func TestBuildOnVMAhead(t *testing.T) {
	requireKVM(t)
	sys := testKVM(t)
	vm, err := sys.CreateVMAhead().Take()
	if err != nil {
		t.Fatal(err)
	}
	con := newConsole()
	m, err := New(Config{KVM: sys, VM: vm, CPUs: 1, Memory: 64 << 20, Console: con}, BootConfig{Kernel: guestKernel(t, "serial", nil)})
	if err != nil {
		t.Fatal(err)
	}
	if m.vm != vm {
		t.Error("the machine made a VM of its own instead of taking Config.VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	if e, err := m.Run(ctx); err != nil || e.Reason != exit.PowerOff {
		t.Fatalf("Run = %v (%s), %v; want poweroff", e.Reason, e.Detail, err)
	}
	if got, want := con.String(), "hello from the serial guest\n"; got != want {
		t.Errorf("console %q, want %q", got, want)
	}
	m.Close()
	if vm.Fd() >= 0 {
		t.Error("Close left the VM it took over open")
	}

	for _, c := range []Config{
		{KVM: sys, CPUs: 0, Memory: 64 << 20},      // refused at once
		{KVM: sys, CPUs: 1, Memory: MinMemory - 1}, // likewise
	} {
		if c.VM, err = sys.CreateVMAhead().Take(); err != nil {
			t.Fatal(err)
		}
		if _, err := Build(c); err == nil {
			t.Fatalf("Build(%d vCPUs, %d bytes) succeeded", c.CPUs, c.Memory)
		}
		if c.VM.Fd() >= 0 {
			t.Errorf("Build(%d vCPUs, %d bytes) failed and left Config.VM open", c.CPUs, c.Memory)
		}
	}
}
