package smbios

// Structure types (DSP0134 7).
const (
	typeBIOS      = 0
	typeSystem    = 1
	typeChassis   = 3
	typeProcessor = 4
	typeBootInfo  = 32
	typeEnd       = 127
)

// Formatted-area lengths of the structures, as SMBIOS 3.0 defines them.
const (
	biosLen      = 0x18
	systemLen    = 0x1B
	chassisLen   = 0x16 // no contained elements, then the SKU string
	processorLen = 0x30
	bootInfoLen  = 0x0B
	endLen       = 0x04
)

// Field values.
const (
	// BIOS characteristics: bit 3, "BIOS characteristics are not
	// supported" (there is no BIOS); extension byte 1 bit 0, ACPI is
	// supported; extension byte 2 bit 4, "SMBIOS table describes a
	// virtual machine".
	biosCharacteristics     = 1 << 3
	biosCharacteristicsExt1 = 1 << 0
	biosCharacteristicsExt2 = 1 << 4
	// noRelease fills the BIOS and embedded controller release fields:
	// "the system does not support the use of this field".
	noRelease = 0xFF

	wakeUpPowerSwitch = 0x06

	chassisOther    = 0x01
	chassisSafe     = 0x03 // boot-up, power supply and thermal state
	securityUnknown = 0x02

	processorCentral = 0x03
	familyOther      = 0x01
	// statusEnabled: socket populated (bit 6), CPU enabled (bits 2:0 = 1).
	statusEnabled  = 0x41
	upgradeOther   = 0x01
	noHandle       = 0xFFFF
	processor64Bit = 1 << 2
	processorMulti = 1 << 3

	bootNoErrors = 0x00
)

// structure is one SMBIOS structure being built: the formatted area,
// whose header (type, length, handle) is set when it is created, and its
// strings, numbered from 1 in the order they are added.
type structure struct {
	b       []byte
	strings []string
}

// newStructure returns a structure of the given type, formatted-area
// length and handle.
func newStructure(typ byte, length int, handle uint16) *structure {
	s := &structure{b: make([]byte, length)}
	s.b[0], s.b[1] = typ, byte(length)
	le.PutUint16(s.b[2:], handle)
	return s
}

// str adds text to the string set and stores its number at off; empty
// text stores 0, "no string".
func (s *structure) str(off int, text string) {
	if text == "" {
		s.b[off] = 0
		return
	}
	s.strings = append(s.strings, text)
	s.b[off] = byte(len(s.strings))
}

// bytes returns the structure as it lies in the table: the formatted
// area, each string NUL-terminated, then one more NUL (two NULs when
// there is no string).
func (s *structure) bytes() []byte {
	out := append([]byte{}, s.b...)
	for _, t := range s.strings {
		out = append(out, t...)
		out = append(out, 0)
	}
	if len(s.strings) == 0 {
		out = append(out, 0)
	}
	return append(out, 0)
}

// structures builds the structure table and returns it with the number of
// structures and the size of the largest one.
func structures(cfg *Config) (table []byte, count, maxSize int) {
	var handle uint16
	next := func() uint16 { h := handle; handle++; return h }
	list := []*structure{
		biosInfo(cfg, next()),
		systemInfo(cfg, next()),
		chassisInfo(next()),
		processorInfo(cfg, next()),
		bootInfo(next()),
		newStructure(typeEnd, endLen, next()),
	}
	for _, s := range list {
		b := s.bytes()
		table = append(table, b...)
		maxSize = max(maxSize, len(b))
	}
	return table, len(list), maxSize
}

// biosInfo is type 0: who made the firmware and what it supports.
func biosInfo(cfg *Config, handle uint16) *structure {
	s := newStructure(typeBIOS, biosLen, handle)
	s.str(0x04, Manufacturer)
	s.str(0x05, cfg.Version)
	// 0x06: BIOS starting address segment, 0: no legacy BIOS image.
	// 0x08: release date, none. 0x09: ROM size, (0+1) * 64 KiB.
	le.PutUint64(s.b[0x0A:], biosCharacteristics)
	s.b[0x12] = biosCharacteristicsExt1
	s.b[0x13] = biosCharacteristicsExt2
	s.b[0x14], s.b[0x15], s.b[0x16], s.b[0x17] = noRelease, noRelease, noRelease, noRelease
	return s
}

// systemInfo is type 1: the system, with its UUID.
func systemInfo(cfg *Config, handle uint16) *structure {
	s := newStructure(typeSystem, systemLen, handle)
	s.str(0x04, Manufacturer)
	s.str(0x05, Product)
	s.str(0x06, cfg.Version)
	// 0x07: serial number, none.
	putUUID(s.b[0x08:0x18], cfg.UUID)
	s.b[0x18] = wakeUpPowerSwitch
	// 0x19: SKU number, none.
	s.str(0x1A, Family)
	return s
}

// putUUID stores u, in RFC 4122 byte order, the way SMBIOS 2.6 and later
// encode a UUID: the first three fields (time_low, time_mid,
// time_hi_and_version) little-endian, the rest as they are.
func putUUID(dst []byte, u [16]byte) {
	dst[0], dst[1], dst[2], dst[3] = u[3], u[2], u[1], u[0]
	dst[4], dst[5] = u[5], u[4]
	dst[6], dst[7] = u[7], u[6]
	copy(dst[8:16], u[8:16])
}

// chassisInfo is type 3: the enclosure, of type "other".
func chassisInfo(handle uint16) *structure {
	s := newStructure(typeChassis, chassisLen, handle)
	s.str(0x04, Manufacturer)
	s.b[0x05] = chassisOther
	s.b[0x09], s.b[0x0A], s.b[0x0B] = chassisSafe, chassisSafe, chassisSafe
	s.b[0x0C] = securityUnknown
	// 0x0D: OEM-defined, 0x11: height, 0x12: power cords, all
	// unspecified; 0x13, 0x14: no contained elements; 0x15: SKU, none.
	return s
}

// processorInfo is type 4: one socket with CPUs cores of one thread each.
func processorInfo(cfg *Config, handle uint16) *structure {
	s := newStructure(typeProcessor, processorLen, handle)
	s.str(0x04, "CPU 0")
	s.b[0x05] = processorCentral
	s.b[0x06] = familyOther
	s.str(0x07, Manufacturer)
	// 0x08: processor ID, 0x10: version, 0x11: voltage, 0x12: external
	// clock, 0x14: maximum and 0x16: current speed: all unknown.
	s.b[0x18] = statusEnabled
	s.b[0x19] = upgradeOther
	le.PutUint16(s.b[0x1A:], noHandle) // no L1, L2, L3 cache structures
	le.PutUint16(s.b[0x1C:], noHandle)
	le.PutUint16(s.b[0x1E:], noHandle)
	n := cfg.CPUs
	s.b[0x23], s.b[0x24], s.b[0x25] = byte(n), byte(n), byte(n) // cores, enabled, threads
	chars := uint16(processor64Bit)
	if n > 1 {
		chars |= processorMulti
	}
	le.PutUint16(s.b[0x26:], chars)
	le.PutUint16(s.b[0x28:], familyOther)
	le.PutUint16(s.b[0x2A:], uint16(n))
	le.PutUint16(s.b[0x2C:], uint16(n))
	le.PutUint16(s.b[0x2E:], uint16(n))
	return s
}

// bootInfo is type 32: the boot went without errors.
func bootInfo(handle uint16) *structure {
	s := newStructure(typeBootInfo, bootInfoLen, handle)
	s.b[0x0A] = bootNoErrors
	return s
}
