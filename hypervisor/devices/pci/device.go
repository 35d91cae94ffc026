// Package pci implements paddock's PCI host bridge: configuration
// mechanism #1 (ports 0xCF8-0xCFF) and PCIe ECAM (memory-mapped, one
// 4 KiB page per function) for bus 0, a registry of the functions on
// that bus, the ConfigSpace helper that gives a function standard type-0
// header semantics, and an Allocator that hands out BAR addresses from
// the machine's PCI windows.
//
// The host bridge itself is device 00.0, with the Red Hat, Inc. IDs
// registered for a generic "QEMU PCIe Host bridge" (1b36:0008, class
// 0600): a bridge no operating system applies chipset quirks to. Since
// the bridge is a PC chipset's, it also decodes the reset control
// register at 0xCF9 (a byte write with RST_CPU set resets the machine),
// which Linux uses for "reboot=pci".
//
// Only bus 0 exists: configuration reads of any other bus, of empty
// slots, or with mechanism #1 disabled return all ones, and writes to
// them are dropped.
package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Function is one PCI function's configuration space, as the host bridge
// sees it. offset is within the function's ConfigSize bytes and
// offset+len(data) never crosses an aligned dword; len(data) is 1 to 4.
// A read fills all of data. The bridge calls these from vCPU threads,
// possibly concurrently: implementations lock themselves.
type Function interface {
	ConfigRead(offset int, data []byte)
	ConfigWrite(offset int, data []byte)
}

// Ports of configuration mechanism #1 and the reset control register.
const (
	ConfigAddressPort = 0xcf8 // CONFIG_ADDRESS, dword accesses only
	ResetControlPort  = 0xcf9 // byte accesses
	ConfigDataPort    = 0xcfc // CONFIG_DATA, 0xCFC-0xCFF
	// Ports is the number of ports from ConfigAddressPort the bridge decodes.
	Ports = 8
)

// ECAM geometry: 4 KiB per function, 8 functions per device, 32 devices
// per bus; ECAMSize covers 256 buses, though only bus 0 is populated.
const (
	ECAMBusSize = 1 << 20
	ECAMSize    = 256 * ECAMBusSize
)

// Bus geometry.
const (
	Devices   = 32
	Functions = 8
)

// The host bridge's identity.
const (
	VendorRedHat         = 0x1b36
	DeviceRedHatHost     = 0x0008 // QEMU PCIe Host bridge
	VendorRedHatQumranet = 0x1af4
	ClassHostBridge      = 0x060000
)

// CONFIG_ADDRESS fields.
const (
	addrEnable = 0x80000000
	addrMask   = 0x80fffffc // reserved bits 30-24 and 1-0 read as 0
)

// Reset control register bits (as in Intel's PIIX/ICH chipsets).
const (
	rcrSysReset = 0x02 // full rather than CPU-only reset; stored
	rcrResetCPU = 0x04 // writing 1 resets
	rcrFull     = 0x08 // stored
)

// HostBridge is the PCI host bridge and bus 0. It implements
// devices.PortDevice for the Ports ports from ConfigAddressPort and
// devices.MMIODevice for the ECAMSize bytes from its ECAM base. All
// methods are safe for concurrent use.
type HostBridge struct {
	ecamBase uint64
	onReset  func()
	self     *ConfigSpace

	mu   sync.Mutex
	addr uint32 // CONFIG_ADDRESS
	rcr  byte   // reset control register, stored bits
	fns  [Devices][Functions]Function
}

// NewHostBridge returns a host bridge whose ECAM window starts at
// ecamBase (1 MiB aligned), with itself as device 00.0 and no other
// function. onReset is called, without any lock held, when the guest
// writes the reset control register with RST_CPU set; nil ignores it.
func NewHostBridge(ecamBase uint64, onReset func()) (*HostBridge, error) {
	if ecamBase%ECAMBusSize != 0 {
		return nil, fmt.Errorf("pci: ECAM base %#x is not 1 MiB aligned", ecamBase)
	}
	self, err := NewConfigSpace(Header{
		VendorID:          VendorRedHat,
		DeviceID:          DeviceRedHatHost,
		Class:             ClassHostBridge,
		SubsystemVendorID: VendorRedHatQumranet,
		Subsystem:         0x1100,
	}, nil)
	if err != nil {
		return nil, err
	}
	h := &HostBridge{ecamBase: ecamBase, onReset: onReset, self: self}
	h.fns[0][0] = self
	return h, nil
}

// ECAMBase returns the guest-physical address of the ECAM window.
func (h *HostBridge) ECAMBase() uint64 { return h.ecamBase }

// Attach puts f at device dev, function fn of bus 0. Function 0 of a
// device comes first, and must declare itself multi-function (header
// type bit 7) before functions 1-7 join it, or the guest would never
// look for them.
func (h *HostBridge) Attach(dev, fn int, f Function) error {
	if dev < 0 || dev >= Devices || fn < 0 || fn >= Functions {
		return fmt.Errorf("pci: %02x.%d is not a device/function number", dev, fn)
	}
	if f == nil {
		return fmt.Errorf("pci: attach %02x.%d: no function", dev, fn)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fns[dev][fn] != nil {
		return fmt.Errorf("pci: %02x.%d is already in use", dev, fn)
	}
	if fn != 0 {
		f0 := h.fns[dev][0]
		if f0 == nil {
			return fmt.Errorf("pci: attach %02x.%d: function 0 of the device must be attached first", dev, fn)
		}
		var ht [1]byte
		f0.ConfigRead(offHeaderType, ht[:])
		if ht[0]&headerMultiFunction == 0 {
			return fmt.Errorf("pci: attach %02x.%d: function %02x.0 is not multi-function", dev, fn, dev)
		}
	}
	h.fns[dev][fn] = f
	return nil
}

// Detach removes the function at dev.fn; function 0 goes last.
func (h *HostBridge) Detach(dev, fn int) error {
	if dev < 0 || dev >= Devices || fn < 0 || fn >= Functions {
		return fmt.Errorf("pci: %02x.%d is not a device/function number", dev, fn)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case dev == 0 && fn == 0:
		return fmt.Errorf("pci: 00.0 is the host bridge")
	case h.fns[dev][fn] == nil:
		return fmt.Errorf("pci: %02x.%d is empty", dev, fn)
	case fn == 0:
		for i := 1; i < Functions; i++ {
			if h.fns[dev][i] != nil {
				return fmt.Errorf("pci: detach %02x.0: function %d is still attached", dev, i)
			}
		}
	}
	h.fns[dev][fn] = nil
	return nil
}

// function returns the function at bus/dev/fn, or nil for none.
func (h *HostBridge) function(bus, dev, fn int) Function {
	if bus != 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fns[dev][fn]
}

// configRead reads a function's configuration space; absent functions
// read as all ones. Precondition: the access stays within one dword.
func (h *HostBridge) configRead(bus, dev, fn, offset int, data []byte) {
	if f := h.function(bus, dev, fn); f != nil {
		f.ConfigRead(offset, data)
		return
	}
	fill(data)
}

// configWrite writes a function's configuration space; writes to absent
// functions are dropped. Precondition: the access stays within one dword.
func (h *HostBridge) configWrite(bus, dev, fn, offset int, data []byte) {
	if f := h.function(bus, dev, fn); f != nil {
		f.ConfigWrite(offset, data)
	}
}

// decodeConf1 splits CONFIG_ADDRESS into its fields.
func decodeConf1(addr uint32) (enabled bool, bus, dev, fn, reg int) {
	return addr&addrEnable != 0, int(addr >> 16 & 0xff), int(addr >> 11 & 0x1f), int(addr >> 8 & 0x7), int(addr & 0xfc)
}

// conf1Data locates the CONFIG_DATA bytes of an access of n bytes at
// port: their offset within data and within the dword, and how many.
func conf1Data(port uint16, n int) (dataOff, regOff, count int) {
	start := max(int(port), ConfigDataPort)
	end := min(int(port)+n, ConfigDataPort+4)
	if start >= end {
		return 0, 0, 0
	}
	return start - int(port), start - ConfigDataPort, end - start
}

// ReadPort implements devices.PortDevice. CONFIG_ADDRESS answers only
// dword reads at 0xCF8 and the reset control register only byte reads at
// 0xCF9; other accesses there read as open bus, as on a PC. Bytes at
// 0xCFC-0xCFF read the addressed function's register bytes.
func (h *HostBridge) ReadPort(port uint16, data []byte) {
	fill(data)
	h.mu.Lock()
	addr, rcr := h.addr, h.rcr
	h.mu.Unlock()
	switch {
	case port == ConfigAddressPort && len(data) == 4:
		binary.LittleEndian.PutUint32(data, addr)
		return
	case port == ResetControlPort && len(data) == 1:
		data[0] = rcr
		return
	}
	dataOff, regOff, n := conf1Data(port, len(data))
	if n == 0 {
		return
	}
	if enabled, bus, dev, fn, reg := decodeConf1(addr); enabled {
		h.configRead(bus, dev, fn, reg+regOff, data[dataOff:dataOff+n])
	}
}

// WritePort implements devices.PortDevice, with the same decoding as
// ReadPort.
func (h *HostBridge) WritePort(port uint16, data []byte) {
	switch {
	case port == ConfigAddressPort && len(data) == 4:
		h.mu.Lock()
		h.addr = binary.LittleEndian.Uint32(data) & addrMask
		h.mu.Unlock()
		return
	case port == ResetControlPort && len(data) == 1:
		h.mu.Lock()
		h.rcr = data[0] & (rcrSysReset | rcrFull)
		h.mu.Unlock()
		if data[0]&rcrResetCPU != 0 && h.onReset != nil {
			h.onReset()
		}
		return
	}
	dataOff, regOff, n := conf1Data(port, len(data))
	if n == 0 {
		return
	}
	h.mu.Lock()
	addr := h.addr
	h.mu.Unlock()
	if enabled, bus, dev, fn, reg := decodeConf1(addr); enabled {
		h.configWrite(bus, dev, fn, reg+regOff, data[dataOff:dataOff+n])
	}
}

// ecamSplit calls f for each piece of an ECAM access at addr that stays
// within one dword, with the decoded function address. Pieces outside the
// window get bus -1.
func (h *HostBridge) ecamSplit(addr uint64, n int, f func(bus, dev, fn, reg, pos, count int)) {
	for pos := 0; pos < n; {
		a := addr + uint64(pos)
		count := min(n-pos, 4-int(a&3))
		bus := -1
		var dev, fn, reg int
		if a >= h.ecamBase && a-h.ecamBase < ECAMSize {
			off := a - h.ecamBase
			bus, dev, fn, reg = int(off>>20), int(off>>15&0x1f), int(off>>12&0x7), int(off&0xfff)
		}
		f(bus, dev, fn, reg, pos, count)
		pos += count
	}
}

// ReadMMIO implements devices.MMIODevice for the ECAM window.
func (h *HostBridge) ReadMMIO(addr uint64, data []byte) {
	h.ecamSplit(addr, len(data), func(bus, dev, fn, reg, pos, count int) {
		h.configRead(bus, dev, fn, reg, data[pos:pos+count])
	})
}

// WriteMMIO implements devices.MMIODevice for the ECAM window.
func (h *HostBridge) WriteMMIO(addr uint64, data []byte) {
	h.ecamSplit(addr, len(data), func(bus, dev, fn, reg, pos, count int) {
		h.configWrite(bus, dev, fn, reg, data[pos:pos+count])
	})
}

// fill sets every byte of data to 0xFF, what an absent device returns.
func fill(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}
