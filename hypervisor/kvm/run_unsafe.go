package kvm

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets in the kvm_run page of the fields exit accessors slice out of it.
const (
	runExitOffset     = unsafe.Offsetof(runHeader{}.Exit)
	runMMIODataOffset = runExitOffset + unsafe.Offsetof(runMMIO{}.Data)
	runMMIODataSize   = unsafe.Sizeof(runMMIO{}.Data)
)

// mapRun maps the kvm_run area of a vCPU fd (size bytes, from
// KVM_GET_VCPU_MMAP_SIZE) shared and read-write.
func mapRun(fd, size int) ([]byte, error) {
	if size < int(unsafe.Sizeof(runHeader{})) {
		return nil, unix.EINVAL
	}
	return unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// runHeaderOf returns the kvm_run header at the start of mem.
// Precondition: mem is 8-byte aligned and at least sizeof(runHeader) long.
func runHeaderOf(mem []byte) *runHeader {
	return (*runHeader)(unsafe.Pointer(unsafe.SliceData(mem)))
}

// exitAs returns the exit union of h viewed as T, one of the run* mirrors of
// its members. Precondition: sizeof(T) <= len(h.Exit) and T's alignment is
// at most 8 (checked by the tests for every mirror).
func exitAs[T any](h *runHeader) *T {
	return (*T)(unsafe.Pointer(&h.Exit))
}

// setRunByte atomically stores v into byte i (0 or 1) of the first word of
// the kvm_run page, leaving its neighbours alone: request_interrupt_window
// and immediate_exit share that word, and immediate_exit is written from
// other goroutines. The kernel only reads these bytes.
func setRunByte(h *runHeader, i uint, v uint8) {
	word := (*uint32)(unsafe.Pointer(h))
	shift := 8 * i
	for {
		old := atomic.LoadUint32(word)
		next := old&^(0xff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(word, old, next) {
			return
		}
	}
}

// dirtyLog mirrors struct kvm_dirty_log (KVM_GET_DIRTY_LOG). Bitmap points
// to one bit per page of the slot, rounded up to 64 bits.
type dirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap unsafe.Pointer
}

// getDirtyLog fetches and clears the dirty bitmap of slot into bitmap.
// Precondition: bitmap is long enough for the slot (checked by the caller).
func getDirtyLog(fd int, slot uint32, bitmap []uint64) error {
	d := dirtyLog{Slot: slot, Bitmap: unsafe.Pointer(unsafe.SliceData(bitmap))}
	_, err := ioctlPtr(fd, kvmGetDirtyLog, &d)
	runtime.KeepAlive(bitmap)
	return err
}
