package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctl helpers below retry EINTR: Go's runtime signals its threads at
// any time, and KVM returns EINTR from requests that did nothing yet (for
// example KVM_CREATE_VM, while registering its MMU notifier). Only KVM_RUN
// reports EINTR to its caller, through runIoctl. Every helper converts its
// pointer to uintptr in the Syscall argument list, which keeps the pointee
// alive and in place for the duration of the call.

// ioctl issues request req on fd with an integer argument (or none) and
// returns the kernel's non-negative result, or the errno.
func ioctl(fd int, req, arg uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == unix.EINTR {
			continue
		}
		return result(r, errno)
	}
}

// runIoctl issues KVM_RUN once; EINTR is returned, not retried.
func runIoctl(fd int) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmRun, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ioctlPtr issues request req on fd with a pointer to *p as argument.
// Precondition: T mirrors the kernel structure req encodes; memory that
// pointer fields of T refer to is kept alive by the caller.
func ioctlPtr[T any](fd int, req uintptr, p *T) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(p)))
		if errno == unix.EINTR {
			continue
		}
		return result(r, errno)
	}
}

// ioctlBytes issues request req on fd with buf's first byte as argument.
// Precondition: len(buf) is at least the size the kernel reads or writes.
func ioctlBytes(fd int, req uintptr, buf []byte) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
		if errno == unix.EINTR {
			continue
		}
		return result(r, errno)
	}
}

// result converts a raw system call result.
func result(r uintptr, errno unix.Errno) (int, error) {
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// flexArg is the argument of an ioctl whose structure ends in a flexible
// array member (kvm_cpuid2, kvm_msrs, kvm_msr_list, kvm_irq_routing): a
// header H followed by n entries E, in one 8-byte aligned allocation laid
// out as the C compiler would. H and E hold no Go pointers.
type flexArg[H, E any] struct {
	buf []uint64
	n   int
}

// newFlexArg allocates a zeroed argument with room for n entries.
func newFlexArg[H, E any](n int) *flexArg[H, E] {
	var e E
	size := flexEntriesOffset[H, E]() + uintptr(n)*unsafe.Sizeof(e)
	return &flexArg[H, E]{buf: make([]uint64, (size+7)/8), n: n}
}

// flexEntriesOffset is the offset of the first entry: the header's size
// rounded up to the entries' alignment.
func flexEntriesOffset[H, E any]() uintptr {
	var h H
	var e E
	a := unsafe.Alignof(e)
	return (unsafe.Sizeof(h) + a - 1) &^ (a - 1)
}

// header returns the header, which aliases the buffer.
func (f *flexArg[H, E]) header() *H {
	return (*H)(unsafe.Pointer(&f.buf[0]))
}

// entries returns the n entries, which alias the buffer.
func (f *flexArg[H, E]) entries() []E {
	if f.n == 0 {
		return nil
	}
	p := unsafe.Add(unsafe.Pointer(&f.buf[0]), flexEntriesOffset[H, E]())
	return unsafe.Slice((*E)(p), f.n)
}

// ioctl issues request req on fd with the argument, retrying EINTR.
func (f *flexArg[H, E]) ioctl(fd int, req uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&f.buf[0])))
		if errno == unix.EINTR {
			continue
		}
		return result(r, errno)
	}
}

// UserspaceAddr returns the address of mem's first byte, for
// MemoryRegion.UserspaceAddr. Precondition: mem is memory the Go garbage
// collector does not manage (from unix.Mmap, for instance) and stays mapped
// for as long as a memory slot refers to it. It returns 0 for an empty mem.
func UserspaceAddr(mem []byte) uint64 {
	if len(mem) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&mem[0])))
}
