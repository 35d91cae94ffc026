package kvm

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpen(t *testing.T) {
	sys := openSystem(t)
	if sys.Fd() < 0 {
		t.Fatalf("Fd() = %d", sys.Fd())
	}
	v, err := sys.APIVersion()
	check(t, err)
	if v != APIVersion {
		t.Fatalf("API version %d", v)
	}
	size, err := sys.VCPUMmapSize()
	check(t, err)
	if size < PageSize || size%PageSize != 0 {
		t.Fatalf("vCPU mmap size %d, want whole pages, at least one", size)
	}
}

// TestNewSystem makes a System of a KVM descriptor opened elsewhere (as a
// VMM is handed one), and refuses a descriptor of another file, closing
// it.
func TestNewSystem(t *testing.T) {
	openSystem(t) // skips without KVM
	fd, err := unix.Open(DefaultPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	check(t, err)
	sys, err := NewSystem(fd, "fd 7")
	check(t, err)
	defer sys.Close()
	vm, err := sys.CreateVM()
	check(t, err)
	vm.Close()

	other, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	check(t, err)
	if _, err := NewSystem(other, "fd 8"); err == nil || err.Error() != "kvm: KVM_GET_API_VERSION (fd 8): inappropriate ioctl for device" {
		t.Errorf("NewSystem of /dev/null: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(other), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the refused descriptor is still open: %v", err)
	}
}

// TestCapabilities checks that the capabilities paddock relies on are
// reported, as docs/hosts.md says they are on every test host.
func TestCapabilities(t *testing.T) {
	sys := openSystem(t)
	vm, err := sys.CreateVM()
	check(t, err)
	defer vm.Close()
	for _, c := range []Cap{
		CapIRQChip, CapHLT, CapUserMemory, CapSetTSSAddr, CapExtCPUID, CapNrVCPUs, CapMaxVCPUs,
		CapMaxVCPUID, CapNrMemslots, CapPIT2, CapPITState2, CapIRQFD, CapIOEventFD, CapIRQRouting,
		CapSignalMSI, CapImmediateExit, CapTSCDeadlineTimer, CapXSave, CapXCRS, CapVCPUEvents,
		CapDebugRegs, CapMPState, CapAdjustClock, CapReadonlyMem, CapKVMClockCtrl, CapGetTSCKHz,
		CapX2APICAPI, CapSplitIRQChip, CapSyncRegs, CapIRQFDResample, CapCheckExtensionVM,
	} {
		n, err := sys.CheckExtension(c)
		check(t, err)
		if n <= 0 {
			t.Errorf("CheckExtension(%v) = %d", c, n)
		}
		if n, err := vm.CheckExtension(c); err != nil || n <= 0 {
			t.Errorf("VM.CheckExtension(%v) = %d, %v", c, n, err)
		}
	}
	recommended, err := sys.CheckExtension(CapNrVCPUs)
	check(t, err)
	maxVCPUs, err := sys.CheckExtension(CapMaxVCPUs)
	check(t, err)
	if maxVCPUs < recommended {
		t.Errorf("CapMaxVCPUs %d < CapNrVCPUs %d", maxVCPUs, recommended)
	}
	if n, err := sys.CheckExtension(Cap(1 << 20)); err != nil || n != 0 {
		t.Errorf("an unknown capability: %d, %v; want 0, nil", n, err)
	}
}

func TestSupportedCPUID(t *testing.T) {
	sys := openSystem(t)
	entries, err := sys.SupportedCPUID()
	check(t, err)
	if len(entries) == 0 {
		t.Fatal("no supported CPUID entries")
	}
	sig := FindCPUID(entries, CPUIDSignatureLeaf, 0)
	if sig == nil {
		t.Fatalf("no KVM signature leaf %#x", CPUIDSignatureLeaf)
	}
	var b []byte
	for _, r := range []uint32{sig.EBX, sig.ECX, sig.EDX} {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	if string(b) != Signature {
		t.Errorf("signature leaf says %q, want %q", b, Signature)
	}
	if sig.EAX < CPUIDFeaturesLeaf {
		t.Errorf("signature leaf's EAX %#x does not cover the features leaf", sig.EAX)
	}
	features := FindCPUID(entries, CPUIDFeaturesLeaf, 0)
	if features == nil || features.EAX&(1<<FeatureClockSource2) == 0 {
		t.Errorf("features leaf %+v lacks kvmclock (FeatureClockSource2)", features)
	}
	if leaf0 := FindCPUID(entries, 0, 0); leaf0 == nil || leaf0.EAX < 1 {
		t.Errorf("leaf 0 = %+v", leaf0)
	}

	// Starting from a one-entry buffer must grow to the same answer, but
	// for the APIC IDs: this host's KVM reports those of the CPU the
	// calling thread runs on (leaf 1 EBX's top byte, leaf 0xb's and
	// 0x1f's EDX; 3 of 300 runs differed there), which paddock replaces
	// for each vCPU anyway.
	grown, err := getCPUID(sys.Fd(), kvmGetSupportedCPUID, 1)
	check(t, err)
	grown, entries = withoutAPICIDs(grown), withoutAPICIDs(entries)
	if !reflect.DeepEqual(grown, entries) {
		t.Errorf("grown from 1 entry: %d entries, default: %d", len(grown), len(entries))
		for i := range min(len(grown), len(entries)) {
			if grown[i] != entries[i] {
				t.Errorf("entry %d: grown %+v, default %+v", i, grown[i], entries[i])
			}
		}
	}

	if _, err := sys.EmulatedCPUID(); err != nil {
		t.Error(err)
	}
}

func TestMSRIndexList(t *testing.T) {
	sys := openSystem(t)
	list, err := sys.MSRIndexList()
	check(t, err)
	for _, want := range []uint32{MSRTSC, MSRSTAR, MSRLSTAR, MSRKernelGSBase, MSRKVMSystemTimeNew} {
		if !slices.Contains(list, want) {
			t.Errorf("MSR index list (%d entries) lacks %#x", len(list), want)
		}
	}
	grown, err := getMSRIndexList(sys.Fd(), kvmGetMSRIndexList, 1)
	check(t, err)
	if !slices.Equal(grown, list) {
		t.Errorf("grown from 1 index: %d indices, default: %d", len(grown), len(list))
	}

	features, err := sys.FeatureMSRIndexList()
	check(t, err)
	values, err := sys.FeatureMSRs(features)
	check(t, err)
	if len(values) != len(features) {
		t.Errorf("read %d of %d feature MSRs", len(values), len(features))
	}
	for i, v := range values {
		if v.Index != features[i] {
			t.Errorf("feature MSR %d is %#x, asked for %#x", i, v.Index, features[i])
		}
	}
}

func TestVMSetup(t *testing.T) {
	sys := openSystem(t)
	vm, err := sys.CreateVM()
	check(t, err)
	defer vm.Close()
	// The Intel real-mode helpers go just below 4 GiB, as QEMU puts them.
	check(t, vm.SetIdentityMapAddr(0xFFFBC000))
	check(t, vm.SetTSSAddr(0xFFFBD000))
	check(t, vm.EnableCap(CapX2APICAPI, X2APICAPIUse32BitIDs|X2APICAPIDisableBroadcastQuirk))
	check(t, vm.CreateIRQChip())
	check(t, vm.CreatePIT2(PITSpeakerDummy))
	c, err := vm.CreateVCPU(0)
	check(t, err)
	defer c.Close()
	if c.ID() != 0 || c.Fd() < 0 {
		t.Fatalf("vCPU ID %d Fd %d", c.ID(), c.Fd())
	}

	if err := vm.EnableCap(CapHLT); !errors.Is(err, unix.EINVAL) {
		t.Errorf("enabling CapHLT, which cannot be enabled: %v, want EINVAL", err)
	}
	if err := vm.EnableCap(CapX2APICAPI, 1, 2, 3, 4, 5); !errors.Is(err, unix.EINVAL) {
		t.Errorf("EnableCap with 5 arguments: %v, want EINVAL", err)
	}
	if err := c.EnableCap(CapHLT); !errors.Is(err, unix.EINVAL) {
		t.Errorf("enabling CapHLT on a vCPU: %v, want EINVAL", err)
	}
}

// readonlyProgram reads from and writes to a read-only slot at 0x30000.
var readonlyProgram = program{"readonly", codeAddr, []insn{
	{[]byte{0xBB, 0x00, 0x30}, "mov bx,0x3000"},
	{[]byte{0x8E, 0xC3}, "mov es,bx"},
	{[]byte{0x26, 0xA0, 0x00, 0x00}, "mov al,es:0x0"}, // reads the slot: no exit
	{[]byte{0xE6, 0x10}, "out 0x10,al"},               // reports what it read
	{[]byte{0x26, 0xA2, 0x01, 0x00}, "mov es:0x1,al"}, // a write: MMIO exit
	{[]byte{0xF4}, "hlt"},
}}

func TestReadonlySlot(t *testing.T) {
	g := newGuest(t, guestOptions{})
	rom, err := unix.Mmap(-1, 0, PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	check(t, err)
	defer unix.Munmap(rom)
	rom[0], rom[1] = 0x77, 0x66
	check(t, g.vm.SetUserMemoryRegion(MemoryRegion{Slot: 1, Flags: MemReadonly, GuestPhysAddr: 0x30000, MemorySize: PageSize, UserspaceAddr: UserspaceAddr(rom)}))
	g.load(readonlyProgram)
	g.expectOut(t, 0x10, 0x77)
	if r := g.run(t); r != ExitMMIO {
		g.fatalExit(t, r, "ExitMMIO")
	}
	if m := g.vcpu.MMIO(); !m.Write || m.Addr != 0x30001 || len(m.Data) != 1 || m.Data[0] != 0x77 {
		t.Fatalf("write to the read-only slot exited as %+v", m)
	}
	if rom[1] != 0x66 {
		t.Fatalf("the read-only slot was written: %#x", rom[1])
	}

	// Deleting the slot forgets it.
	check(t, g.vm.SetUserMemoryRegion(MemoryRegion{Slot: 1}))
	if err := g.vm.DirtyLog(1, make([]uint64, 1)); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("DirtyLog of a deleted slot: %v, want ENOENT", err)
	}
}

// withoutAPICIDs returns a copy of entries with the APIC ID fields that
// depend on the CPU that asked cleared: leaf 1 EBX bits 31-24, leaf
// 0xb's and 0x1f's EDX.
func withoutAPICIDs(entries []CPUIDEntry) []CPUIDEntry {
	out := slices.Clone(entries)
	for i := range out {
		switch out[i].Function {
		case 1:
			out[i].EBX &= 0x00ffffff
		case 0xb, 0x1f:
			out[i].EDX = 0
		}
	}
	return out
}
