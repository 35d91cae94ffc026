package kvm

import (
	"encoding/binary"
	"testing"
)

// Pure unit tests of the data types: no /dev/kvm needed.

func TestLAPICStateRegisters(t *testing.T) {
	var s LAPICState
	s.Set32(LAPICID, 3<<24)
	s.Set32(LAPICTimerDivide, 0xB)
	if s[LAPICID+3] != 3 || s[LAPICID] != 0 {
		t.Errorf("APIC ID bytes % x, want little-endian 3<<24", s[LAPICID:LAPICID+4])
	}
	tests := []struct {
		reg  uint32
		want uint32
	}{
		{LAPICID, 3 << 24},
		{LAPICTimerDivide, 0xB},
		{LAPICSVR, 0},
		{0x3FC, 0},   // last word of the page
		{0x3FE, 0},   // unaligned
		{0x400, 0},   // past the page
		{1 << 31, 0}, // far past the page
	}
	for _, tc := range tests {
		if got := s.Get32(tc.reg); got != tc.want {
			t.Errorf("Get32(%#x) = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
	before := s
	s.Set32(0x400, 1)
	s.Set32(0x3FE, 1)
	s.Set32(^uint32(0), 1)
	if s != before {
		t.Error("Set32 outside the page or unaligned changed the state")
	}
	s.Set32(0x3FC, 0xAABBCCDD)
	if s.Get32(0x3FC) != 0xAABBCCDD {
		t.Error("last register of the page not stored")
	}
}

func TestIRQChipEncoding(t *testing.T) {
	var c IRQChip
	c.SetPIC(PICState{IRR: 1, IMR: 0xFB, IRQBase: 0x20, ELCR: 0x0C, ELCRMask: 0xF8})
	// Byte offsets of struct kvm_pic_state.
	if c.Chip[1] != 1 || c.Chip[2] != 0xFB || c.Chip[5] != 0x20 || c.Chip[14] != 0x0C || c.Chip[15] != 0xF8 {
		t.Errorf("PIC bytes % x", c.Chip[:16])
	}
	if p := c.PIC(); p.IMR != 0xFB || p.ELCRMask != 0xF8 {
		t.Errorf("PIC decoded %+v", p)
	}

	var io IOAPICState
	io.BaseAddress = 0xFEC00000
	io.ID = 2
	io.RedirTbl[0] = 1 << 16
	io.RedirTbl[23] = 0x0500_0000_0000_A031
	c.SetIOAPIC(io)
	if binary.LittleEndian.Uint64(c.Chip[0:]) != 0xFEC00000 || binary.LittleEndian.Uint32(c.Chip[12:]) != 2 {
		t.Errorf("IOAPIC header bytes % x", c.Chip[:24])
	}
	if got := binary.LittleEndian.Uint64(c.Chip[24+23*8:]); got != uint64(io.RedirTbl[23]) {
		t.Errorf("redirection entry 23 encoded as %#x", got)
	}
	if back := c.IOAPIC(); back != io {
		t.Errorf("IOAPIC decoded %+v, want %+v", back, io)
	}
}

func TestIOAPICRedirection(t *testing.T) {
	type fields struct {
		vector, mode, dest                                    uint8
		logical, pending, activeLow, remoteIRR, level, masked bool
	}
	tests := []struct {
		e    IOAPICRedirection
		want fields
	}{
		{0, fields{}},
		{0x31, fields{vector: 0x31}},
		{1 << 16, fields{masked: true}},
		{0x0000_0000_0000_A731, fields{vector: 0x31, mode: 7, logical: false, activeLow: true, level: true}},
		{0xFF00_0000_0001_5C45, fields{vector: 0x45, mode: 4, logical: true, pending: true, remoteIRR: true, masked: true, dest: 0xFF}},
	}
	for _, tc := range tests {
		got := fields{tc.e.Vector(), tc.e.DeliveryMode(), tc.e.Dest(),
			tc.e.LogicalDest(), tc.e.DeliveryPending(), tc.e.ActiveLow(), tc.e.RemoteIRR(), tc.e.LevelTriggered(), tc.e.Masked()}
		if got != tc.want {
			t.Errorf("%#x decodes as %+v, want %+v", uint64(tc.e), got, tc.want)
		}
	}
}

func TestFindCPUID(t *testing.T) {
	entries := []CPUIDEntry{
		{Function: 0, EAX: 0xD},
		{Function: 4, Index: 0, Flags: CPUIDFlagSignificantIndex, EAX: 40},
		{Function: 4, Index: 1, Flags: CPUIDFlagSignificantIndex, EAX: 41},
		{Function: 7, Index: 0, EBX: 7},
	}
	tests := []struct {
		function, index uint32
		wantEAX         uint32
		wantEBX         uint32
		found           bool
	}{
		{0, 0, 0xD, 0, true},
		{0, 5, 0xD, 0, true}, // index ignored without the flag
		{4, 0, 40, 0, true},
		{4, 1, 41, 0, true},
		{4, 2, 0, 0, false},
		{7, 3, 0, 7, true},
		{0x80000000, 0, 0, 0, false},
	}
	for _, tc := range tests {
		e := FindCPUID(entries, tc.function, tc.index)
		if (e != nil) != tc.found || e != nil && (e.EAX != tc.wantEAX || e.EBX != tc.wantEBX) {
			t.Errorf("FindCPUID(%#x, %d) = %+v", tc.function, tc.index, e)
		}
	}
	if e := FindCPUID(nil, 0, 0); e != nil {
		t.Errorf("FindCPUID(nil) = %+v", e)
	}
	// The result points into the slice, so callers can edit a leaf.
	FindCPUID(entries, 7, 0).EBX = 9
	if entries[3].EBX != 9 {
		t.Error("FindCPUID returned a copy")
	}
}

func TestDirtyBitmapWords(t *testing.T) {
	tests := []struct {
		size uint64
		want int
	}{
		{0, 0},
		{1, 1},
		{PageSize, 1},
		{64 * PageSize, 1},
		{64*PageSize + 1, 2},
		{1 << 30, (1 << 30) / PageSize / 64},
		{1<<30 + PageSize, (1<<30)/PageSize/64 + 1},
	}
	for _, tc := range tests {
		if got := DirtyBitmapWords(tc.size); got != tc.want {
			t.Errorf("DirtyBitmapWords(%#x) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestRoutingEntryToKernel(t *testing.T) {
	tests := []struct {
		in      RoutingEntry
		want    routingEntry
		wantErr bool
	}{
		{
			in:   RoutingEntry{GSI: 4, Type: RoutingIRQChip, Chip: IRQChipIOAPIC, Pin: 4},
			want: routingEntry{GSI: 4, Type: 1, U: [8]uint32{IRQChipIOAPIC, 4}},
		},
		{
			in:   RoutingEntry{GSI: 30, Type: RoutingMSI, AddressLo: 0xFEE01000, AddressHi: 1, Data: 0x4041, DevID: 0x18, Flags: MSIValidDevID},
			want: routingEntry{GSI: 30, Type: 2, Flags: MSIValidDevID, U: [8]uint32{0xFEE01000, 1, 0x4041, 0x18}},
		},
		{in: RoutingEntry{GSI: 1, Type: 0}, wantErr: true},
		{in: RoutingEntry{GSI: 1, Type: 5}, wantErr: true},
	}
	for _, tc := range tests {
		got, err := tc.in.toKernel()
		if (err != nil) != tc.wantErr {
			t.Errorf("%+v: error %v", tc.in, err)
			continue
		}
		if !tc.wantErr && got != tc.want {
			t.Errorf("%+v converts to %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestXStateBV(t *testing.T) {
	x := XSave{Region: make([]byte, XSaveLegacySize)}
	binary.LittleEndian.PutUint64(x.Region[XSaveHeaderOffset:], XCR0X87|XCR0AVX)
	if got := x.XStateBV(); got != XCR0X87|XCR0AVX {
		t.Errorf("XStateBV = %#x", got)
	}
	if got := (XSave{Region: make([]byte, XSaveHeaderOffset+7)}).XStateBV(); got != 0 {
		t.Errorf("XStateBV of a short region = %#x", got)
	}
}

func TestFlexArg(t *testing.T) {
	a := newFlexArg[msrListHeader, uint32](3)
	a.header().NMSRs = 3
	copy(a.entries(), []uint32{0x10, 0x1b, 0xc0000080})
	// struct kvm_msr_list: a 4-byte count, then the indices.
	want := []uint32{3, 0x10, 0x1b, 0xc0000080}
	for i, w := range want {
		if got := uint32(a.buf[i/2] >> (32 * (i % 2))); got != w {
			t.Errorf("word %d = %#x, want %#x", i, got, w)
		}
	}
	if n := len(newFlexArg[cpuid2Header, CPUIDEntry](0).entries()); n != 0 {
		t.Errorf("an empty flexible array has %d entries", n)
	}
	b := newFlexArg[msrsHeader, MSREntry](2)
	b.entries()[1].Data = 0x1122334455667788
	// struct kvm_msrs: 8-byte header, 16-byte entries; entry 1's data at 8+16+8.
	if b.buf[4] != 0x1122334455667788 {
		t.Errorf("kvm_msrs buffer %#x", b.buf)
	}
}
