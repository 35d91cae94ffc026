// Package virtiotest is a virtio driver written in Go for tests: it
// programs a virtio-pci function through its registers as a guest driver
// would, lays out descriptor chains in guest memory, notifies queues and
// waits for their interrupts. Device tests (blk, net, rng) and the
// machine's tests drive real devices with it.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Memory is guest RAM for tests: an anonymous mapping at guest-physical
// address Base, with a bump allocator. It implements virtio.GuestMemory
// with the same bounds checks as the machine's memory.
type Memory struct {
	Base   uint64
	b      []byte
	mapped bool // b is our own mapping, unmapped by Close

	mu   sync.Mutex
	next uint64
}

// NewMemory maps size bytes of guest memory at guest-physical base.
func NewMemory(base, size uint64) (*Memory, error) {
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("virtiotest: map %d bytes: %w", size, err)
	}
	return &Memory{Base: base, b: b, next: base, mapped: true}, nil
}

// MemoryAt gives a driver the guest memory b, which lives at
// guest-physical base (a range of a real machine's RAM, say). Close does
// not unmap it.
func MemoryAt(base uint64, b []byte) *Memory {
	return &Memory{Base: base, b: b, next: base}
}

// Close unmaps memory that NewMemory mapped.
func (m *Memory) Close() error {
	if !m.mapped {
		return nil
	}
	return unix.Munmap(m.b)
}

// Size is the memory's size in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.b)) }

// Slice implements virtio.GuestMemory.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	size := uint64(len(m.b))
	if gpa < m.Base || gpa-m.Base >= size || n > size-(gpa-m.Base) {
		return nil, fmt.Errorf("guest range [%#x, %#x): not guest RAM", gpa, gpa+n)
	}
	off := gpa - m.Base
	return m.b[off : off+n : off+n], nil
}

// Alloc reserves n bytes aligned to align (a power of two) and returns
// their guest-physical address. The bytes are zeroed.
func (m *Memory) Alloc(n, align uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if align == 0 {
		align = 1
	}
	a := (m.next + align - 1) &^ (align - 1)
	if a-m.Base+n > uint64(len(m.b)) {
		panic(fmt.Sprintf("virtiotest: out of test memory allocating %d bytes", n))
	}
	m.next = a + n
	clear(m.b[a-m.Base : a-m.Base+n])
	return a
}

// Mark returns the allocator's position, for Release.
func (m *Memory) Mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next
}

// Release frees every allocation made after Mark returned mark.
func (m *Memory) Release(mark uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next = mark
}

// Reset frees every allocation (the memory keeps its contents).
func (m *Memory) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next = m.Base
}

// Put allocates room for data (8-byte aligned), copies it in and
// returns its address.
func (m *Memory) Put(data []byte) uint64 {
	a := m.Alloc(uint64(len(data)), 8)
	m.Write(a, data)
	return a
}

// Write copies data to gpa. It panics outside the memory: tests only.
func (m *Memory) Write(gpa uint64, data []byte) {
	copy(m.must(gpa, uint64(len(data))), data)
}

// Read returns a copy of n bytes at gpa.
func (m *Memory) Read(gpa, n uint64) []byte {
	return append([]byte(nil), m.must(gpa, n)...)
}

// Bytes returns the n bytes at gpa, aliasing the memory.
func (m *Memory) Bytes(gpa, n uint64) []byte { return m.must(gpa, n) }

func (m *Memory) must(gpa, n uint64) []byte {
	b, err := m.Slice(gpa, n)
	if err != nil {
		panic("virtiotest: " + err.Error())
	}
	return b
}

// U16 reads a little-endian uint16.
func (m *Memory) U16(gpa uint64) uint16 { return binary.LittleEndian.Uint16(m.must(gpa, 2)) }

// PutU16 writes a little-endian uint16.
func (m *Memory) PutU16(gpa uint64, v uint16) { binary.LittleEndian.PutUint16(m.must(gpa, 2), v) }

// U32 reads a little-endian uint32.
func (m *Memory) U32(gpa uint64) uint32 { return binary.LittleEndian.Uint32(m.must(gpa, 4)) }

// PutU32 writes a little-endian uint32.
func (m *Memory) PutU32(gpa uint64, v uint32) { binary.LittleEndian.PutUint32(m.must(gpa, 4), v) }

// PutU64 writes a little-endian uint64.
func (m *Memory) PutU64(gpa uint64, v uint64) { binary.LittleEndian.PutUint64(m.must(gpa, 8), v) }
