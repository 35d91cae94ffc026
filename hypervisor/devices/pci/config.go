package pci

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
)

// ConfigSize is the size of a function's configuration space (PCIe; the
// first 256 bytes are all conventional PCI and configuration mechanism
// #1 reach).
const ConfigSize = 4096

// Standard type-0 header offsets.
const (
	offVendor     = 0x00
	offDevice     = 0x02
	offCommand    = 0x04
	offStatus     = 0x06
	offRevision   = 0x08
	offClass      = 0x09 // prog-if, subclass, class: 3 bytes
	offCacheLine  = 0x0c
	offHeaderType = 0x0e
	offBAR0       = 0x10
	offSubVendor  = 0x2c
	offSubsystem  = 0x2e
	offCapPtr     = 0x34
	offIntLine    = 0x3c
	offIntPin     = 0x3d
	headerEnd     = 0x40 // capabilities start here
	numBARs       = 6
	barsEnd       = offBAR0 + 4*numBARs
)

// Command register bits.
const (
	CommandIO          = 0x0001 // decode I/O BARs
	CommandMemory      = 0x0002 // decode memory BARs
	CommandBusMaster   = 0x0004
	CommandParity      = 0x0040
	CommandSERR        = 0x0100
	CommandINTxDisable = 0x0400
	commandWritable    = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandINTxDisable
)

// Status register bits.
const (
	statusINTx     = 0x0008 // an INTx is pending (read-only, set by the device)
	statusCapList  = 0x0010
	statusW1CError = 0xf900 // parity/abort/SERR error bits, write 1 to clear
)

// Header type byte.
const headerMultiFunction = 0x80

// BAR type bits.
const (
	barIO       = 0x1
	barMem64    = 0x4
	barPrefetch = 0x8
)

// BARKind is what a base address register maps.
type BARKind uint8

// The kinds of BAR.
const (
	BARNone  BARKind = iota // unimplemented: reads as 0, ignores writes
	BARIO                   // I/O space
	BARMem32                // 32-bit memory space
	BARMem64                // 64-bit memory space, using this BAR and the next
)

func (k BARKind) String() string {
	switch k {
	case BARNone:
		return "none"
	case BARIO:
		return "I/O"
	case BARMem32:
		return "32-bit memory"
	case BARMem64:
		return "64-bit memory"
	}
	return fmt.Sprintf("BARKind(%d)", uint8(k))
}

// BAR declares one base address register of a function.
type BAR struct {
	Kind         BARKind
	Size         uint64 // a power of two: at least 4 for I/O, 16 for memory
	Prefetchable bool   // memory BARs only
}

// Header is the fixed part of a type-0 configuration header.
type Header struct {
	VendorID, DeviceID uint16
	Revision           uint8
	// Class is the 24-bit class code: base class, subclass and
	// programming interface, as 0xCCSSPP.
	Class                        uint32
	SubsystemVendorID, Subsystem uint16
	// MultiFunction sets bit 7 of the header type; function 0 of a
	// device with other functions must set it, or nobody scans them.
	MultiFunction bool
	// InterruptPin is 0 for none or 1-4 for INTA#-INTD#.
	InterruptPin uint8
	// BARs are the base address registers; a BARMem64 entry uses the
	// slot after it too, which must be BARNone.
	BARs [numBARs]BAR
}

// BARMapping is where a BAR decodes: the address the guest programmed
// and whether the command register enables decoding of its space.
type BARMapping struct {
	Addr    uint64
	Enabled bool
}

// BARChange reports that a BAR's mapping changed, from Old to New.
type BARChange struct {
	Index int // 0-5
	Kind  BARKind
	Size  uint64
	Old   BARMapping
	New   BARMapping
}

// ConfigSpace implements the configuration space of a type-0 function
// with standard semantics: read-only identity fields, the writable
// command bits, write-1-to-clear status error bits, BAR sizing (write
// all ones, read back the size mask and the type bits), 32- and 64-bit
// memory BARs and I/O BARs, a capability list and the interrupt
// line/pin registers. It implements Function, so a device can embed it
// and override ConfigRead/ConfigWrite for registers of its own.
//
// All methods are safe for concurrent use.
type ConfigSpace struct {
	onChange func(BARChange)
	bars     [numBARs]BAR

	// notify serialises writes that may report BAR changes, so that the
	// owner sees changes in order; it is taken before mu and the owner's
	// callback runs holding it but not mu.
	notify sync.Mutex

	mu      sync.Mutex
	data    [ConfigSize]byte
	wmask   [ConfigSize]byte // bits the guest may write
	w1c     [ConfigSize]byte // bits the guest clears by writing 1
	capNext int              // where the next capability goes; 0 = none yet
	capLast int              // offset of the last capability, for linking
}

