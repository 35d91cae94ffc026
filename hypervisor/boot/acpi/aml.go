package acpi

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// AML opcodes and prefixes (ACPI 6.5, section 20.3 "AML Byte Stream Byte
// Values").
const (
	opZero        = 0x00
	opOne         = 0x01
	opName        = 0x08
	opBytePrefix  = 0x0A
	opWordPrefix  = 0x0B
	opDWordPrefix = 0x0C
	opString      = 0x0D
	opQWordPrefix = 0x0E
	opScope       = 0x10
	opBuffer      = 0x11
	opPackage     = 0x12
	opVarPackage  = 0x13
	opMethod      = 0x14
	opDualName    = 0x2E
	opMultiName   = 0x2F
	opExtPrefix   = 0x5B
	opOpRegion    = 0x80 // after opExtPrefix
	opField       = 0x81 // after opExtPrefix
	opDevice      = 0x82 // after opExtPrefix
	opRootChar    = 0x5C // '\'
	opParentChar  = 0x5E // '^'
	opLocal0      = 0x60 // Local0-Local7: 0x60-0x67
	opArg0        = 0x68 // Arg0-Arg6: 0x68-0x6E
	opStore       = 0x70
	opAnd         = 0x7B
	opNotify      = 0x86
	opIf          = 0xA0
	opReturn      = 0xA4

	// maxPkgLength is the largest length a 4-byte PkgLength encodes.
	maxPkgLength = 1<<28 - 1
)

// aml encodes AML terms. Each method returns the encoding of one term so
// that terms nest the way ASL does:
//
//	a.scope(`\_SB`, a.device("PCI0", a.name("_UID", a.integer(0))))
//
// The first invalid input (a bad name segment, an oversized package) is kept
// in err and later calls carry on producing bytes; the caller checks err
// once at the end, as with bufio.Writer.
type aml struct{ err error }

func (a *aml) fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf("acpi: aml: "+format, args...)
	}
}

