package kvm

import (
	"encoding/binary"
	"fmt"
)

// IRQChip is the state of one in-kernel interrupt controller chip: ChipID is
// IRQChipPICMaster, IRQChipPICSlave or IRQChipIOAPIC, and Chip holds a
// PICState or an IOAPICState (see the accessors). It mirrors struct
// kvm_irqchip (KVM_GET_IRQCHIP, KVM_SET_IRQCHIP), whose chip union is
// reserved to 512 bytes.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// PICState is the state of one 8259A. It mirrors struct kvm_pic_state.
type PICState struct {
	LastIRR                uint8 // edge detection
	IRR                    uint8 // interrupt request register
	IMR                    uint8 // interrupt mask register
	ISR                    uint8 // in-service register
	PriorityAdd            uint8 // highest priority
	IRQBase                uint8 // vector of IR0 (ICW2)
	ReadRegSelect          uint8
	Poll                   uint8
	SpecialMask            uint8
	InitState              uint8
	AutoEOI                uint8
	RotateOnAutoEOI        uint8
	SpecialFullyNestedMode uint8
	Init4                  uint8 // ICW4 expected
	ELCR                   uint8 // edge/level control (PIIX ELCR)
	ELCRMask               uint8
}

// IOAPICState is the state of the in-kernel IOAPIC. It mirrors struct
// kvm_ioapic_state.
type IOAPICState struct {
	BaseAddress uint64
	IORegSel    uint32
	ID          uint32
	IRR         uint32
	_           uint32
	RedirTbl    [IOAPICNumPins]IOAPICRedirection
}

// IOAPICRedirection is one 64-bit IOAPIC redirection table entry.
type IOAPICRedirection uint64

// Vector returns the interrupt vector (bits 7:0).
func (r IOAPICRedirection) Vector() uint8 { return uint8(r) }

// DeliveryMode returns the delivery mode (bits 10:8): 0 fixed, 1 lowest
// priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT.
func (r IOAPICRedirection) DeliveryMode() uint8 { return uint8(r>>8) & 7 }

// LogicalDest reports whether the destination is a logical APIC ID (bit 11).
func (r IOAPICRedirection) LogicalDest() bool { return r&(1<<11) != 0 }

// DeliveryPending reports the delivery status bit (bit 12).
func (r IOAPICRedirection) DeliveryPending() bool { return r&(1<<12) != 0 }

// ActiveLow reports the pin polarity (bit 13).
func (r IOAPICRedirection) ActiveLow() bool { return r&(1<<13) != 0 }

// RemoteIRR reports the remote IRR bit of a level-triggered entry (bit 14).
func (r IOAPICRedirection) RemoteIRR() bool { return r&(1<<14) != 0 }

// LevelTriggered reports the trigger mode (bit 15).
func (r IOAPICRedirection) LevelTriggered() bool { return r&(1<<15) != 0 }

// Masked reports the mask bit (bit 16).
func (r IOAPICRedirection) Masked() bool { return r&(1<<16) != 0 }

// Dest returns the destination APIC ID (bits 63:56).
func (r IOAPICRedirection) Dest() uint8 { return uint8(r >> 56) }

// PIC decodes Chip as the state of an 8259A. Precondition: ChipID is
// IRQChipPICMaster or IRQChipPICSlave.
func (c *IRQChip) PIC() PICState {
	var s PICState
	decodeChip(c.Chip[:], &s)
	return s
}

// SetPIC encodes s into Chip.
func (c *IRQChip) SetPIC(s PICState) { encodeChip(c.Chip[:], &s) }

// IOAPIC decodes Chip as the state of the IOAPIC. Precondition: ChipID is
// IRQChipIOAPIC.
func (c *IRQChip) IOAPIC() IOAPICState {
	var s IOAPICState
	decodeChip(c.Chip[:], &s)
	return s
}

// SetIOAPIC encodes s into Chip.
func (c *IRQChip) SetIOAPIC(s IOAPICState) { encodeChip(c.Chip[:], &s) }

// decodeChip and encodeChip convert between the chip union and a typed
// state. Both states are far smaller than the union, so they cannot fail.
func decodeChip(chip []byte, v any) {
	if _, err := binary.Decode(chip, binary.LittleEndian, v); err != nil {
		panic(fmt.Sprintf("kvm: decoding %T from the 512-byte irqchip union: %v", v, err))
	}
}

