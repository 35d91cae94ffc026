// Package elftest builds small synthetic ELF files for tests of code that
// parses kernels and kernel modules: executables with PT_NOTE segments
// (PVH entry notes) and relocatable objects with a .modinfo section.
package elftest

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// Machine and class values used by the builders.
const (
	ClassELF32 = 1
	ClassELF64 = 2
	MachineX86 = 3
	MachineAMD = 62
)

var le = binary.LittleEndian

// Note encodes one ELF note: namesz, descsz, type, then name and desc,
// each padded to 4 bytes.
func Note(name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, le, uint32(len(name)+1))
	binary.Write(&b, le, uint32(len(desc)))
	binary.Write(&b, le, typ)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(&b)
	b.Write(desc)
	pad4(&b)
	return b.Bytes()
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// header fills an ELF64 file header.
func header(b []byte, class byte, typ, machine uint16) {
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = class, 1, 1 // class, little-endian, version
	le.PutUint16(b[16:], typ)
	le.PutUint16(b[18:], machine)
	le.PutUint32(b[20:], 1)
	le.PutUint16(b[52:], 64) // e_ehsize
}

// Exec builds an executable whose only program header is a PT_NOTE
// segment holding notes.
func Exec(class byte, machine uint16, notes []byte) []byte {
	const ehsize, phsize = 64, 56
	b := make([]byte, ehsize+phsize, ehsize+phsize+len(notes))
	header(b, class, 2, machine) // ET_EXEC
	le.PutUint64(b[32:], ehsize) // e_phoff
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1) // e_phnum
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint64(ph[8:], ehsize+phsize)
	le.PutUint64(ph[32:], uint64(len(notes)))
	le.PutUint64(ph[40:], uint64(len(notes)))
	return append(b, notes...)
}

// PVHExec builds an x86-64 executable with Linux's Xen notes, including
// XEN_ELFNOTE_PHYS32_ENTRY (18) = entry.
func PVHExec(entry uint32) []byte {
	var d [4]byte
	le.PutUint32(d[:], entry)
	notes := append(Note("Xen", 6, []byte("linux\x00")), Note("GNU", 18, []byte{1, 2, 3, 4})...)
	return Exec(ClassELF64, MachineAMD, append(notes, Note("Xen", 18, d[:])...))
}

// Module builds a relocatable x86-64 object with a .modinfo section
// holding the given key=value strings, NUL-separated, as a kernel module has.
func Module(modinfo ...string) []byte {
	info := []byte(strings.Join(modinfo, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	b := make([]byte, shOff+3*shsize)
	header(b, ClassELF64, 1, MachineAMD) // ET_REL
	le.PutUint64(b[40:], shOff)
	le.PutUint16(b[58:], shsize)
	le.PutUint16(b[60:], 3) // e_shnum
	le.PutUint16(b[62:], 2) // e_shstrndx
	copy(b[infoOff:], info)
	copy(b[strOff:], shstr)
	section := func(i int, name, typ uint32, off, size uint64) {
		s := b[shOff+uint64(i)*shsize:]
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], off)
		le.PutUint64(s[32:], size)
		le.PutUint64(s[48:], 1)
	}
	section(1, 1, 1, infoOff, uint64(len(info)))  // .modinfo, SHT_PROGBITS
	section(2, 10, 3, strOff, uint64(len(shstr))) // .shstrtab, SHT_STRTAB
	return b
}
