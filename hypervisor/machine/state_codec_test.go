package machine

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/acpipm"
	"github.com/paddock-vm/paddock/hypervisor/devices/ged"
	"github.com/paddock-vm/paddock/hypervisor/devices/i8042"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
	"github.com/paddock-vm/paddock/hypervisor/devices/rtc"
	"github.com/paddock-vm/paddock/hypervisor/devices/serial"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	vnet "github.com/paddock-vm/paddock/hypervisor/devices/virtio/net"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/rng"
	"github.com/paddock-vm/paddock/hypervisor/devices/vmgenid"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
	"github.com/paddock-vm/paddock/netdev"
)

// sampleState is a machine state built without KVM, with every part a
// real one has: two vCPUs, the irqchip, the platform devices (made and
// saved for real, on a fixed clock) and a disk, a NIC and an RNG.
func sampleState(t testing.TB) *State {
	t.Helper()
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	pm, err := acpipm.New(acpipm.Config{EventPort: acpipm.DefaultEventPort, ControlPort: acpipm.DefaultControlPort,
		ResetPort: acpipm.DefaultResetPort, ResetValue: acpipm.DefaultResetValue, SleepTypeS5: acpipm.DefaultSleepTypeS5})
	if err != nil {
		t.Fatal(err)
	}
	bridge, err := pci.NewHostBridge(ECAMStart, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rtc.New(rtc.Config{LowMemory: 256 << 20, Now: func() time.Time { return clock }})
	defer r.Close()
	cpuid := []kvm.CPUIDEntry{{Function: 0, EAX: 0xd, EBX: 0x68747541, ECX: 0x444d4163, EDX: 0x69746e65}, {Function: 1, ECX: 1 << 31}}
	st := &State{
		CPUs: 2, Memory: 256 << 20, Clock: 123456789,
		PICMaster: kvm.PICState{IRQBase: 0x20, IMR: 0xfb},
		PICSlave:  kvm.PICState{IRQBase: 0x28, IMR: 0xff},
		IOAPIC:    kvm.IOAPICState{BaseAddress: IOAPICAddr, RedirTbl: [kvm.IOAPICNumPins]kvm.IOAPICRedirection{4: 0x24}},
		PIT:       kvm.PITState2{Channels: [3]kvm.PITChannelState{{Count: 11932, Mode: 2, RWMode: 3}}},
		Serial:    serial.New(com1Port, nil, nil).Save(),
		I8042:     i8042.New(nil, nil, nil).Save(),
		RTC:       r.Save(),
		PM:        pm.Save(),
		PCI:       bridge.Save(),
		GED:       ged.State{Pending: 1 << ged.EventGenerationID},
		VMGenID:   vmgenid.State{Addr: VMGenIDAddr, ID: vmgenid.ID{0x5e, 0xed, 15: 0x01}},
	}
	for i := 0; i < st.CPUs; i++ {
		st.VCPUs = append(st.VCPUs, VCPUState{
			CPUID:  cpuid,
			Regs:   kvm.Regs{RIP: 0x100000 + uint64(i), RFLAGS: 2, RSP: 0x8000},
			Sregs:  kvm.Sregs{CR0: kvm.CR0PE, EFER: 0, CS: kvm.Segment{Selector: 8, Present: 1, S: 1, Type: kvm.SegTypeCodeExecRead, DB: 1, G: 1, Limit: 0xffffffff}},
			XSave:  make([]byte, kvm.XSaveLegacySize),
			LAPIC:  make([]byte, len(kvm.LAPICState{})),
			MSRs:   []kvm.MSREntry{{Index: kvm.MSRTSC, Data: 1000}, {Index: kvm.MSRKVMSystemTimeNew, Data: 0x5001}},
			MP:     kvm.MPStateRunnable,
			TSCKHz: 2_000_000,
		})
	}
	transport := virtio.PCIState{Config: pci.ConfigState{Data: make([]byte, pci.ConfigSize)}, Status: 15,
		Queues: []virtio.QueueState{{Size: 256, Desc: 0x10000, Driver: 0x11000, Device: 0x12000, Ready: true, LastAvail: 7, UsedIdx: 7}}}
	st.Virtio = []VirtioState{
		{Name: "virtio-blk disks[0]", Transport: transport, Blk: &blk.State{Capacity: 2048, Queues: 1, Serial: "root"}, Snapshot: "before-upgrade"},
		{Name: "virtio-net nics[0]", Transport: transport, Net: &vnet.State{MAC: netdev.MAC{2, 0, 0, 0, 0, 1}, LinkUp: true}},
		{Name: "virtio-rng", Transport: transport, RNG: &rng.State{}},
	}
	return st
}

// sampleFile encodes sampleState as a state file's bytes.
func sampleFile(t testing.TB) []byte {
	t.Helper()
	f, err := sampleState(t).File(snapshot.Header{Paddock: "test", Created: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := snapshot.Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStateFileGolden encodes a machine's state as a snapshot state file
// and compares it with testdata/state.golden: which sections there are,
// their ids and what each holds. A difference is a change of the snapshot
// format (a new version); PADDOCK_UPDATE_GOLDEN=1 rewrites the file.
func TestStateFileGolden(t *testing.T) {
	b := sampleFile(t)
	golden := filepath.Join("testdata", "state.golden")
	if os.Getenv("PADDOCK_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("the encoded state differs from %s: the snapshot format changed (a new version is needed)", golden)
	}
	f, err := snapshot.Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, sampleState(t)) {
		t.Fatalf("decoded state differs from the encoded one:\n got %+v\nwant %+v", st, sampleState(t))
	}
	if f.Header.CPUVendor != "AuthenticAMD" || f.Header.CPUs != 2 || f.Header.Memory != 256<<20 {
		t.Errorf("header %+v", f.Header)
	}
}

// TestDecodeStateRefuses edits sections of a good state file: each
// missing, extra, malformed or inconsistent section is refused with an
// error that names it.
func TestDecodeStateRefuses(t *testing.T) {
	good, err := snapshot.Decode(sampleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(*snapshot.File)) *snapshot.File {
		c := &snapshot.File{Header: good.Header}
		for _, s := range good.Sections {
			c.Sections = append(c.Sections, snapshot.Section{ID: s.ID, Data: append([]byte(nil), s.Data...)})
		}
		f(c)
		return c
	}
	set := func(id, data string) func(*snapshot.File) {
		return func(f *snapshot.File) {
			for i := range f.Sections {
				if f.Sections[i].ID == id {
					f.Sections[i].Data = []byte(data)
				}
			}
		}
	}
	drop := func(id string) func(*snapshot.File) {
		return func(f *snapshot.File) {
			for i := range f.Sections {
				if f.Sections[i].ID == id {
					f.Sections = append(f.Sections[:i], f.Sections[i+1:]...)
					return
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		f    *snapshot.File
		want string
	}{
		{"no vCPU 1", edit(drop("vcpu/1")), `no "vcpu/1" section`},
		{"no IOAPIC", edit(drop(secIOAPIC)), `no "irqchip/ioapic" section`},
		{"unknown section", edit(func(f *snapshot.File) {
			f.Sections = append(f.Sections, snapshot.Section{ID: "gpu/0", Data: []byte("{}")})
		}), `"gpu/0" section this paddock does not know`},
		{"unknown field", edit(set(secPM, `{"Status":0,"Enable":0,"Control":0,"Wake":1}`)), `"acpi-pm" section`},
		{"not JSON", edit(set("vcpu/0", "\x00garbage")), `"vcpu/0" section`},
		{"trailing value", edit(set(secPM, `{} {}`)), `data after its value`},
		{"no vCPUs", edit(set(secMachine, `{"CPUs":0,"Memory":268435456}`)), "0 vCPUs"},
		{"a million vCPUs", edit(set(secMachine, `{"CPUs":1000000,"Memory":268435456}`)), "1000000 vCPUs"},
		{"header disagrees", edit(func(f *snapshot.File) { f.Header.CPUs = 4 }), "disagree"},
		{"other vendor", edit(func(f *snapshot.File) { f.Header.CPUVendor = "GenuineIntel" }), "names a GenuineIntel CPU"},
		{"virtio twice", edit(set(secMachine, `{"CPUs":2,"Memory":268435456,"Virtio":["disks[0]","disks[0]"]}`)), "twice"},
		{"missing virtio", edit(set(secMachine, `{"CPUs":2,"Memory":268435456,"Virtio":["disks[0]","nics[0]","virtio-rng","disks[1]"]}`)), `no "virtio/disks[1]" section`},
		{"no generation ID", edit(drop(secVMGenID)), `no "vmgenid" section`},
		{"no GED", edit(drop(secGED)), `no "ged" section`},
		{"short generation ID", edit(set(secVMGenID, `{"Addr":978944,"ID":"5eed"}`)), "32 hex digits, not 4"},
		{"generation ID not hex", edit(set(secVMGenID, `{"Addr":978944,"ID":"5eed000000000000000000000000000g"}`)), `"vmgenid" section`},
		{"generation ID as bytes", edit(set(secVMGenID, `{"Addr":978944,"ID":[1,2,3]}`)), `"vmgenid" section`},
	} {
		_, err := DecodeState(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeState replaces one section of a good state file with
// arbitrary bytes (the checksums would stop most mutations of a whole
// file before DecodeState sees them) and decodes it, then checks what
// decodes against a machine: nothing may panic.
func FuzzDecodeState(f *testing.F) {
	good, err := snapshot.Decode(sampleFile(f))
	if err != nil {
		f.Fatal(err)
	}
	for i, s := range good.Sections {
		f.Add(uint8(i), s.Data)
	}
	f.Fuzz(func(t *testing.T, i uint8, data []byte) {
		file := &snapshot.File{Header: good.Header, Sections: append([]snapshot.Section(nil), good.Sections...)}
		n := int(i) % len(file.Sections)
		file.Sections[n] = snapshot.Section{ID: file.Sections[n].ID, Data: data}
		st, err := DecodeState(file)
		if err != nil {
			return
		}
		_ = st.check(Config{CPUs: st.CPUs, Memory: st.Memory, Disks: []Disk{{Name: "x"}}, NICs: []NIC{{}}, RNG: true})
		// What decodes, paddock may write again (a warm template's
		// state): it must encode, and decode to the same.
		again, err := st.File(good.Header)
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		back, err := DecodeState(again)
		if err != nil {
			t.Fatalf("a re-encoded state does not decode: %v", err)
		}
		if !reflect.DeepEqual(back, st) {
			t.Fatalf("re-encoding changed the state")
		}
	})
}

// TestCheckGenerationIDAddr: a state may put the generation ID only in
// the reserved firmware area, where writing a new ID on restore cannot
// touch memory the guest's OS uses.
func TestCheckGenerationIDAddr(t *testing.T) {
	cfg := Config{CPUs: 2, Memory: 256 << 20, Disks: []Disk{{Name: "x"}}, NICs: []NIC{{}}, RNG: true}
	for _, c := range []struct {
		addr uint64
		ok   bool
	}{
		{VMGenIDAddr, true}, {ACPIStart, true}, {biosEnd - vmgenid.Len, true},
		{0, false}, {ACPIStart - 8, false}, {biosEnd - 8, false}, {biosEnd, false}, {0x100000, false}, {^uint64(7), false},
	} {
		st := sampleState(t)
		st.VMGenID.Addr = c.addr
		err := st.check(cfg)
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "outside the reserved firmware area")) {
			t.Errorf("generation ID at %#x: %v, want ok = %v", c.addr, err, c.ok)
		}
	}
}

// TestStateFileVersion2: a state file of format version 2
// (testdata/state-v2.golden, kept as that version wrote it, its byte
// strings plain base64) decodes to the same state as today's file: a
// snapshot taken before version 3 restores as it is.
func TestStateFileVersion2(t *testing.T) {
	f, err := snapshot.ReadFile(filepath.Join("testdata", "state-v2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, sampleState(t)) {
		t.Fatalf("decoded state differs from the sample:\n got %+v\nwant %+v", st, sampleState(t))
	}
	old, err := os.ReadFile(filepath.Join("testdata", "state-v2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if now := sampleFile(t); 2*len(now) > len(old) {
		t.Errorf("the state file is %d bytes, version 2's was %d: the zeros of its byte strings are not left out", len(now), len(old))
	}
}