// nameString encodes an ASL name path: optional root ('\') or parent ('^')
// prefixes, then dot-separated segments of up to four characters
// ([A-Z_][A-Z0-9_]*), padded with '_' (ACPI 6.5, 20.2.2 "Name Objects
// Encoding").
func (a *aml) nameString(path string) []byte {
	var b []byte
	rest := path
	if strings.HasPrefix(rest, `\`) {
		b, rest = append(b, opRootChar), rest[1:]
	} else {
		for strings.HasPrefix(rest, "^") {
			b, rest = append(b, opParentChar), rest[1:]
		}
	}
	if rest == "" {
		if len(b) == 0 {
			a.fail("empty name")
		}
		return append(b, 0x00) // NullName: `\` alone is the root
	}
	segs := strings.Split(rest, ".")
	switch {
	case len(segs) == 2:
		b = append(b, opDualName)
	case len(segs) > 255:
		a.fail("name %q has %d segments", path, len(segs))
	case len(segs) > 2:
		b = append(b, opMultiName, byte(len(segs)))
	}
	for _, s := range segs {
		b = append(b, a.nameSeg(s, path)...)
	}
	return b
}

// nameSeg encodes one NameSeg, padded to four characters with '_'.
func (a *aml) nameSeg(s, path string) []byte {
	if len(s) == 0 || len(s) > 4 {
		a.fail("name %q: segment %q is not 1 to 4 characters", path, s)
		return []byte("____")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			a.fail("name %q: segment %q has invalid character %q", path, s, c)
		}
	}
	return []byte(s + strings.Repeat("_", 4-len(s)))
}

// integer encodes v in the shortest form: ZeroOp, OneOp, or a Byte, Word,
// DWord or QWord constant.
func (a *aml) integer(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{opZero}
	case v == 1:
		return []byte{opOne}
	case v <= 0xFF:
		return []byte{opBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return binary.LittleEndian.AppendUint16([]byte{opWordPrefix}, uint16(v))
	case v <= 0xFFFFFFFF:
		return binary.LittleEndian.AppendUint32([]byte{opDWordPrefix}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{opQWordPrefix}, v)
}

// str encodes an ASCII string constant (no NUL inside).
func (a *aml) str(s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			a.fail("string %q: byte %#x is not allowed", s, s[i])
		}
	}
	return append(append([]byte{opString}, s...), 0)
}

// eisaID encodes a compressed EISA id such as "PNP0A08" as a DWord, like
// ASL's EisaId(): three letters of five bits each and four hex digits,
// stored big-endian.
func (a *aml) eisaID(id string) []byte {
	if len(id) != 7 {
		a.fail("EISA id %q is not 7 characters", id)
		return a.integer(0)
	}
	var v uint32
	for i := 0; i < 3; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			a.fail("EISA id %q: %q is not an upper-case letter", id, c)
		}
		v = v<<5 | uint32(c-'@')&0x1F
	}
	for i := 3; i < 7; i++ {
		d, ok := hexDigit(id[i])
		if !ok {
			a.fail("EISA id %q: %q is not a hex digit", id, id[i])
		}
		v = v<<4 | uint32(d)
	}
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], v)
	return a.integer(uint64(binary.LittleEndian.Uint32(be[:])))
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// pkgLength encodes the PkgLength of a body of n bytes; the encoded length
// counts the PkgLength bytes themselves (ACPI 6.5, 20.2.4).
func (a *aml) pkgLength(n int) []byte {
	for size := 1; size <= 4; size++ {
		if b, ok := lengthBytes(n+size, size); ok {
			return b
		}
	}
	a.fail("package of %d bytes exceeds the largest PkgLength (%d)", n, maxPkgLength)
	return []byte{0}
}

// lengthBytes encodes v in the PkgLength format in exactly size bytes
// (1 to 4), or reports that it does not fit: one byte holds 6 bits, a
// longer encoding 4 bits in its lead byte and 8 in each following one.
func lengthBytes(v, size int) ([]byte, bool) {
	switch {
	case size == 1 && v < 0x40:
		return []byte{byte(v)}, true
	case size > 1 && v < 1<<(4+8*(size-1)):
		b := []byte{byte(size-1)<<6 | byte(v&0x0F)}
		for i := 1; i < size; i++ {
			b = append(b, byte(v>>(4+8*(i-1))))
		}
		return b, true
	}
	return nil, false
}

// withLength returns op, then the PkgLength of body, then body.
func (a *aml) withLength(op []byte, body ...[]byte) []byte {
	var inner []byte
	for _, b := range body {
		inner = append(inner, b...)
	}
	out := append([]byte{}, op...)
	out = append(out, a.pkgLength(len(inner))...)
	return append(out, inner...)
}

// pkg encodes Package(){elems}: PackageOp for up to 255 elements,
// VarPackageOp beyond.
func (a *aml) pkg(elems ...[]byte) []byte {
	if len(elems) <= 255 {
		return a.withLength([]byte{opPackage}, append([][]byte{{byte(len(elems))}}, elems...)...)
	}
	return a.withLength([]byte{opVarPackage}, append([][]byte{a.integer(uint64(len(elems)))}, elems...)...)
}

// buffer encodes Buffer(){data}.
func (a *aml) buffer(data []byte) []byte {
	return a.withLength([]byte{opBuffer}, a.integer(uint64(len(data))), data)
}

// name encodes Name(path, obj).
func (a *aml) name(path string, obj []byte) []byte {
	return append(append([]byte{opName}, a.nameString(path)...), obj...)
}

// scope encodes Scope(path){terms}.
func (a *aml) scope(path string, terms ...[]byte) []byte {
	return a.withLength([]byte{opScope}, append([][]byte{a.nameString(path)}, terms...)...)
}

// device encodes Device(path){terms}.
func (a *aml) device(path string, terms ...[]byte) []byte {
	return a.withLength([]byte{opExtPrefix, opDevice}, append([][]byte{a.nameString(path)}, terms...)...)
}

// method encodes Method(path, args, Serialized|NotSerialized){terms}
// with SyncLevel 0.
func (a *aml) method(path string, args int, serialized bool, terms ...[]byte) []byte {
	if args < 0 || args > 7 {
		a.fail("method %q: %d arguments (0 to 7 allowed)", path, args)
	}
	flags := byte(args & 7)
	if serialized {
		flags |= 1 << 3
	}
	return a.withLength([]byte{opMethod}, append([][]byte{a.nameString(path), {flags}}, terms...)...)
}

// ret encodes Return(obj).
func (a *aml) ret(obj []byte) []byte { return append([]byte{opReturn}, obj...) }

// local encodes LocalN (0 to 7).
func (a *aml) local(n int) []byte {
	if n < 0 || n > 7 {
		a.fail("Local%d does not exist (Local0 to Local7)", n)
	}
	return []byte{opLocal0 + byte(n&7)}
}

// arg encodes ArgN (0 to 6).
func (a *aml) arg(n int) []byte {
	if n < 0 || n > 6 {
		a.fail("Arg%d does not exist (Arg0 to Arg6)", n)
	}
	return []byte{opArg0 + byte(n%7)}
}

// store encodes Store(src, dst), ASL's dst = src.
func (a *aml) store(src, dst []byte) []byte {
	return append(append([]byte{opStore}, src...), dst...)
}

// and encodes And(x, y) with no target: an expression, as ASL's (x & y).
func (a *aml) and(x, y []byte) []byte {
	return append(append(append([]byte{opAnd}, x...), y...), 0x00) // NullName target
}

// ifThen encodes If(predicate){terms}.
func (a *aml) ifThen(predicate []byte, terms ...[]byte) []byte {
	return a.withLength([]byte{opIf}, append([][]byte{predicate}, terms...)...)
}

// notify encodes Notify(path, value).
func (a *aml) notify(path string, value uint64) []byte {
	return append(append([]byte{opNotify}, a.nameString(path)...), a.integer(value)...)
}

// Operation region spaces (ACPI 6.5, 19.6.100 "OperationRegion").
const (
	regionSystemMemory = 0x00
	regionSystemIO     = 0x01
)

// opRegion encodes OperationRegion(name, space, offset, length).
func (a *aml) opRegion(name string, space byte, offset, length uint64) []byte {
	b := append([]byte{opExtPrefix, opOpRegion}, a.nameString(name)...)
	b = append(b, space)
	b = append(b, a.integer(offset)...)
	return append(b, a.integer(length)...)
}

// Field flags (ACPI 6.5, 19.6.48 "Field"): the access type in bits 0-3;
// bit 4 clear is NoLock, bits 5-6 clear are Preserve.
const fieldByteAcc = 0x01

// fieldUnit is one named field of a Field: a name and a width in bits.
type fieldUnit struct {
	name string
	bits int
}

// field encodes Field(region, flags){units}: the units are laid out one
// after another from bit 0 of the region.
func (a *aml) field(region string, flags byte, units ...fieldUnit) []byte {
	body := [][]byte{a.nameString(region), {flags}}
	for _, u := range units {
		// A NamedField's length is a PkgLength-style encoding of its
		// width, which does not count its own bytes.
		var n []byte
		for size := 1; size <= 4 && n == nil; size++ {
			n, _ = lengthBytes(u.bits, size)
		}
		if u.bits < 1 || n == nil {
			a.fail("field %q: %d bits", u.name, u.bits)
			n = []byte{0}
		}
		body = append(body, a.nameSeg(u.name, u.name), n)
	}
	return a.withLength([]byte{opExtPrefix, opField}, body...)
}
