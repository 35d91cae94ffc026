package machine

import (
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/boot"
)

func TestE820Map(t *testing.T) {
	tests := []struct {
		memory uint64
		ram    uint64 // total RAM the map reports
		high   bool   // a region at 4 GiB
	}{
		{64 << 20, 64<<20 - (0x10_0000 - ebdaStart), false},
		{LowRAMMax, LowRAMMax - (0x10_0000 - ebdaStart), false},
		{8 << 30, 8<<30 - (0x10_0000 - ebdaStart), true},
	}
	for _, tt := range tests {
		m, err := e820Map(tt.memory)
		if err != nil {
			t.Fatal(err)
		}
		var ram uint64
		var high bool
		for i, e := range m {
			if e.Type == boot.E820RAM {
				ram += e.Size
			}
			if e.Addr == HighRAMStart {
				high = true
			}
			for _, o := range m[i+1:] {
				if e.Addr < o.Addr+o.Size && o.Addr < e.Addr+e.Size {
					t.Errorf("memory %d: %+v overlaps %+v", tt.memory, e, o)
				}
			}
			if e.Type == boot.E820RAM && e.Addr < biosEnd && e.Addr+e.Size > ACPIStart {
				t.Errorf("RAM entry %+v covers the ACPI area", e)
			}
		}
		if ram != tt.ram || high != tt.high {
			t.Errorf("memory %#x: RAM %#x high %v, want %#x %v", tt.memory, ram, high, tt.ram, tt.high)
		}
	}
	if _, err := e820Map(MinMemory - 1); err == nil {
		t.Error("memory below the minimum accepted")
	}
}

func TestMemorySlice(t *testing.T) {
	m, err := newMemory(LowRAMMax + 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if b, err := m.Slice(HighRAMStart+10, 4); err != nil || len(b) != 4 {
		t.Fatalf("high slice: %v", err)
	}
	for i, b := range m.maps {
		if hostAddr(b)%hugePageSize != 0 {
			t.Errorf("region %d mapped at %#x: not 2 MiB aligned (no huge nested pages)", i, hostAddr(b))
		}
		b[0], b[len(b)-1] = 1, 1 // both ends are mapped
	}
	for _, r := range [][2]uint64{
		{LowRAMMax - 2, 4},             // crosses into the hole
		{LowRAMMax, 1},                 // in the hole
		{HighRAMStart + 64<<20 - 1, 2}, // past the end
	} {
		if _, err := m.Slice(r[0], r[1]); err == nil {
			t.Errorf("Slice(%#x, %d) succeeded", r[0], r[1])
		}
	}
}

type nopPort struct{ id int }

func (nopPort) ReadPort(uint16, []byte)  {}
func (nopPort) WritePort(uint16, []byte) {}

type fillMMIO byte

func (f fillMMIO) ReadMMIO(_ uint64, d []byte) {
	for i := range d {
		d[i] = byte(f)
	}
}
func (fillMMIO) WriteMMIO(uint64, []byte) {}

func TestBuses(t *testing.T) {
	pb := newPortBus()
	if err := pb.register(0x3f8, 8, nopPort{1}); err != nil {
		t.Fatal(err)
	}
	if err := pb.register(0x3ff, 2, nopPort{2}); err == nil {
		t.Error("overlapping port range accepted")
	}
	if err := pb.register(0xffff, 2, nopPort{3}); err == nil {
		t.Error("port range past 0xffff accepted")
	}
	d := []byte{0}
	if pb.read(0x400, d) || d[0] != 0xff {
		t.Errorf("unclaimed port read = %v %#x", pb.read(0x400, d), d[0])
	}
	if !pb.read(0x3ff, d) {
		t.Error("claimed port not dispatched")
	}

	var mb mmioBus
	for _, r := range []struct {
		base, size uint64
		ok         bool
	}{
		{0x1000, 0x1000, true}, {0x3000, 0x1000, true}, {0x1800, 0x100, false},
		{0x2fff, 2, false}, {0x2000, 0x1000, true}, {0x5000, 0, false}, {^uint64(0), 2, false},
	} {
		err := mb.register(r.base, r.size, fillMMIO(r.base>>12))
		if (err == nil) != r.ok {
			t.Errorf("register(%#x, %#x) = %v, want ok=%v", r.base, r.size, err, r.ok)
		}
	}
	buf := make([]byte, 4)
	for _, c := range []struct {
		addr uint64
		want byte
		hit  bool
	}{{0x1000, 1, true}, {0x2ffc, 2, true}, {0x2ffe, 0xff, false}, {0x3000, 3, true}, {0x4000, 0xff, false}, {0, 0xff, false}} {
		hit := mb.read(c.addr, buf)
		if hit != c.hit || buf[0] != c.want {
			t.Errorf("read %#x = %v %#x, want %v %#x", c.addr, hit, buf[0], c.hit, c.want)
		}
	}
	if !mb.unregister(0x2000) || mb.read(0x2000, buf) {
		t.Error("unregister did not remove the window")
	}
}
