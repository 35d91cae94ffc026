package pci

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
)

func mustConfigSpace(t testing.TB, h Header, onChange func(BARChange)) *ConfigSpace {
	t.Helper()
	c, err := NewConfigSpace(h, onChange)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func read32(f Function, off int) uint32 {
	b := make([]byte, 4)
	f.ConfigRead(off, b)
	return binary.LittleEndian.Uint32(b)
}

func write32(f Function, off int, v uint32) {
	f.ConfigWrite(off, binary.LittleEndian.AppendUint32(nil, v))
}

func read16(f Function, off int) uint16 {
	b := make([]byte, 2)
	f.ConfigRead(off, b)
	return binary.LittleEndian.Uint16(b)
}

func write16(f Function, off int, v uint16) {
	f.ConfigWrite(off, binary.LittleEndian.AppendUint16(nil, v))
}

// linuxBAR is what Linux's __pci_read_base (drivers/pci/probe.c) learns
// about a BAR: it saves the BAR, writes all ones, reads the size mask,
// restores the BAR, and computes the size with pci_size().
type linuxBAR struct {
	io, mem64, prefetch bool
	addr, size          uint64
}

func linuxReadBase(f Function, bar int) linuxBAR {
	pos := offBAR0 + 4*bar
	cmd := read16(f, offCommand)
	write16(f, offCommand, cmd&^(CommandIO|CommandMemory)) // decoding off while sizing
	l := read32(f, pos)
	write32(f, pos, 0xffffffff)
	sz := read32(f, pos)
	write32(f, pos, l)
	var res linuxBAR
	var l64, sz64, mask64 uint64
	if l&barIO != 0 {
		res.io = true
		l64, sz64, mask64 = uint64(l&^0x3), uint64(sz&^0x3), 0xfffc // IO_SPACE_LIMIT on x86
	} else {
		res.mem64 = l&0x6 == barMem64
		res.prefetch = l&barPrefetch != 0
		l64, sz64, mask64 = uint64(l&^0xf), uint64(sz&^0xf), 0xfffffff0
	}
	if res.mem64 {
		lh := read32(f, pos+4)
		write32(f, pos+4, 0xffffffff)
		szh := read32(f, pos+4)
		write32(f, pos+4, lh)
		l64 |= uint64(lh) << 32
		sz64 |= uint64(szh) << 32
		mask64 |= 0xffffffff << 32
	}
	write16(f, offCommand, cmd)
	res.addr = l64
	if size := mask64 & sz64; size != 0 {
		res.size = size & -size
	}
	return res
}

func TestBARSizing(t *testing.T) {
	tests := []struct {
		name    string
		bar     BAR
		wantLow uint32 // what reading back all ones gives
		want    linuxBAR
	}{
		{"I/O 32 bytes", BAR{Kind: BARIO, Size: 0x20}, 0xffffffe1, linuxBAR{io: true, size: 0x20}},
		{"I/O 256 bytes", BAR{Kind: BARIO, Size: 0x100}, 0xffffff01, linuxBAR{io: true, size: 0x100}},
		{"32-bit 4 KiB", BAR{Kind: BARMem32, Size: 0x1000}, 0xfffff000, linuxBAR{size: 0x1000}},
		{"32-bit 16 bytes", BAR{Kind: BARMem32, Size: 0x10}, 0xfffffff0, linuxBAR{size: 0x10}},
		{"32-bit prefetchable 1 MiB", BAR{Kind: BARMem32, Size: 1 << 20, Prefetchable: true}, 0xfff00008, linuxBAR{prefetch: true, size: 1 << 20}},
		{"64-bit 16 KiB", BAR{Kind: BARMem64, Size: 0x4000}, 0xffffc004, linuxBAR{mem64: true, size: 0x4000}},
		{"64-bit prefetchable 8 GiB", BAR{Kind: BARMem64, Size: 8 << 30, Prefetchable: true}, 0x0000000c, linuxBAR{mem64: true, prefetch: true, size: 8 << 30}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Header{VendorID: 0x1af4, DeviceID: 0x1000}
			h.BARs[2] = tc.bar
			var events []BARChange
			c := mustConfigSpace(t, h, func(ch BARChange) { events = append(events, ch) })
			write32(c, offBAR0+8, 0xffffffff)
			if got := read32(c, offBAR0+8); got != tc.wantLow {
				t.Fatalf("BAR reads %#x after writing all ones, want %#x", got, tc.wantLow)
			}
			write32(c, offBAR0+8, 0)
			if tc.bar.Kind == BARMem64 {
				write32(c, offBAR0+12, 0)
			}
			events = nil
			if got := linuxReadBase(c, 2); got != tc.want {
				t.Fatalf("Linux reads %+v, want %+v", got, tc.want)
			}
			for _, ev := range events {
				if ev.Old.Enabled || ev.New.Enabled {
					t.Fatalf("sizing with decoding off reported an enabled mapping: %+v", ev)
				}
			}
			for i := range numBARs {
				if i != 2 && i != 3 && read32(c, offBAR0+4*i) != 0 {
					t.Fatalf("unimplemented BAR %d reads non-zero", i)
				}
			}
		})
	}
}

