package bzimage

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY from
// xen/include/public/elfnote.h: the 32-bit physical entry point of a
// PVH-bootable kernel.
const xenElfnotePhys32Entry = 18

// maxNotes bounds the bytes of note segments read from an untrusted file.
const maxNotes = 1 << 20

// ErrNoPVH is returned by PVHEntry for ELF files without a PVH entry note.
var ErrNoPVH = errors.New("ELF file has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); the kernel needs CONFIG_PVH=y, or boot its bzImage instead")

// PVHEntry returns the PVH 32-bit entry point of an ELF vmlinux, read from
// its "Xen" note of type XEN_ELFNOTE_PHYS32_ENTRY. The file is untrusted.
func PVHEntry(r io.ReaderAt) (entry uint32, err error) {
	defer func() {
		// debug/elf is hardened but not promised panic-free on hostile input.
		if p := recover(); p != nil {
			entry, err = 0, fmt.Errorf("malformed ELF file: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return 0, fmt.Errorf("not an ELF file: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return 0, fmt.Errorf("ELF file is %v %v, want 64-bit x86-64", f.Class, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if p.Filesz > maxNotes {
			return 0, fmt.Errorf("note segment of %d bytes is implausibly large", p.Filesz)
		}
		buf := make([]byte, p.Filesz)
		if _, err := p.ReadAt(buf, 0); err != nil {
			return 0, fmt.Errorf("read note segment at %#x: %w", p.Off, err)
		}
		if e, ok := findNote(buf, f.ByteOrder, "Xen", xenElfnotePhys32Entry); ok {
			switch len(e) {
			case 4:
				return f.ByteOrder.Uint32(e), nil
			case 8:
				v := f.ByteOrder.Uint64(e)
				if v > 0xffffffff {
					return 0, fmt.Errorf("PVH entry %#x is above 4 GiB", v)
				}
				return uint32(v), nil
			default:
				return 0, fmt.Errorf("PVH entry note has a %d-byte descriptor, want 4 or 8", len(e))
			}
		}
	}
	return 0, ErrNoPVH
}

// findNote walks ELF notes (namesz, descsz, type, name, desc; name and
// desc padded to 4 bytes) and returns the descriptor of the first note
// with the given owner name and type.
func findNote(b []byte, bo binary.ByteOrder, name string, typ uint32) ([]byte, bool) {
	for len(b) >= 12 {
		namesz, descsz, t := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		b = b[12:]
		nameEnd := align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if descEnd > uint64(len(b)) {
			return nil, false
		}
		n := b[:namesz]
		if len(n) > 0 && n[len(n)-1] == 0 {
			n = n[:len(n)-1]
		}
		if t == typ && string(n) == name {
			return b[nameEnd : nameEnd+descsz], true
		}
		b = b[descEnd:]
	}
	return nil, false
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }
