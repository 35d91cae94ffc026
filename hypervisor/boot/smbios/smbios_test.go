package smbios

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// testBase is where the machine puts the tables.
const testBase = 0xF0000

// testUUID is 00112233-4455-6677-8899-aabbccddeeff in RFC 4122 order.
var testUUID = [16]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// parsed is one structure read back from a table.
type parsed struct {
	typ     byte
	handle  uint16
	b       []byte // the formatted area
	strings []string
}

// str returns the string a formatted-area byte refers to ("" for none).
func (p parsed) str(t *testing.T, off int) string {
	t.Helper()
	n := int(p.b[off])
	if n == 0 {
		return ""
	}
	if n > len(p.strings) {
		t.Fatalf("type %d: string %d at %#x, but it has %d strings", p.typ, n, off, len(p.strings))
	}
	return p.strings[n-1]
}

// parseTable walks a structure table as DSP0134 6.1.3 defines it and
// as Linux's dmi_table does: formatted area, then strings up to a double
// NUL, up to the end-of-table structure.
func parseTable(t *testing.T, table []byte) []parsed {
	t.Helper()
	var out []parsed
	for off := 0; off < len(table); {
		if off+4 > len(table) {
			t.Fatalf("structure header at %#x runs past the table (%d bytes)", off, len(table))
		}
		length := int(table[off+1])
		if length < 4 || off+length > len(table) {
			t.Fatalf("structure at %#x: length %d", off, length)
		}
		p := parsed{typ: table[off], handle: le.Uint16(table[off+2:]), b: table[off : off+length]}
		end := bytes.Index(table[off+length:], []byte{0, 0})
		if end < 0 {
			t.Fatalf("structure at %#x (type %d): no double NUL after its strings", off, p.typ)
		}
		if end > 0 {
			p.strings = strings.Split(string(table[off+length:off+length+end]), "\x00")
		}
		out = append(out, p)
		off += length + end + 2
		if p.typ == typeEnd {
			if off != len(table) {
				t.Errorf("%d bytes after the end-of-table structure", len(table)-off)
			}
			break
		}
	}
	return out
}

func sum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return s
}

