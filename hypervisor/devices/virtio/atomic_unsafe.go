package virtio

import (
	"sync/atomic"
	"unsafe"
)

// The ring indices in guest memory are 16-bit and shared with the guest's
// CPUs, but sync/atomic has no 16-bit operations. These helpers operate
// on the naturally aligned 32-bit word that contains the 16-bit field:
// that word never crosses a page, so it is as mapped as the field itself,
// and the other half is preserved (load) or left untouched by a
// compare-and-swap (store). On x86-64 a LOCK CMPXCHG is also a full
// memory barrier, which the ring protocol needs between publishing the
// used index and reading the driver's event index.

// word16 returns the aligned word holding the little-endian uint16 at
// b[0:2] and the field's bit offset in it. Precondition: len(b) >= 2 and
// &b[0] is 2-byte aligned.
func word16(b []byte) (*uint32, uint) {
	p := unsafe.Pointer(unsafe.SliceData(b))
	mis := uintptr(p) & 3
	return (*uint32)(unsafe.Add(p, -int(mis))), uint(mis) * 8
}

// LoadIndex atomically loads the ring index (or any 2-byte aligned
// uint16) at b[0:2] of guest memory. It is exported for test drivers.
func LoadIndex(b []byte) uint16 { return load16(b) }

// StoreIndex atomically stores v at b[0:2] of guest memory, as a full
// barrier. It is exported for test drivers.
func StoreIndex(b []byte, v uint16) { store16(b, v) }

// load16 atomically loads the uint16 at b[0:2].
func load16(b []byte) uint16 {
	w, shift := word16(b)
	return uint16(atomic.LoadUint32(w) >> shift)
}

// store16 atomically stores v at b[0:2], as a full barrier.
func store16(b []byte, v uint16) {
	w, shift := word16(b)
	mask := uint32(0xffff) << shift
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^mask|uint32(v)<<shift) {
			return
		}
	}
}

// aligned2 reports whether &b[0] is 2-byte aligned.
func aligned2(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))&1 == 0
}