// NewConfigSpace returns the configuration space described by h. onChange
// is called whenever a BAR's mapping (its address, or whether the command
// register enables it) changes through ConfigWrite, ProgramBAR or
// Restore; it runs without the space's lock but serialised with other
// writes, so it may read the space (ConfigRead, BARMapping) but must not
// write it. The addresses it reports are whatever the guest programmed
// and may overlap RAM or other devices: the owner validates them. Nil
// means no notifications.
func NewConfigSpace(h Header, onChange func(BARChange)) (*ConfigSpace, error) {
	if h.VendorID == 0xffff {
		return nil, fmt.Errorf("pci: vendor ID 0xffff means no device")
	}
	if h.Class > 0xffffff {
		return nil, fmt.Errorf("pci: class code %#x is wider than 24 bits", h.Class)
	}
	if h.InterruptPin > 4 {
		return nil, fmt.Errorf("pci: interrupt pin %d is not 0 (none) or 1-4 (INTA-INTD)", h.InterruptPin)
	}
	if err := checkBARs(h.BARs); err != nil {
		return nil, err
	}
	c := &ConfigSpace{onChange: onChange, bars: h.BARs}
	d := c.data[:]
	binary.LittleEndian.PutUint16(d[offVendor:], h.VendorID)
	binary.LittleEndian.PutUint16(d[offDevice:], h.DeviceID)
	d[offRevision] = h.Revision
	d[offClass], d[offClass+1], d[offClass+2] = byte(h.Class), byte(h.Class>>8), byte(h.Class>>16)
	if h.MultiFunction {
		d[offHeaderType] = headerMultiFunction
	}
	binary.LittleEndian.PutUint16(d[offSubVendor:], h.SubsystemVendorID)
	binary.LittleEndian.PutUint16(d[offSubsystem:], h.Subsystem)
	d[offIntPin] = h.InterruptPin

	binary.LittleEndian.PutUint16(c.wmask[offCommand:], commandWritable)
	binary.LittleEndian.PutUint16(c.w1c[offStatus:], statusW1CError)
	c.wmask[offCacheLine] = 0xff
	c.wmask[offIntLine] = 0xff
	for i, b := range h.BARs {
		off := offBAR0 + 4*i
		switch b.Kind {
		case BARIO:
			binary.LittleEndian.PutUint32(d[off:], barIO)
			binary.LittleEndian.PutUint32(c.wmask[off:], uint32(^(b.Size-1))&^0x3)
		case BARMem32:
			binary.LittleEndian.PutUint32(d[off:], prefetchBit(b))
			binary.LittleEndian.PutUint32(c.wmask[off:], uint32(^(b.Size-1))&^0xf)
		case BARMem64:
			binary.LittleEndian.PutUint32(d[off:], barMem64|prefetchBit(b))
			mask := ^(b.Size - 1)
			binary.LittleEndian.PutUint32(c.wmask[off:], uint32(mask)&^0xf)
			binary.LittleEndian.PutUint32(c.wmask[off+4:], uint32(mask>>32))
		}
	}
	return c, nil
}

func prefetchBit(b BAR) uint32 {
	if b.Prefetchable {
		return barPrefetch
	}
	return 0
}