func TestBuild(t *testing.T) {
	cfg := Config{UUID: testUUID, CPUs: 3, Version: "1.2.3"}
	blob, err := Build(cfg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	table := blob[tableOffset:]

	ep3 := blob[ep3Offset : ep3Offset+ep3Len]
	if string(ep3[:5]) != "_SM3_" || ep3[6] != ep3Len || sum(ep3) != 0 {
		t.Errorf("3.0 entry point: anchor %q, length %d, checksum sum %d", ep3[:5], ep3[6], sum(ep3))
	}
	if ep3[7] != 3 || ep3[8] != 0 || ep3[9] != 0 || ep3[10] != 1 {
		t.Errorf("3.0 entry point: version %d.%d.%d, revision %d; want 3.0.0, 1", ep3[7], ep3[8], ep3[9], ep3[10])
	}
	if got := le.Uint64(ep3[0x10:]); got != testBase+tableOffset {
		t.Errorf("3.0 entry point: table at %#x, want %#x", got, testBase+tableOffset)
	}
	if got := le.Uint32(ep3[0x0C:]); int(got) != len(table) {
		t.Errorf("3.0 entry point: table size %d, want %d", got, len(table))
	}

	ep2 := blob[ep2Offset : ep2Offset+ep2Len]
	if string(ep2[:4]) != "_SM_" || ep2[5] != ep2Len || sum(ep2) != 0 {
		t.Errorf("2.1 entry point: anchor %q, length %d, checksum sum %d", ep2[:4], ep2[5], sum(ep2))
	}
	if string(ep2[0x10:0x15]) != "_DMI_" || sum(ep2[0x10:]) != 0 {
		t.Errorf("2.1 entry point: intermediate anchor %q, checksum sum %d", ep2[0x10:0x15], sum(ep2[0x10:]))
	}
	if got := le.Uint32(ep2[0x18:]); got != testBase+tableOffset {
		t.Errorf("2.1 entry point: table at %#x, want %#x", got, testBase+tableOffset)
	}
	if got := le.Uint16(ep2[0x16:]); int(got) != len(table) {
		t.Errorf("2.1 entry point: table length %d, want %d", got, len(table))
	}

	structs := parseTable(t, table)
	var types []byte
	handles := map[uint16]bool{}
	largest := 0
	for _, s := range structs {
		types = append(types, s.typ)
		if handles[s.handle] {
			t.Errorf("handle %d used twice", s.handle)
		}
		handles[s.handle] = true
		n := len(s.b) + 2
		for _, str := range s.strings {
			n += len(str) + 1
		}
		if len(s.strings) > 0 {
			n--
		}
		largest = max(largest, n)
	}
	if !bytes.Equal(types, []byte{typeBIOS, typeSystem, typeChassis, typeProcessor, typeBootInfo, typeEnd}) {
		t.Fatalf("structure types %v", types)
	}
	if got := le.Uint16(ep2[0x1C:]); int(got) != len(structs) {
		t.Errorf("2.1 entry point: %d structures, want %d", got, len(structs))
	}
	if got := le.Uint16(ep2[0x08:]); int(got) != largest {
		t.Errorf("2.1 entry point: largest structure %d bytes, want %d", got, largest)
	}

	lengths := map[byte]int{typeBIOS: biosLen, typeSystem: systemLen, typeChassis: chassisLen, typeProcessor: processorLen, typeBootInfo: bootInfoLen, typeEnd: endLen}
	for _, s := range structs {
		if len(s.b) != lengths[s.typ] {
			t.Errorf("type %d: formatted area %#x bytes, want %#x", s.typ, len(s.b), lengths[s.typ])
		}
	}

	bios, sys, chassis, cpu, boot := structs[0], structs[1], structs[2], structs[3], structs[4]
	if v, ver := bios.str(t, 0x04), bios.str(t, 0x05); v != Manufacturer || ver != "1.2.3" {
		t.Errorf("BIOS vendor %q, version %q", v, ver)
	}
	if bios.b[0x13]&(1<<4) == 0 {
		t.Error("BIOS characteristics do not say the system is a virtual machine")
	}
	if m, p, f := sys.str(t, 0x04), sys.str(t, 0x05), sys.str(t, 0x1A); m != Manufacturer || p != Product || f != Family {
		t.Errorf("system %q %q family %q", m, p, f)
	}
	wantUUID := []byte{0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	if got := sys.b[0x08:0x18]; !bytes.Equal(got, wantUUID) {
		t.Errorf("system UUID bytes % x, want % x (first three fields little-endian)", got, wantUUID)
	}
	if chassis.b[0x05] != chassisOther || chassis.str(t, 0x04) != Manufacturer {
		t.Errorf("chassis type %#x, maker %q", chassis.b[0x05], chassis.str(t, 0x04))
	}
	if cpu.b[0x23] != 3 || cpu.b[0x24] != 3 || cpu.b[0x25] != 3 || le.Uint16(cpu.b[0x2A:]) != 3 {
		t.Errorf("processor: cores %d, enabled %d, threads %d, cores (3.0) %d; want 3", cpu.b[0x23], cpu.b[0x24], cpu.b[0x25], le.Uint16(cpu.b[0x2A:]))
	}
	if cpu.b[0x18] != statusEnabled {
		t.Errorf("processor status %#x, want populated and enabled", cpu.b[0x18])
	}
	if boot.b[0x0A] != bootNoErrors {
		t.Errorf("boot status %#x", boot.b[0x0A])
	}
}

// TestBuildNoStrings checks a structure without strings ends in two NULs
// and that an empty version leaves the version fields empty.
func TestBuildNoStrings(t *testing.T) {
	blob, err := Build(Config{CPUs: 1}, testBase)
	if err != nil {
		t.Fatal(err)
	}
	structs := parseTable(t, blob[tableOffset:])
	if v := structs[0].b[0x05]; v != 0 {
		t.Errorf("BIOS version string %d, want none", v)
	}
	if got := structs[1].b[0x08:0x18]; !bytes.Equal(got, make([]byte, 16)) {
		t.Errorf("UUID % x without one, want zeros (no UUID)", got)
	}
	boot := structs[4]
	if len(boot.strings) != 0 || !bytes.HasSuffix(blob, []byte{typeEnd, endLen, 5, 0, 0, 0}) {
		t.Errorf("table ends % x", blob[len(blob)-8:])
	}
	if structs[3].b[0x26]&processorMulti != 0 {
		t.Error("one core described as multi-core")
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		base uint64
		want string
	}{
		{Config{CPUs: 1}, testBase + 8, "base 0xf0008: must be 16-byte aligned"},
		{Config{CPUs: 0}, testBase, "CPUs = 0: must be 1 to 255"},
		{Config{CPUs: 256}, testBase, "CPUs = 256"},
		{Config{CPUs: 1, Version: "a\x00b"}, testBase, "contains a NUL byte"},
		{Config{CPUs: 1, Version: strings.Repeat("v", 65)}, testBase, "65 bytes long"},
		{Config{CPUs: 1}, 1<<32 - 0x100, "above 4 GiB"},
	} {
		_, err := Build(tc.cfg, tc.base)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%+v, %#x) = %v; want %q", tc.cfg, tc.base, err, tc.want)
		}
	}
}

// ExampleBuild shows where the guest finds the UUID.
func ExampleBuild() {
	blob, _ := Build(Config{UUID: testUUID, CPUs: 1}, 0xF0000)
	fmt.Printf("%s at 0xf0000, %s at 0xf0020, table at %#x\n", blob[0:5], blob[0x20:0x24], le.Uint64(blob[0x10:]))
	// Output: _SM3_ at 0xf0000, _SM_ at 0xf0020, table at 0xf0040
}
