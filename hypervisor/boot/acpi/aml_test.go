package acpi

import (
	"bytes"
	"strings"
	"testing"
)

// The expected bytes below are worked out by hand from ACPI 6.5 chapter 20
// (AML grammar and byte values); TestDSDTMatchesIASL cross-checks whole
// tables against iasl.

func TestAMLNameString(t *testing.T) {
	for _, c := range []struct {
		path string
		want string
	}{
		{"_S5", "_S5_"},
		{"PCI0", "PCI0"},
		{"A", "A___"},
		{`\_SB`, `\_SB_`},
		{`\_SB.PCI0`, "\\\x2e_SB_PCI0"},
		{`\_SB.PCI0.MRES`, "\\\x2f\x03_SB_PCI0MRES"},
		{"PCI0._CRS", "\x2ePCI0_CRS"},
		{"^^_UID", "^^_UID"},
		{`\`, "\\\x00"},
	} {
		a := &aml{}
		if got := a.nameString(c.path); string(got) != c.want || a.err != nil {
			t.Errorf("nameString(%q) = % x (err %v), want % x", c.path, got, a.err, []byte(c.want))
		}
	}
	for _, bad := range []string{"", "PCI00", "pci0", "0ABC", "A.B..C", "A-B", `\_SB.`, "^"} {
		a := &aml{}
		a.nameString(bad)
		if bad == "^" {
			// ParentPrefix + NullName is valid AML.
			if a.err != nil {
				t.Errorf("nameString(%q): %v", bad, a.err)
			}
			continue
		}
		if a.err == nil {
			t.Errorf("nameString(%q): no error", bad)
		}
	}
}

func TestAMLInteger(t *testing.T) {
	for _, c := range []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{2, []byte{0x0A, 0x02}},
		{0xFF, []byte{0x0A, 0xFF}},
		{0x100, []byte{0x0B, 0x00, 0x01}},
		{0xFFFF, []byte{0x0B, 0xFF, 0xFF}},
		{0x10000, []byte{0x0C, 0x00, 0x00, 0x01, 0x00}},
		{0xFEC00000, []byte{0x0C, 0x00, 0x00, 0xC0, 0xFE}},
		{0x1_0000_0000, []byte{0x0E, 0, 0, 0, 0, 1, 0, 0, 0}},
		{^uint64(0), []byte{0x0E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
	} {
		if got := (&aml{}).integer(c.v); !bytes.Equal(got, c.want) {
			t.Errorf("integer(%#x) = % x, want % x", c.v, got, c.want)
		}
	}
}

func TestAMLPkgLength(t *testing.T) {
	for _, c := range []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{0x3E, []byte{0x3F}},                        // total 0x3F: one byte
		{0x3F, []byte{0x41, 0x04}},                  // total 0x41: two bytes, low nibble 1, then 0x04
		{0xFFD, []byte{0x4F, 0xFF}},                 // total 0xFFF: the largest two-byte length
		{0xFFE, []byte{0x81, 0x00, 0x01}},           // total 0x1001
		{0xFFFFC, []byte{0x8F, 0xFF, 0xFF}},         // total 0xFFFFF: the largest three-byte length
		{0xFFFFD, []byte{0xC1, 0x00, 0x00, 0x01}},   // 0xFFFFD+3 does not fit 20 bits: total 0x100001
		{1<<28 - 5, []byte{0xCF, 0xFF, 0xFF, 0xFF}}, // total 0xFFFFFFF: the largest PkgLength
	} {
		a := &aml{}
		got := a.pkgLength(c.body)
		if !bytes.Equal(got, c.want) || a.err != nil {
			t.Errorf("pkgLength(%#x) = % x (err %v), want % x", c.body, got, a.err, c.want)
		}
		if dec := decodePkgLength(got); dec != c.body+len(got) {
			t.Errorf("pkgLength(%#x) decodes to %#x, want %#x", c.body, dec, c.body+len(got))
		}
	}
	a := &aml{}
	a.pkgLength(1 << 28)
	if a.err == nil {
		t.Errorf("pkgLength(1<<28): no error")
	}
}

// decodePkgLength reads a PkgLength as ACPI 6.5, 20.2.4 defines it.
func decodePkgLength(b []byte) int {
	n := int(b[0] >> 6)
	if n == 0 {
		return int(b[0] & 0x3F)
	}
	v := int(b[0] & 0x0F)
	for i := 1; i <= n; i++ {
		v |= int(b[i]) << (4 + 8*(i-1))
	}
	return v
}

func TestAMLObjects(t *testing.T) {
	a := &aml{}
	for _, c := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"String", a.str("abc"), []byte{0x0D, 'a', 'b', 'c', 0}},
		{"EisaId PNP0A03", a.eisaID("PNP0A03"), []byte{0x0C, 0x41, 0xD0, 0x0A, 0x03}},
		{"EisaId PNP0A08", a.eisaID("PNP0A08"), []byte{0x0C, 0x41, 0xD0, 0x0A, 0x08}},
		{"EisaId PNP0C02", a.eisaID("PNP0C02"), []byte{0x0C, 0x41, 0xD0, 0x0C, 0x02}},
		{"Name(_HID, EisaId(PNP0A08))", a.name("_HID", a.eisaID("PNP0A08")),
			[]byte{0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x0A, 0x08}},
		// PkgLength = itself (1) + NumElements (1) + 0A 05 0A 05 00 00 (6) = 8.
		{"Name(_S5, Package{5,5,0,0})", a.name("_S5", a.pkg(a.integer(5), a.integer(5), a.integer(0), a.integer(0))),
			[]byte{0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00}},
		{"Package{}", a.pkg(), []byte{0x12, 0x02, 0x00}},
		// PkgLength = 1 + BufferSize 0A 03 (2) + 3 bytes = 6.
		{"Buffer{1,2,3}", a.buffer([]byte{1, 2, 3}), []byte{0x11, 0x06, 0x0A, 0x03, 1, 2, 3}},
		{"Buffer{}", a.buffer(nil), []byte{0x11, 0x02, 0x00}},
		{"Scope(\\_SB){}", a.scope(`\_SB`), []byte{0x10, 0x06, '\\', '_', 'S', 'B', '_'}},
		{"Device(PCI0){Name(_UID, Zero)}", a.device("PCI0", a.name("_UID", a.integer(0))),
			[]byte{0x5B, 0x82, 0x0B, 'P', 'C', 'I', '0', 0x08, '_', 'U', 'I', 'D', 0x00}},
		// Method(_STA, 0, NotSerialized){Return(0x0F)}
		{"Method(_STA)", a.method("_STA", 0, false, a.ret(a.integer(0x0F))),
			[]byte{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F}},
		// Method(_DSM, 4, Serialized): flags 0b1100 = 0x0C.
		{"Method(_DSM, 4, Serialized)", a.method("_DSM", 4, true, a.ret(a.integer(0))),
			[]byte{0x14, 0x08, '_', 'D', 'S', 'M', 0x0C, 0xA4, 0x00}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = % x, want % x", c.name, c.got, c.want)
		}
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
}

// TestAMLStatements covers the terms of a method body: locals and
// arguments, Store, And, If, Notify, and the operation region and field
// they read through.
func TestAMLStatements(t *testing.T) {
	a := &aml{}
	for _, c := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"Local0", a.local(0), []byte{0x60}},
		{"Local7", a.local(7), []byte{0x67}},
		{"Arg0", a.arg(0), []byte{0x68}},
		{"Arg6", a.arg(6), []byte{0x6E}},
		// Store(GDAT, Local0): StoreOp TermArg SuperName.
		{"Local0 = GDAT", a.store(a.nameString("GDAT"), a.local(0)), []byte{0x70, 'G', 'D', 'A', 'T', 0x60}},
		// And(Local0, One) with a NullName target.
		{"Local0 & One", a.and(a.local(0), a.integer(1)), []byte{0x7B, 0x60, 0x01, 0x00}},
		// PkgLength = 1 + And (4) + Return One (2) = 7.
		{"If (Local0 & One) { Return (One) }", a.ifThen(a.and(a.local(0), a.integer(1)), a.ret(a.integer(1))),
			[]byte{0xA0, 0x07, 0x7B, 0x60, 0x01, 0x00, 0xA4, 0x01}},
		{"Notify(\\_SB.VGEN, 0x80)", a.notify(`\_SB.VGEN`, 0x80),
			[]byte{0x86, '\\', 0x2E, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0A, 0x80}},
		{"OperationRegion(GDST, SystemIO, 0x610, 1)", a.opRegion("GDST", regionSystemIO, 0x610, 1),
			[]byte{0x5B, 0x80, 'G', 'D', 'S', 'T', 0x01, 0x0B, 0x10, 0x06, 0x01}},
		// PkgLength = 1 + name (4) + flags (1) + GDAT (4) + width (1) = 11.
		{"Field(GDST, ByteAcc, NoLock, Preserve){GDAT, 8}", a.field("GDST", fieldByteAcc, fieldUnit{"GDAT", 8}),
			[]byte{0x5B, 0x81, 0x0B, 'G', 'D', 'S', 'T', 0x01, 'G', 'D', 'A', 'T', 0x08}},
		// A width of 0x40 bits takes two bytes: 0x40 | low nibble 0, then
		// 0x04. PkgLength = 1 + 4 + 1 + (4 + 2) + (4 + 1) = 17.
		{"Field(R, ByteAcc){A, 64, B, 1}", a.field("R", fieldByteAcc, fieldUnit{"A", 64}, fieldUnit{"B", 1}),
			[]byte{0x5B, 0x81, 0x11, 'R', '_', '_', '_', 0x01, 'A', '_', '_', '_', 0x40, 0x04, 'B', '_', '_', '_', 0x01}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = % x, want % x", c.name, c.got, c.want)
		}
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
}

func TestAMLLargeObjects(t *testing.T) {
	a := &aml{}
	// 300 elements need VarPackageOp with a TermArg count.
	elems := make([][]byte, 300)
	for i := range elems {
		elems[i] = a.integer(uint64(i % 2))
	}
	p := a.pkg(elems...)
	// 1 (op) + 2 (PkgLength of 3+300) + 3 (0B 2C 01) + 300.
	if p[0] != 0x13 || decodePkgLength(p[1:]) != 2+3+300 || !bytes.Equal(p[3:6], []byte{0x0B, 0x2C, 0x01}) || len(p) != 306 {
		t.Errorf("VarPackage of 300: % x ... (len %d)", p[:8], len(p))
	}
	// A buffer over 63 bytes takes a two-byte PkgLength.
	b := a.buffer(bytes.Repeat([]byte{0xAA}, 100))
	if b[0] != 0x11 || decodePkgLength(b[1:]) != 2+2+100 || b[3] != 0x0A || b[4] != 100 {
		t.Errorf("Buffer of 100: % x", b[:6])
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
}

func TestAMLErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		use  func(a *aml)
		want string
	}{
		{"bad EISA letter", func(a *aml) { a.eisaID("pnp0A03") }, "not an upper-case letter"},
		{"bad EISA digit", func(a *aml) { a.eisaID("PNP0G03") }, "not a hex digit"},
		{"short EISA", func(a *aml) { a.eisaID("PNP0A0") }, "not 7 characters"},
		{"NUL in string", func(a *aml) { a.str("a\x00b") }, "not allowed"},
		{"too many arguments", func(a *aml) { a.method("_DSM", 8, false) }, "8 arguments"},
		{"bad segment", func(a *aml) { a.device("PCI0.x") }, `segment "x" has invalid character`},
		{"Local8", func(a *aml) { a.local(8) }, "Local8 does not exist"},
		{"Arg7", func(a *aml) { a.arg(7) }, "Arg7 does not exist"},
		{"empty field", func(a *aml) { a.field("R", fieldByteAcc, fieldUnit{"A", 0}) }, `field "A": 0 bits`},
	} {
		a := &aml{}
		c.use(a)
		if a.err == nil || !strings.Contains(a.err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, a.err, c.want)
		}
	}
	// The first error is kept.
	a := &aml{}
	a.eisaID("x")
	a.nameString("toolong")
	if !strings.Contains(a.err.Error(), "EISA") {
		t.Errorf("first error not kept: %v", a.err)
	}
}