// checkBARs validates BAR declarations.
func checkBARs(bars [numBARs]BAR) error {
	for i := 0; i < numBARs; i++ {
		b := bars[i]
		if b.Kind == BARNone {
			if b.Size != 0 || b.Prefetchable {
				return fmt.Errorf("pci: BAR %d has no kind but a size or prefetch flag", i)
			}
			continue
		}
		if b.Size == 0 || bits.OnesCount64(b.Size) != 1 {
			return fmt.Errorf("pci: BAR %d size %#x is not a power of two", i, b.Size)
		}
		switch b.Kind {
		case BARIO:
			if b.Size < 4 || b.Size > 1<<16 || b.Prefetchable {
				return fmt.Errorf("pci: I/O BAR %d size %#x must be 4 bytes to 64 KiB and not prefetchable", i, b.Size)
			}
		case BARMem32:
			if b.Size < 16 || b.Size > 1<<31 {
				return fmt.Errorf("pci: 32-bit memory BAR %d size %#x must be 16 bytes to 2 GiB", i, b.Size)
			}
		case BARMem64:
			if b.Size < 16 || b.Size > 1<<62 {
				return fmt.Errorf("pci: 64-bit memory BAR %d size %#x must be 16 bytes to 4 EiB", i, b.Size)
			}
			if i == numBARs-1 {
				return fmt.Errorf("pci: 64-bit BAR %d needs the slot after it, and it is the last", i)
			}
			if bars[i+1] != (BAR{}) {
				return fmt.Errorf("pci: BAR %d is the upper half of 64-bit BAR %d and must be left empty", i+1, i)
			}
			i++
		default:
			return fmt.Errorf("pci: BAR %d has unknown kind %d", i, b.Kind)
		}
	}
	return nil
}

// AddCapability appends a capability with the given ID to the list and
// returns its offset. body is its content after the ID and next-pointer
// bytes; writable, if not nil, is a mask over body of the bits the guest
// may write (nil: read-only). Capabilities go from 0x40 on, dword
// aligned; the owner then intercepts or reads (Bytes) its registers as it
// needs. Add them before the function is attached.
func (c *ConfigSpace) AddCapability(id uint8, body, writable []byte) (int, error) {
	if writable != nil && len(writable) != len(body) {
		return 0, fmt.Errorf("pci: capability %#x: write mask is %d bytes for a %d-byte body", id, len(writable), len(body))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	off := c.capNext
	if off == 0 {
		off = headerEnd
	}
	end := off + 2 + len(body)
	if end > 0x100 {
		return 0, fmt.Errorf("pci: capability %#x (%d bytes) does not fit below 0x100 after offset %#x", id, 2+len(body), off)
	}
	c.data[off] = id
	c.data[off+1] = 0
	copy(c.data[off+2:], body)
	if writable != nil {
		copy(c.wmask[off+2:], writable)
	}
	if c.capLast == 0 {
		c.data[offCapPtr] = byte(off)
		c.data[offStatus] |= statusCapList
	} else {
		c.data[c.capLast+1] = byte(off)
	}
	c.capLast = off
	c.capNext = (end + 3) &^ 3
	return off, nil
}

// ConfigRead implements Function. Bytes beyond the configuration space
// read as 0xFF.
func (c *ConfigSpace) ConfigRead(offset int, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		if o := offset + i; o >= 0 && o < ConfigSize {
			data[i] = c.data[o]
		} else {
			data[i] = 0xff
		}
	}
}

// ConfigWrite implements Function: each byte changes only its writable
// bits and clears the write-1-to-clear bits it has set. A write to the
// command register or a BAR that changes a BAR's mapping is reported to
// the owner.
func (c *ConfigSpace) ConfigWrite(offset int, data []byte) {
	c.notify.Lock()
	defer c.notify.Unlock()
	c.mu.Lock()
	before := c.mappings()
	for i, v := range data {
		o := offset + i
		if o < 0 || o >= ConfigSize {
			continue
		}
		c.data[o] = c.data[o]&^c.wmask[o] | v&c.wmask[o]
		c.data[o] &^= v & c.w1c[o]
	}
	changes := c.changesSince(before)
	c.mu.Unlock()
	c.report(changes)
}

// Bytes returns a copy of n bytes of the space from offset (0xFF beyond
// its end).
func (c *ConfigSpace) Bytes(offset, n int) []byte {
	b := make([]byte, n)
	c.ConfigRead(offset, b)
	return b
}

// SetBytes writes b at offset regardless of the guest's write masks, for
// the owner to reflect device state in its own registers (capability
// fields, say). The command register and the BARs are refused: use
// ProgramBAR, so that mappings stay consistent.
func (c *ConfigSpace) SetBytes(offset int, b []byte) error {
	end := offset + len(b)
	switch {
	case offset < 0 || end > ConfigSize:
		return fmt.Errorf("pci: SetBytes %#x+%d is outside the configuration space", offset, len(b))
	case offset < offCommand+2 && end > offCommand:
		return fmt.Errorf("pci: SetBytes %#x+%d covers the command register", offset, len(b))
	case offset < barsEnd && end > offBAR0:
		return fmt.Errorf("pci: SetBytes %#x+%d covers the BARs; use ProgramBAR", offset, len(b))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.data[offset:], b)
	return nil
}

