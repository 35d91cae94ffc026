// Package vmgenid is the VM Generation ID device of Microsoft's "Virtual
// Machine Generation ID" specification, which Linux's vmgenid driver
// (drivers/virt/vmgenid.c), QEMU and Firecracker implement: a 128-bit ID
// in guest memory that the guest reads at boot and again when told it
// changed. It changes whenever the VM starts again from saved state (a
// snapshot restored, a warm clone), so that a guest can tell that it may
// be running twice: Linux mixes the new ID into its RNG and reseeds it
// at once (add_vmfork_randomness, "crng reseeded due to virtual machine
// fork"), and newer kernels send a NEW_VMGENID=1 uevent.
//
// The device is 16 bytes of reserved guest memory at an 8-byte aligned
// address the DSDT's VGEN device gives (its ADDR object), and a notify
// callback the machine wires to the Generic Event Device, whose _EVT
// sends Notify(VGEN, 0x80). The device has no registers: the guest only
// reads memory, so nothing here parses guest input.
package vmgenid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
)

// Len is the size of a generation ID in guest memory.
const Len = 16

// ID is a generation ID, in the byte order it has in guest memory.
type ID [Len]byte

// String returns the ID as 32 hex digits, in memory order.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText implements encoding.TextMarshaler: the ID as String
// gives it, as snapshots store it.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: exactly 32 hex
// digits.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) != 2*Len {
		return fmt.Errorf("vmgenid: a generation ID is %d hex digits, not %d", 2*Len, len(b))
	}
	var v ID
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("vmgenid: generation ID %q: %w", b, err)
	}
	*id = v
	return nil
}

// NewID returns a random ID from crypto/rand.
func NewID() (ID, error) {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		return ID{}, fmt.Errorf("vmgenid: a random generation ID: %w", err)
	}
	return id, nil
}

// GuestMemory is guest RAM as the device sees it. The machine's memory
// implements it.
type GuestMemory interface {
	// Slice returns the host view of guest-physical [gpa, gpa+n); it
	// fails unless the whole range is guest RAM.
	Slice(gpa, n uint64) ([]byte, error)
}

// Config describes the device.
type Config struct {
	// Addr is where the ID lives in guest memory: 8-byte aligned, in
	// memory the guest's OS does not use (an E820 reserved range).
	Addr uint64
	// Memory is guest RAM.
	Memory GuestMemory
	// ID is the generation ID the guest will see; all zero picks a
	// random one.
	ID ID
	// Notify tells the guest the ID changed (the GED event). Nil: the
	// guest is never told.
	Notify func() error
}

// Device is the VM Generation ID device. Its methods are safe for
// concurrent use.
type Device struct {
	mem    GuestMemory
	notify func() error

	mu   sync.Mutex
	addr uint64
	id   ID
}

// New returns the device cfg describes, with cfg.ID or, when that is
// zero, a random ID. It writes nothing into guest memory yet: Write (at
// boot) or Restore does.
func New(cfg Config) (*Device, error) {
	if err := checkAddr(cfg.Addr); err != nil {
		return nil, fmt.Errorf("vmgenid: %w", err)
	}
	id := cfg.ID
	if id == (ID{}) {
		var err error
		if id, err = NewID(); err != nil {
			return nil, err
		}
	}
	return &Device{mem: cfg.Memory, notify: cfg.Notify, addr: cfg.Addr, id: id}, nil
}

// checkAddr refuses an address the specification does not allow: the ID
// is 8-byte aligned, and its 16 bytes must not wrap around.
func checkAddr(addr uint64) error {
	if addr == 0 || addr%8 != 0 || addr+Len < addr {
		return fmt.Errorf("the ID's address %#x is not a non-zero, 8-byte aligned address", addr)
	}
	return nil
}

// ID returns the generation ID the guest sees.
func (d *Device) ID() ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.id
}

// Addr returns the ID's guest-physical address.
func (d *Device) Addr() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// Write copies the ID into guest memory, as a machine does when it
// boots. It fails if the ID's address is not guest RAM.
func (d *Device) Write() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.write(); err != nil {
		return fmt.Errorf("vmgenid: %w", err)
	}
	return nil
}

// write copies the ID to d.addr. Precondition: mu is held.
func (d *Device) write() error {
	dst, err := d.mem.Slice(d.addr, Len)
	if err != nil {
		return fmt.Errorf("write the ID at %#x: %w", d.addr, err)
	}
	copy(dst, d.id[:])
	return nil
}

// Notify tells the guest the ID changed. The machine calls it once a
// restored guest runs.
func (d *Device) Notify() error {
	if d.notify == nil {
		return nil
	}
	if err := d.notify(); err != nil {
		return fmt.Errorf("vmgenid: notify the guest: %w", err)
	}
	return nil
}