func encodeChip(chip []byte, v any) {
	if _, err := binary.Encode(chip, binary.LittleEndian, v); err != nil {
		panic(fmt.Sprintf("kvm: encoding %T into the 512-byte irqchip union: %v", v, err))
	}
}

// PITChannelState is the state of one i8254 channel. It mirrors struct
// kvm_pit_channel_state.
type PITChannelState struct {
	Count         uint32 // can be 65536
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64 // host monotonic nanoseconds
}

// PITState2 is the state of the in-kernel i8254 PIT. It mirrors struct
// kvm_pit_state2 (KVM_GET_PIT2, KVM_SET_PIT2).
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32 // PITFlags*
	_        [9]uint32
}

// ClockData is the VM's kvmclock: Clock is the guest's nanosecond clock.
// Realtime (host CLOCK_REALTIME, ns) and HostTSC are valid when Flags has
// ClockRealtime and ClockHostTSC. It mirrors struct kvm_clock_data
// (KVM_GET_CLOCK, KVM_SET_CLOCK).
type ClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

// IOEventFlags are the flags of an IOEvent (IOEvent* constants).
type IOEventFlags uint32

// IOEvent registers an eventfd that KVM signals, without exiting to user
// space, when the guest writes to an address: an I/O port when Flags has
// IOEventPIO, an MMIO address otherwise. Len is the access width (1, 2, 4
// or 8; 0 matches any width, with CapIOEventFDAnyLength). With
// IOEventDatamatch only writes of Datamatch signal.
type IOEvent struct {
	Addr      uint64
	Len       uint32
	Fd        int
	Datamatch uint64
	Flags     IOEventFlags
}

// RoutingType is the type of a GSI routing entry.
type RoutingType uint32

// RoutingEntry routes one GSI, either to a pin of an in-kernel irqchip
// (Type RoutingIRQChip: Chip is an IRQChip* id, Pin the pin) or to an MSI
// message (Type RoutingMSI: AddressLo, AddressHi, Data; DevID when Flags has
// MSIValidDevID).
type RoutingEntry struct {
	GSI       uint32
	Type      RoutingType
	Chip, Pin uint32
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	DevID     uint32
	Flags     uint32
}

// irqLevel mirrors struct kvm_irq_level (KVM_IRQ_LINE).
type irqLevel struct {
	IRQ   uint32 // or, on return from KVM_IRQ_LINE_STATUS, the status
	Level uint32
}

// irqfd mirrors struct kvm_irqfd (KVM_IRQFD).
type irqfd struct {
	Fd         uint32
	GSI        uint32
	Flags      uint32
	ResampleFd uint32
	_          [16]uint8
}

// ioeventfd mirrors struct kvm_ioeventfd (KVM_IOEVENTFD).
type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	Fd        int32
	Flags     uint32
	_         [36]uint8
}

// routingEntry mirrors struct kvm_irq_routing_entry. U is the union: for
// KVM_IRQ_ROUTING_IRQCHIP {irqchip, pin}, for KVM_IRQ_ROUTING_MSI
// {address_lo, address_hi, data, devid}.
type routingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	U     [8]uint32
}

// irqRoutingHeader is the fixed part of struct kvm_irq_routing; Nr entries
// follow.
type irqRoutingHeader struct {
	Nr    uint32
	Flags uint32
}

// msi mirrors struct kvm_msi (KVM_SIGNAL_MSI).
type msi struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// pitConfig mirrors struct kvm_pit_config (KVM_CREATE_PIT2).
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// enableCap mirrors struct kvm_enable_cap (KVM_ENABLE_CAP).
type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

// toKernel converts e into the kernel's routing entry.
func (e RoutingEntry) toKernel() (routingEntry, error) {
	k := routingEntry{GSI: e.GSI, Type: uint32(e.Type), Flags: e.Flags}
	switch e.Type {
	case RoutingIRQChip:
		k.U[0], k.U[1] = e.Chip, e.Pin
	case RoutingMSI:
		k.U[0], k.U[1], k.U[2], k.U[3] = e.AddressLo, e.AddressHi, e.Data, e.DevID
	default:
		return k, fmt.Errorf("GSI %d: unsupported routing type %d", e.GSI, e.Type)
	}
	return k, nil
}
