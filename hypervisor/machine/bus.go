package machine

import (
	"fmt"
	"sort"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices"
)

// portBus dispatches guest IN/OUT instructions to devices by port. It is
// filled while the machine is built and read-only afterwards, so lookups
// take no lock.
type portBus struct {
	// owner maps each port to an index into devs (0 = nobody).
	owner [1 << 16]uint16
	devs  []devices.PortDevice
}

func newPortBus() *portBus {
	return &portBus{devs: []devices.PortDevice{nil}}
}

// register claims ports [base, base+n) for dev. Overlaps are programming
// errors in the machine's wiring and reported as such.
func (b *portBus) register(base uint16, n int, dev devices.PortDevice) error {
	if int(base)+n > 1<<16 {
		return fmt.Errorf("port range %#x+%d is beyond the I/O space", base, n)
	}
	for p := int(base); p < int(base)+n; p++ {
		if b.owner[p] != 0 {
			return fmt.Errorf("port %#x is already claimed", p)
		}
	}
	b.devs = append(b.devs, dev)
	idx := uint16(len(b.devs) - 1)
	for p := int(base); p < int(base)+n; p++ {
		b.owner[p] = idx
	}
	return nil
}

// read fills data from the device at port, or with 0xff (open bus).
// It reports whether a device claimed the port.
func (b *portBus) read(port uint16, data []byte) bool {
	if i := b.owner[port]; i != 0 {
		b.devs[i].ReadPort(port, data)
		return true
	}
	for i := range data {
		data[i] = 0xff
	}
	return false
}

// write hands data to the device at port; writes to unclaimed ports are
// dropped, as on a PC. It reports whether a device claimed the port.
func (b *portBus) write(port uint16, data []byte) bool {
	if i := b.owner[port]; i != 0 {
		b.devs[i].WritePort(port, data)
		return true
	}
	return false
}

// mmioRange is one device window on the MMIO bus.
type mmioRange struct {
	base, size uint64
	dev        devices.MMIODevice
}

// mmioBus dispatches guest MMIO exits to devices by address. Windows can
// move at run time (a guest reprogramming a PCI BAR), so it is guarded by
// a read-write lock that vCPUs share.
type mmioBus struct {
	mu     sync.RWMutex
	ranges []mmioRange // sorted by base, non-overlapping
}

// register adds dev at [base, base+size).
func (b *mmioBus) register(base, size uint64, dev devices.MMIODevice) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("MMIO window %#x+%#x is empty or wraps", base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base >= base })
	if i > 0 && b.ranges[i-1].base+b.ranges[i-1].size > base {
		return fmt.Errorf("MMIO window %#x+%#x overlaps %#x+%#x", base, size, b.ranges[i-1].base, b.ranges[i-1].size)
	}
	if i < len(b.ranges) && base+size > b.ranges[i].base {
		return fmt.Errorf("MMIO window %#x+%#x overlaps %#x+%#x", base, size, b.ranges[i].base, b.ranges[i].size)
	}
	b.ranges = append(b.ranges, mmioRange{})
	copy(b.ranges[i+1:], b.ranges[i:])
	b.ranges[i] = mmioRange{base, size, dev}
	return nil
}

// unregister removes the window that starts at base.
func (b *mmioBus) unregister(base uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, r := range b.ranges {
		if r.base == base {
			b.ranges = append(b.ranges[:i], b.ranges[i+1:]...)
			return true
		}
	}
	return false
}

func (b *mmioBus) find(addr uint64, n int) devices.MMIODevice {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i < len(b.ranges) {
		r := b.ranges[i]
		if addr >= r.base && addr+uint64(n) <= r.base+r.size {
			return r.dev
		}
	}
	return nil
}

// read fills data from the device at addr, or with 0xff bytes.
func (b *mmioBus) read(addr uint64, data []byte) bool {
	if d := b.find(addr, len(data)); d != nil {
		d.ReadMMIO(addr, data)
		return true
	}
	for i := range data {
		data[i] = 0xff
	}
	return false
}

// write hands data to the device at addr; unclaimed writes are dropped.
func (b *mmioBus) write(addr uint64, data []byte) bool {
	if d := b.find(addr, len(data)); d != nil {
		d.WriteMMIO(addr, data)
		return true
	}
	return false
}
