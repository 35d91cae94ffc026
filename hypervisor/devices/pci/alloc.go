package pci

import (
	"fmt"
	"math/bits"
	"sync"
)

// Window is a range of guest addresses (memory or I/O) for BARs.
type Window struct {
	Base, Size uint64
}

func (w Window) String() string { return fmt.Sprintf("%#x+%#x", w.Base, w.Size) }

// Allocator hands out naturally aligned BAR addresses from the machine's
// PCI windows, lowest first, as firmware would before the guest boots.
// It never frees: a machine assigns its BARs once. It is safe for
// concurrent use.
type Allocator struct {
	mu                     sync.Mutex
	io, mem32, mem64       Window
	nextIO, next32, next64 uint64 // first free address in each window
}

// NewAllocator returns an allocator over an I/O window (within the
// 64 KiB port space), a 32-bit memory window (below 4 GiB) and a 64-bit
// memory window; a window of size 0 is absent. 64-bit BARs go to the
// 64-bit window when there is one, else to the 32-bit window.
func NewAllocator(io, mem32, mem64 Window) (*Allocator, error) {
	for _, w := range []struct {
		name  string
		w     Window
		limit uint64
	}{
		{"I/O", io, 1 << 16},
		{"32-bit memory", mem32, 1 << 32},
		{"64-bit memory", mem64, 0},
	} {
		end, carry := bits.Add64(w.w.Base, w.w.Size, 0)
		if carry != 0 || (w.limit != 0 && end > w.limit) {
			return nil, fmt.Errorf("pci: %s window %v does not fit its address space", w.name, w.w)
		}
	}
	return &Allocator{io: io, mem32: mem32, mem64: mem64, nextIO: io.Base, next32: mem32.Base, next64: mem64.Base}, nil
}

// Allocate returns an address for a BAR of the given kind and size,
// aligned to the size.
func (a *Allocator) Allocate(kind BARKind, size uint64) (uint64, error) {
	if size == 0 || bits.OnesCount64(size) != 1 {
		return 0, fmt.Errorf("pci: allocate %v BAR: size %#x is not a power of two", kind, size)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var w Window
	var next *uint64
	var name string
	switch {
	case kind == BARIO:
		w, next, name = a.io, &a.nextIO, "I/O"
	case kind == BARMem32, kind == BARMem64 && a.mem64.Size == 0:
		w, next, name = a.mem32, &a.next32, "32-bit memory"
	case kind == BARMem64:
		w, next, name = a.mem64, &a.next64, "64-bit memory"
	default:
		return 0, fmt.Errorf("pci: allocate: %v is not a BAR kind that maps anything", kind)
	}
	addr := (*next + size - 1) &^ (size - 1)
	if addr < *next || addr-w.Base > w.Size || w.Size-(addr-w.Base) < size {
		return 0, fmt.Errorf("pci: %s window %v has no room for a %#x-byte %v BAR", name, w, size, kind)
	}
	*next = addr + size
	return addr, nil
}

// Assign allocates and programs every BAR of c. The guest still enables
// decoding itself, through the command register.
func (a *Allocator) Assign(c *ConfigSpace) error {
	for i, b := range c.BARs() {
		if b.Kind == BARNone {
			continue
		}
		addr, err := a.Allocate(b.Kind, b.Size)
		if err != nil {
			return fmt.Errorf("pci: BAR %d: %w", i, err)
		}
		if err := c.ProgramBAR(i, addr); err != nil {
			return err
		}
	}
	return nil
}