func TestBARChanges(t *testing.T) {
	h := Header{VendorID: 0x1af4, DeviceID: 0x1000}
	h.BARs[0] = BAR{Kind: BARIO, Size: 0x40}
	h.BARs[1] = BAR{Kind: BARMem32, Size: 0x1000}
	h.BARs[4] = BAR{Kind: BARMem64, Size: 0x4000}
	var got []BARChange
	c := mustConfigSpace(t, h, func(ch BARChange) { got = append(got, ch) })
	type step struct {
		name string
		do   func()
		want []BARChange
	}
	steps := []step{
		{"firmware programs BAR 1", func() {
			if err := c.ProgramBAR(1, 0xc000_1000); err != nil {
				t.Fatal(err)
			}
		}, []BARChange{{Index: 1, Kind: BARMem32, Size: 0x1000, Old: BARMapping{}, New: BARMapping{Addr: 0xc000_1000}}}},
		{"guest enables memory decoding", func() { write16(c, offCommand, CommandMemory) },
			[]BARChange{
				{Index: 1, Kind: BARMem32, Size: 0x1000, Old: BARMapping{Addr: 0xc000_1000}, New: BARMapping{Addr: 0xc000_1000, Enabled: true}},
				{Index: 4, Kind: BARMem64, Size: 0x4000, Old: BARMapping{}, New: BARMapping{Enabled: true}},
			}},
		{"guest moves BAR 1 while decoding", func() { write32(c, offBAR0+4, 0xc000_8000) },
			[]BARChange{{Index: 1, Kind: BARMem32, Size: 0x1000, Old: BARMapping{Addr: 0xc000_1000, Enabled: true}, New: BARMapping{Addr: 0xc000_8000, Enabled: true}}}},
		{"guest moves the 64-bit BAR above 4 GiB, high dword first", func() {
			write32(c, offBAR0+20, 0x1)
			write32(c, offBAR0+16, 0x4000)
		}, []BARChange{
			{Index: 4, Kind: BARMem64, Size: 0x4000, Old: BARMapping{Enabled: true}, New: BARMapping{Addr: 0x1_0000_0000, Enabled: true}},
			{Index: 4, Kind: BARMem64, Size: 0x4000, Old: BARMapping{Addr: 0x1_0000_0000, Enabled: true}, New: BARMapping{Addr: 0x1_0000_4000, Enabled: true}},
		}},
		{"rewriting the same address reports nothing", func() { write32(c, offBAR0+4, 0xc000_8000) }, nil},
		{"guest enables I/O decoding too", func() { write16(c, offCommand, CommandMemory|CommandIO) },
			[]BARChange{{Index: 0, Kind: BARIO, Size: 0x40, Old: BARMapping{}, New: BARMapping{Enabled: true}}}},
		{"bus mastering changes no mapping", func() { write16(c, offCommand, CommandMemory|CommandIO|CommandBusMaster) }, nil},
		{"guest disables everything", func() { write16(c, offCommand, 0) },
			[]BARChange{
				{Index: 0, Kind: BARIO, Size: 0x40, Old: BARMapping{Enabled: true}, New: BARMapping{}},
				{Index: 1, Kind: BARMem32, Size: 0x1000, Old: BARMapping{Addr: 0xc000_8000, Enabled: true}, New: BARMapping{Addr: 0xc000_8000}},
				{Index: 4, Kind: BARMem64, Size: 0x4000, Old: BARMapping{Addr: 0x1_0000_4000, Enabled: true}, New: BARMapping{Addr: 0x1_0000_4000}},
			}},
	}
	for _, st := range steps {
		got = nil
		st.do()
		if !reflect.DeepEqual(got, st.want) {
			t.Fatalf("%s: notified %+v, want %+v", st.name, got, st.want)
		}
	}
}

func TestProgramBARErrors(t *testing.T) {
	h := Header{VendorID: 0x1af4, DeviceID: 0x1000}
	h.BARs[0] = BAR{Kind: BARMem32, Size: 0x1000}
	h.BARs[1] = BAR{Kind: BARIO, Size: 0x20}
	c := mustConfigSpace(t, h, nil)
	tests := []struct {
		name string
		bar  int
		addr uint64
	}{
		{"unaligned", 0, 0xc000_0800},
		{"above 4 GiB for a 32-bit BAR", 0, 0x1_0000_0000},
		{"unimplemented BAR", 2, 0},
		{"BAR 6", 6, 0},
		{"negative BAR", -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.ProgramBAR(tc.bar, tc.addr); err == nil {
				t.Fatal("ProgramBAR accepted it")
			}
		})
	}
}

