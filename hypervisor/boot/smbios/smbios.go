// Package smbios builds the SMBIOS (DMI) tables of a paddock VM: the
// structures that tell a guest what machine it runs on — BIOS (type 0),
// system with its UUID (type 1), chassis (type 3), processor (type 4),
// boot information (type 32) and the end-of-table marker (type 127) —
// and the entry points that lead to them, as one blob the machine copies
// into guest memory.
//
// paddock boots Linux without firmware, so there is no EFI system table
// to carry the tables' address. The guest finds them the legacy way: it
// scans 0xF0000-0xFFFFF for an entry point anchor on a 16-byte boundary
// (Linux's dmi_scan_machine, with DMI_SCAN_MACHINE_NON_EFI_FALLBACK, which
// x86 selects; dmidecode does the same on /dev/mem). The blob starts with
// a 64-bit SMBIOS 3.0 entry point ("_SM3_"), which current kernels look
// for first, followed by a 32-bit one ("_SM_" with "_DMI_") for older
// kernels and tools; both point to the one structure table after them.
// The version is 3.0.0, so a guest reads the first three fields of the
// UUID little-endian (SMBIOS 2.6 and later), as the UUID's bytes are
// stored here.
//
// Reference: DMTF DSP0134, SMBIOS Reference Specification 3.0.0.
package smbios

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Config describes what the tables tell the guest.
type Config struct {
	// UUID is the system UUID in RFC 4122 (big-endian) byte order, as
	// github.com/google/uuid holds it; Build stores it in SMBIOS's mixed
	// order. All zero: the system has no UUID.
	UUID [16]byte
	// CPUs is the number of vCPUs: one processor (socket) with that many
	// cores of one thread each, as the machine's CPUID describes them.
	CPUs int
	// Version, if set, is the firmware and system version the guest sees
	// (paddock's version).
	Version string
}

// Strings the tables carry.
const (
	// Manufacturer names paddock as the maker of the BIOS, system,
	// chassis and processor socket.
	Manufacturer = "paddock"
	// Product is the system's product name.
	Product = "paddock VM"
	// Family is the system's family.
	Family = "Virtual Machine"
)

// Limits.
const (
	// maxCPUs is the most cores the processor structure's 8-bit core
	// count holds without the 3.0 extension words (which Build fills
	// too); paddock's xAPIC machines have at most 255.
	maxCPUs = 255
	// maxString bounds one string of a structure.
	maxString = 64
	// blobAlign is the entry points' alignment (the scan's step).
	blobAlign = 16
)

// Offsets in the blob: the 3.0 entry point, the 2.1 one, the table.
const (
	ep3Offset   = 0x00
	ep2Offset   = 0x20
	tableOffset = 0x40
)

// Build lays out the 3.0 and 2.1 entry points and the structure table as
// one blob to be copied to guest-physical base, which must be 16-byte
// aligned and leave the whole blob below 4 GiB (the 2.1 entry point holds
// a 32-bit address). For the guest to find it, base lies in 0xF0000-0xFFFFF.
func Build(cfg Config, base uint64) ([]byte, error) {
	if err := cfg.validate(base); err != nil {
		return nil, err
	}
	table, count, maxSize := structures(&cfg)
	blob := make([]byte, tableOffset, tableOffset+len(table))
	tableAddr := base + tableOffset
	copy(blob[ep3Offset:], entryPoint3(tableAddr, len(table)))
	copy(blob[ep2Offset:], entryPoint2(uint32(tableAddr), len(table), count, maxSize))
	blob = append(blob, table...)
	if end := base + uint64(len(blob)); end > 1<<32 {
		return nil, fmt.Errorf("smbios: tables at %#x end at %#x, above 4 GiB (the 32-bit entry point cannot reach them)", base, end)
	}
	return blob, nil
}

// validate checks cfg and base, naming every bad field.
func (cfg *Config) validate(base uint64) error {
	var errs []error
	if base%blobAlign != 0 {
		errs = append(errs, fmt.Errorf("smbios: base %#x: must be 16-byte aligned (the entry point scan's step)", base))
	}
	if cfg.CPUs < 1 || cfg.CPUs > maxCPUs {
		errs = append(errs, fmt.Errorf("smbios: CPUs = %d: must be 1 to %d", cfg.CPUs, maxCPUs))
	}
	if err := checkString("Version", cfg.Version); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkString checks a string a structure carries: text without NUL
// bytes (NUL ends a string in the table), of bounded length.
func checkString(field, s string) error {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("smbios: %s %q: contains a NUL byte", field, s)
	case len(s) > maxString:
		return fmt.Errorf("smbios: %s: %d bytes long; at most %d", field, len(s), maxString)
	}
	return nil
}

var le = binary.LittleEndian

// checksum returns the byte that makes b's bytes sum to zero.
func checksum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return -s
}

// Entry point layouts (DSP0134 5.2).
const (
	ep3Len = 0x18 // SMBIOS 3.0 64-bit entry point
	ep2Len = 0x1F // SMBIOS 2.1 32-bit entry point
	// The specification version the tables follow.
	versionMajor, versionMinor, docRev = 3, 0, 0
)

// entryPoint3 is the 64-bit entry point: anchor, checksum, length,
// version, revision 1, the table's maximum size and address.
func entryPoint3(tableAddr uint64, tableLen int) []byte {
	b := make([]byte, ep3Len)
	copy(b, "_SM3_")
	b[0x06] = ep3Len
	b[0x07], b[0x08], b[0x09] = versionMajor, versionMinor, docRev
	b[0x0A] = 1 // entry point structure revision: 3.0
	le.PutUint32(b[0x0C:], uint32(tableLen))
	le.PutUint64(b[0x10:], tableAddr)
	b[0x05] = checksum(b)
	return b
}

// entryPoint2 is the 32-bit entry point: "_SM_" with its checksum over
// all of it, and the intermediate "_DMI_" part with its own checksum, the
// table's length, address and structure count.
func entryPoint2(tableAddr uint32, tableLen, count, maxSize int) []byte {
	b := make([]byte, ep2Len)
	copy(b, "_SM_")
	b[0x05] = ep2Len
	b[0x06], b[0x07] = versionMajor, versionMinor
	le.PutUint16(b[0x08:], uint16(maxSize))
	copy(b[0x10:], "_DMI_")
	le.PutUint16(b[0x16:], uint16(tableLen))
	le.PutUint32(b[0x18:], tableAddr)
	le.PutUint16(b[0x1C:], uint16(count))
	b[0x1E] = versionMajor<<4 | versionMinor // BCD revision
	b[0x15] = checksum(b[0x10:ep2Len])
	b[0x04] = checksum(b)
	return b
}
