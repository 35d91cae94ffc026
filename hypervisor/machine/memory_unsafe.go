package machine

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hostAddr is the host virtual address of a mapping, as KVM's memslot
// ioctl wants it. The mapping is not Go heap memory, so the address is
// stable.
func hostAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// mapAligned maps size bytes of anonymous, lazily reserved memory at an
// address aligned to align (a power of two): it maps size+align and
// unmaps the slack on both sides. Free it with unmap.
func mapAligned(size, align uint64) ([]byte, error) {
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size+align), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	base := uintptr(p)
	head := uintptr((align - uint64(base)%align) % align)
	if head > 0 {
		if err := unix.MunmapPtr(p, head); err != nil {
			unix.MunmapPtr(p, uintptr(size+align))
			return nil, err
		}
	}
	start := unsafe.Add(p, head)
	if tail := uintptr(align) - head; tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(start, uintptr(size)), tail); err != nil {
			unix.MunmapPtr(start, uintptr(size)+tail)
			return nil, err
		}
	}
	return unsafe.Slice((*byte)(start), size), nil
}

// unmap frees a mapping made by mapAligned.
func unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}

// mapFileOver replaces the mapping b with len(b) bytes of f from offset
// off, mapped private (copy-on-write) at the same address: MAP_FIXED
// over a reservation of ours, so nothing else can be mapped there in
// between.
func mapFileOver(b []byte, f *os.File, off int64) error {
	addr := unsafe.Pointer(unsafe.SliceData(b))
	p, err := unix.MmapPtr(int(f.Fd()), off, addr, uintptr(len(b)), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		return err
	}
	if p != addr {
		// MAP_FIXED maps at addr or fails; anything else is a kernel bug
		// that would leave guest memory elsewhere than KVM is told.
		unix.MunmapPtr(p, uintptr(len(b)))
		return fmt.Errorf("mmap placed the file at %p instead of %p", p, addr)
	}
	return nil
}
