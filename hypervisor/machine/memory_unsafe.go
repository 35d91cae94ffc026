package machine

import "unsafe"

// hostAddr is the host virtual address of a mapping, as KVM's memslot
// ioctl wants it. The mapping is not Go heap memory, so the address is
// stable.
func hostAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
