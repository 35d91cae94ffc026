package pci

import "testing"

func TestAllocator(t *testing.T) {
	io := Window{0xc000, 0x1000}
	mem32 := Window{0xc000_0000, 0x2000_0000}
	mem64 := Window{0x40_0000_0000, 64 << 30}
	type req struct {
		kind    BARKind
		size    uint64
		want    uint64
		wantErr bool
	}
	tests := []struct {
		name         string
		io, m32, m64 Window
		reqs         []req
	}{
		{"natural alignment", io, mem32, mem64, []req{
			{BARMem32, 0x10, 0xc000_0000, false},
			{BARMem32, 0x1000, 0xc000_1000, false},
			{BARMem32, 0x100_0000, 0xc100_0000, false},
			{BARMem32, 0x10, 0xc200_0000, false},
			{BARIO, 0x20, 0xc000, false},
			{BARIO, 0x100, 0xc100, false},
			{BARMem64, 0x4000, 0x40_0000_0000, false},
			{BARMem64, 8 << 30, 0x42_0000_0000, false},
		}},
		{"64-bit BARs fall back to the 32-bit window", io, mem32, Window{}, []req{
			{BARMem64, 0x4000, 0xc000_0000, false},
		}},
		{"exhaustion", Window{0x1000, 0x40}, Window{0xc000_0000, 0x2000}, Window{}, []req{
			{BARIO, 0x40, 0x1000, false},
			{BARIO, 0x4, 0, true},
			{BARMem32, 0x1000, 0xc000_0000, false},
			{BARMem32, 0x2000, 0, true}, // aligned start is past the window
			{BARMem32, 0x1000, 0xc000_1000, false},
			{BARMem32, 0x10, 0, true},
		}},
		{"bad requests", io, mem32, mem64, []req{
			{BARMem32, 0x3000, 0, true},
			{BARMem32, 0, 0, true},
			{BARNone, 0x1000, 0, true},
		}},
		{"no room in an absent window", Window{}, mem32, mem64, []req{
			{BARIO, 0x10, 0, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAllocator(tc.io, tc.m32, tc.m64)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range tc.reqs {
				got, err := a.Allocate(r.kind, r.size)
				if (err != nil) != r.wantErr {
					t.Fatalf("request %d (%v %#x): error %v, want error %v", i, r.kind, r.size, err, r.wantErr)
				}
				if err == nil && got != r.want {
					t.Fatalf("request %d (%v %#x) = %#x, want %#x", i, r.kind, r.size, got, r.want)
				}
			}
		})
	}
}

func TestNewAllocatorErrors(t *testing.T) {
	tests := []struct {
		name         string
		io, m32, m64 Window
	}{
		{"I/O window past 64 KiB", Window{0xf000, 0x2000}, Window{}, Window{}},
		{"32-bit window past 4 GiB", Window{}, Window{0xf000_0000, 0x2000_0000}, Window{}},
		{"64-bit window wraps", Window{}, Window{}, Window{^uint64(0) - 10, 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAllocator(tc.io, tc.m32, tc.m64); err == nil {
				t.Fatal("NewAllocator accepted it")
			}
		})
	}
}

func TestAssign(t *testing.T) {
	a, err := NewAllocator(Window{0xc000, 0x1000}, Window{0xc000_0000, 0x1000_0000}, Window{0x40_0000_0000, 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	c := mustConfigSpace(t, fuzzHeader, nil)
	if err := a.Assign(c); err != nil {
		t.Fatal(err)
	}
	want := []uint64{0xc000, 0xc000_0000, 0x40_0000_0000}
	for i, w := range want {
		if got := c.BARMapping(i).Addr; got != w {
			t.Fatalf("BAR %d assigned %#x, want %#x", i, got, w)
		}
	}
	// Linux reads the assigned addresses back while sizing.
	if got := linuxReadBase(c, 2); got.addr != 0x40_0000_0000 || got.size != 0x4000 {
		t.Fatalf("Linux reads BAR 2 as %+v", got)
	}
	small, err := NewAllocator(Window{}, Window{0xc000_0000, 0x1000}, Window{})
	if err != nil {
		t.Fatal(err)
	}
	if err := small.Assign(mustConfigSpace(t, fuzzHeader, nil)); err == nil {
		t.Fatal("Assign succeeded without an I/O window")
	}
}