// ProgramBAR sets BAR i's address as firmware would before the guest
// runs. addr must be aligned to the BAR's size and fit its kind.
func (c *ConfigSpace) ProgramBAR(i int, addr uint64) error {
	if i < 0 || i >= numBARs || c.bars[i].Kind == BARNone {
		return fmt.Errorf("pci: BAR %d is not implemented", i)
	}
	b := c.bars[i]
	if addr&(b.Size-1) != 0 {
		return fmt.Errorf("pci: %v BAR %d address %#x is not aligned to its size %#x", b.Kind, i, addr, b.Size)
	}
	if b.Kind != BARMem64 && addr+b.Size-1 > 0xffffffff {
		return fmt.Errorf("pci: %v BAR %d address %#x+%#x does not fit 32 bits", b.Kind, i, addr, b.Size)
	}
	c.notify.Lock()
	defer c.notify.Unlock()
	c.mu.Lock()
	before := c.mappings()
	off := offBAR0 + 4*i
	lo := binary.LittleEndian.Uint32(c.data[off:])
	binary.LittleEndian.PutUint32(c.data[off:], uint32(addr)|lo&^binary.LittleEndian.Uint32(c.wmask[off:]))
	if b.Kind == BARMem64 {
		binary.LittleEndian.PutUint32(c.data[off+4:], uint32(addr>>32))
	}
	changes := c.changesSince(before)
	c.mu.Unlock()
	c.report(changes)
	return nil
}

// BARs returns the function's BAR declarations.
func (c *ConfigSpace) BARs() [numBARs]BAR { return c.bars }

// BARMapping returns where BAR i decodes now.
func (c *ConfigSpace) BARMapping(i int) BARMapping {
	if i < 0 || i >= numBARs {
		return BARMapping{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mapping(i)
}

// Command returns the command register.
func (c *ConfigSpace) Command() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint16(c.data[offCommand:])
}

// SetInterruptStatus sets or clears the status register's interrupt
// status bit, which a device using INTx keeps in step with its line.
func (c *ConfigSpace) SetInterruptStatus(pending bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pending {
		c.data[offStatus] |= statusINTx
	} else {
		c.data[offStatus] &^= statusINTx
	}
}

// mappings returns every BAR's mapping. Precondition: mu is held.
func (c *ConfigSpace) mappings() [numBARs]BARMapping {
	var m [numBARs]BARMapping
	for i := range m {
		m[i] = c.mapping(i)
	}
	return m
}

// mapping computes BAR i's mapping from the registers. Precondition: mu
// is held.
func (c *ConfigSpace) mapping(i int) BARMapping {
	cmd := binary.LittleEndian.Uint16(c.data[offCommand:])
	off := offBAR0 + 4*i
	lo := uint64(binary.LittleEndian.Uint32(c.data[off:]))
	switch c.bars[i].Kind {
	case BARIO:
		return BARMapping{Addr: lo &^ 0x3, Enabled: cmd&CommandIO != 0}
	case BARMem32:
		return BARMapping{Addr: lo &^ 0xf, Enabled: cmd&CommandMemory != 0}
	case BARMem64:
		hi := uint64(binary.LittleEndian.Uint32(c.data[off+4:]))
		return BARMapping{Addr: hi<<32 | lo&^0xf, Enabled: cmd&CommandMemory != 0}
	}
	return BARMapping{}
}

// changesSince lists the BARs whose mapping differs from before.
// Precondition: mu is held.
func (c *ConfigSpace) changesSince(before [numBARs]BARMapping) []BARChange {
	var out []BARChange
	for i, old := range before {
		if c.bars[i].Kind == BARNone {
			continue
		}
		if cur := c.mapping(i); cur != old {
			out = append(out, BARChange{Index: i, Kind: c.bars[i].Kind, Size: c.bars[i].Size, Old: old, New: cur})
		}
	}
	return out
}

// report hands changes to the owner. Precondition: notify is held, mu is not.
func (c *ConfigSpace) report(changes []BARChange) {
	if c.onChange == nil {
		return
	}
	for _, ch := range changes {
		c.onChange(ch)
	}
}