func TestHeaderRegisters(t *testing.T) {
	c := mustConfigSpace(t, Header{VendorID: 0x1af4, DeviceID: 0x1041, Revision: 1, Class: 0x020000, InterruptPin: 1}, nil)
	// Identity fields are read-only.
	write32(c, offVendor, 0)
	write32(c, offRevision, 0)
	if read32(c, offVendor) != 0x1041_1af4 || read32(c, offRevision) != 0x0200_0001 {
		t.Fatal("identity fields changed by a guest write")
	}
	write16(c, offCommand, 0xffff)
	if got := read16(c, offCommand); got != commandWritable {
		t.Fatalf("command reads %#x after writing all ones, want %#x", got, commandWritable)
	}
	// Status: error bits are write-1-to-clear, the rest read-only.
	if err := c.SetBytes(offStatus, []byte{0x00, 0x81}); err != nil {
		t.Fatal(err)
	}
	write16(c, offStatus, 0x8000)
	if got := read16(c, offStatus); got != 0x0100 {
		t.Fatalf("status reads %#x, want only the bit not written (0x0100)", got)
	}
	c.SetInterruptStatus(true)
	write16(c, offStatus, 0xffff)
	if got := read16(c, offStatus); got != statusINTx {
		t.Fatalf("status reads %#x, want the read-only interrupt bit", got)
	}
	c.ConfigWrite(offIntLine, []byte{0x0b, 0x04})
	if got := c.Bytes(offIntLine, 2); got[0] != 0x0b || got[1] != 1 {
		t.Fatalf("interrupt line/pin read % x, want 0b 01", got)
	}
	c.ConfigWrite(offCacheLine, []byte{0x10, 0xff, 0xff})
	if got := c.Bytes(offCacheLine, 3); got[0] != 0x10 || got[1] != 0 || got[2] != 0 {
		t.Fatalf("cache line/latency/header type read % x, want 10 00 00", got)
	}
	b := make([]byte, 2)
	c.ConfigRead(ConfigSize-1, b)
	if b[0] != 0 || b[1] != 0xff {
		t.Fatalf("read across the end of the space = % x, want 00 ff", b)
	}
	for _, bad := range []struct {
		off int
		n   int
	}{{offCommand, 2}, {offBAR0 + 3, 2}, {ConfigSize - 1, 2}, {-1, 1}} {
		if err := c.SetBytes(bad.off, make([]byte, bad.n)); err == nil {
			t.Fatalf("SetBytes(%#x, %d bytes) accepted", bad.off, bad.n)
		}
	}
}

func TestCapabilityList(t *testing.T) {
	r := newBridge(t)
	c := mustConfigSpace(t, Header{VendorID: 0x1af4, DeviceID: 0x1041}, nil)
	type capability struct {
		id       uint8
		body     []byte
		writable []byte
	}
	caps := []capability{
		{0x11, []byte{0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00}, []byte{0x00, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0}}, // MSI-X
		{0x09, []byte{14, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil},                                                            // vendor (virtio), odd length
		{0x01, []byte{0x03, 0x00, 0x00, 0x00, 0x00, 0x00}, []byte{0, 0, 0x03, 0x81, 0, 0}},                                     // power management
	}
	var offsets []int
	for _, cp := range caps {
		off, err := c.AddCapability(cp.id, cp.body, cp.writable)
		if err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, off)
	}
	if err := r.h.Attach(2, 0, c); err != nil {
		t.Fatal(err)
	}
	// Walk the list as Linux's pci_find_capability does, through conf1.
	if st := r.conf1Read(0, 2, 0, offStatus, 2); st&statusCapList == 0 {
		t.Fatalf("status %#x lacks the capability list bit", st)
	}
	pos := int(r.conf1Read(0, 2, 0, offCapPtr, 1))
	var walked []int
	for ttl := 48; pos >= headerEnd && ttl > 0; ttl-- {
		if pos&3 != 0 {
			t.Fatalf("capability at %#x is not dword aligned", pos)
		}
		walked = append(walked, pos)
		id := r.conf1Read(0, 2, 0, pos, 1)
		if want := caps[len(walked)-1].id; id != uint32(want) {
			t.Fatalf("capability at %#x has ID %#x, want %#x", pos, id, want)
		}
		pos = int(r.conf1Read(0, 2, 0, pos+1, 1))
	}
	if !reflect.DeepEqual(walked, offsets) {
		t.Fatalf("walked %#x, AddCapability returned %#x", walked, offsets)
	}
	// Only the writable bits of a capability change.
	msix := offsets[0]
	r.conf1Write(0, 2, 0, msix+2, 2, 0xffff)
	if got := r.conf1Read(0, 2, 0, msix+2, 2); got != 0xc003 {
		t.Fatalf("MSI-X message control reads %#x, want 0xc003", got)
	}
	r.conf1Write(0, 2, 0, offsets[1]+2, 1, 0x55)
	if got := r.conf1Read(0, 2, 0, offsets[1]+2, 1); got != 14 {
		t.Fatalf("read-only vendor capability byte changed to %#x", got)
	}
	// The list is full once 256 bytes are used.
	if _, err := c.AddCapability(0x09, make([]byte, 0x100), nil); err == nil {
		t.Fatal("a capability that does not fit below 0x100 was added")
	}
	if _, err := c.AddCapability(0x09, make([]byte, 4), make([]byte, 3)); err == nil {
		t.Fatal("a write mask of the wrong length was accepted")
	}
}

func TestNewConfigSpaceErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Header)
	}{
		{"vendor 0xffff", func(h *Header) { h.VendorID = 0xffff }},
		{"class wider than 24 bits", func(h *Header) { h.Class = 0x1000000 }},
		{"interrupt pin 5", func(h *Header) { h.InterruptPin = 5 }},
		{"size not a power of two", func(h *Header) { h.BARs[0] = BAR{Kind: BARMem32, Size: 0x3000} }},
		{"memory BAR below 16 bytes", func(h *Header) { h.BARs[0] = BAR{Kind: BARMem32, Size: 8} }},
		{"I/O BAR above 64 KiB", func(h *Header) { h.BARs[0] = BAR{Kind: BARIO, Size: 1 << 17} }},
		{"prefetchable I/O BAR", func(h *Header) { h.BARs[0] = BAR{Kind: BARIO, Size: 16, Prefetchable: true} }},
		{"64-bit BAR in the last slot", func(h *Header) { h.BARs[5] = BAR{Kind: BARMem64, Size: 0x1000} }},
		{"BAR in a 64-bit BAR's upper half", func(h *Header) {
			h.BARs[0] = BAR{Kind: BARMem64, Size: 0x1000}
			h.BARs[1] = BAR{Kind: BARIO, Size: 16}
		}},
		{"unknown kind", func(h *Header) { h.BARs[0] = BAR{Kind: 9, Size: 16} }},
		{"size without a kind", func(h *Header) { h.BARs[0] = BAR{Size: 16} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Header{VendorID: 0x1af4, DeviceID: 0x1000}
			tc.mod(&h)
			if _, err := NewConfigSpace(h, nil); err == nil {
				t.Fatal("NewConfigSpace accepted it")
			}
		})
	}
}

func TestConfigSpaceSaveRestore(t *testing.T) {
	h := fuzzHeader
	c := mustConfigSpace(t, h, nil)
	if _, err := c.AddCapability(0x09, []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.ProgramBAR(1, 0xc000_0000); err != nil {
		t.Fatal(err)
	}
	write16(c, offCommand, CommandMemory)
	st := c.Save()

	var events []BARChange
	d := mustConfigSpace(t, h, func(ch BARChange) { events = append(events, ch) })
	if _, err := d.AddCapability(0x09, []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(devicestest.Golden(t, "config-state", st)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !reflect.DeepEqual(d.Save(), st) {
		t.Fatal("state after restore differs")
	}
	want := []BARChange{
		{Index: 1, Kind: BARMem32, Size: 0x1000, New: BARMapping{Addr: 0xc000_0000, Enabled: true}},
		{Index: 2, Kind: BARMem64, Size: 0x4000, New: BARMapping{Enabled: true}},
	}
	if !reflect.DeepEqual(events, want) {
		t.Fatalf("restore notified %+v, want %+v", events, want)
	}

	other := mustConfigSpace(t, Header{VendorID: 0x1af4, DeviceID: 0x1041, Class: 0x020000, InterruptPin: 1}, nil)
	if err := other.Restore(st); err == nil {
		t.Fatal("restored into a function without the same BARs and capabilities")
	}
	if err := d.Restore(ConfigState{Data: make([]byte, 256)}); err == nil {
		t.Fatal("restored a 256-byte space")
	}
	bad := ConfigState{Data: append([]byte(nil), st.Data...)}
	bad.Data[offBAR0+4] |= 0x10 // below the 4 KiB BAR's size
	if err := d.Restore(bad); err == nil {
		t.Fatal("restored a BAR value the BAR cannot hold")
	}
}
