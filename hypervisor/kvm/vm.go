package kvm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// PageSize is the x86 base page size: the granule of memory slots and of
// dirty logging.
const PageSize = 4096

// MemoryRegion is one guest memory slot: MemorySize bytes of host memory at
// UserspaceAddr appear at GuestPhysAddr. Slot packs an address space id in
// bits 31:16 (0 unless SMM is used) and the slot number. Flags holds
// MemLogDirtyPages and MemReadonly. A MemorySize of 0 deletes the slot.
// It mirrors struct kvm_userspace_memory_region.
type MemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// VM is one virtual machine. Its methods are safe for concurrent use;
// Close must not run concurrently with them.
type VM struct {
	fd        int
	mmapSize  int // of each vCPU's kvm_run area
	closeOnce sync.Once

	xsaveOnce sync.Once
	xsaveSize int // KVM_CAP_XSAVE2 on this VM, queried by the first CreateVCPU

	mu    sync.Mutex
	slots map[uint32]uint64 // slot -> size, to bound DirtyLog bitmaps. Guarded by mu.
}

// Fd returns the VM file descriptor, or -1 after Close.
func (vm *VM) Fd() int { return vm.fd }

// Close closes the VM fd. The VM lives on in the kernel until its vCPUs are
// closed too. Closing twice is a no-op.
func (vm *VM) Close() error {
	var err error
	vm.closeOnce.Do(func() {
		err = wrap("close VM", unix.Close(vm.fd))
		vm.fd = -1
	})
	return err
}

// CheckExtension is System.CheckExtension asked of this VM
// (KVM_CHECK_EXTENSION on the VM fd, with CapCheckExtensionVM): the answer
// accounts for the VM's type and configuration.
func (vm *VM) CheckExtension(c Cap) (int, error) {
	v, err := ioctl(vm.fd, kvmCheckExtension, uintptr(c))
	return v, wrapDetail("KVM_CHECK_EXTENSION", c.String(), err)
}

// SetUserMemoryRegion creates, moves, resizes or deletes a memory slot
// (KVM_SET_USER_MEMORY_REGION). GuestPhysAddr, MemorySize and UserspaceAddr
// must be page aligned.
func (vm *VM) SetUserMemoryRegion(r MemoryRegion) error {
	if _, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, &r); err != nil {
		return &Error{Op: "KVM_SET_USER_MEMORY_REGION", Err: err,
			Detail: fmt.Sprintf("slot %d, guest %#x, size %#x, host %#x, flags %#x",
				r.Slot, r.GuestPhysAddr, r.MemorySize, r.UserspaceAddr, r.Flags)}
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if r.MemorySize == 0 {
		delete(vm.slots, r.Slot)
	} else {
		vm.slots[r.Slot] = r.MemorySize
	}
	return nil
}

// DirtyBitmapWords returns how many 64-bit words DirtyLog needs for a slot
// of memorySize bytes: one bit per page, rounded up to whole words.
func DirtyBitmapWords(memorySize uint64) int {
	pages := (memorySize + PageSize - 1) / PageSize
	return int((pages + 63) / 64)
}

// DirtyLog copies into bitmap, and clears, the set of pages of slot written
// since the previous call (KVM_GET_DIRTY_LOG): bit i of bitmap[i/64] is page
// i of the slot. The slot must have MemLogDirtyPages and bitmap at least
// DirtyBitmapWords(size) words.
func (vm *VM) DirtyLog(slot uint32, bitmap []uint64) error {
	detail := fmt.Sprintf("slot %d", slot)
	vm.mu.Lock()
	size, ok := vm.slots[slot]
	vm.mu.Unlock()
	if !ok {
		return &Error{Op: "KVM_GET_DIRTY_LOG", Detail: detail,
			Err: fmt.Errorf("no such slot set with SetUserMemoryRegion: %w", unix.ENOENT)}
	}
	if need := DirtyBitmapWords(size); len(bitmap) < need {
		return &Error{Op: "KVM_GET_DIRTY_LOG", Detail: detail,
			Err: fmt.Errorf("bitmap has %d words, the slot's %#x bytes need %d: %w", len(bitmap), size, need, unix.EINVAL)}
	}
	return wrapDetail("KVM_GET_DIRTY_LOG", detail, getDirtyLog(vm.fd, slot, bitmap))
}

// SetTSSAddr places the three pages KVM needs for real-mode emulation on
// Intel hosts at guest address addr, which must not overlap guest memory
// (KVM_SET_TSS_ADDR).
func (vm *VM) SetTSSAddr(addr uint32) error {
	_, err := ioctl(vm.fd, kvmSetTSSAddr, uintptr(addr))
	return wrapDetail("KVM_SET_TSS_ADDR", fmt.Sprintf("%#x", addr), err)
}

// SetIdentityMapAddr places the identity-map page table page KVM needs on
// Intel hosts at guest address addr (KVM_SET_IDENTITY_MAP_ADDR). Call it
// before creating vCPUs.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	return setState(vm.fd, kvmSetIdentityMapAddr, "KVM_SET_IDENTITY_MAP_ADDR", fmt.Sprintf("%#x", addr), &addr)
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local
// APICs, with the default GSI routing (KVM_CREATE_IRQCHIP). Create it after
// the memory slots and before the vCPUs.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctl(vm.fd, kvmCreateIRQChip, 0)
	return wrap("KVM_CREATE_IRQCHIP", err)
}

// CreatePIT2 creates the in-kernel i8254 PIT (KVM_CREATE_PIT2); flags may
// hold PITSpeakerDummy. Needs the irqchip.
func (vm *VM) CreatePIT2(flags uint32) error {
	cfg := pitConfig{Flags: flags}
	return setState(vm.fd, kvmCreatePIT2, "KVM_CREATE_PIT2", "", &cfg)
}

// IRQLine sets the level of a GSI on the in-kernel irqchip (KVM_IRQ_LINE).
// An edge-triggered interrupt is a raise followed by a lower.
func (vm *VM) IRQLine(irq uint32, level bool) error {
	l := irqLevel{IRQ: irq, Level: uint32(boolByte(level))}
	return setState(vm.fd, kvmIRQLine, "KVM_IRQ_LINE", fmt.Sprintf("GSI %d", irq), &l)
}

// IRQFD makes a write to eventfd fd raise GSI gsi (KVM_IRQFD), without a
// round trip through user space.
func (vm *VM) IRQFD(fd int, gsi uint32) error {
	return vm.irqfd(irqfd{Fd: uint32(fd), GSI: gsi})
}

// IRQFDResample is IRQFD for a level-triggered GSI: KVM raises the GSI on
// a write to fd, lowers it when the guest acknowledges the interrupt and
// then signals resampleFd, so the device can raise it again if its
// condition still holds.
func (vm *VM) IRQFDResample(fd, resampleFd int, gsi uint32) error {
	return vm.irqfd(irqfd{Fd: uint32(fd), GSI: gsi, Flags: irqfdFlagResample, ResampleFd: uint32(resampleFd)})
}

// DeassignIRQFD removes an IRQFD or IRQFDResample registration.
func (vm *VM) DeassignIRQFD(fd int, gsi uint32) error {
	return vm.irqfd(irqfd{Fd: uint32(fd), GSI: gsi, Flags: irqfdFlagDeassign})
}

func (vm *VM) irqfd(f irqfd) error {
	return setState(vm.fd, kvmIRQFD, "KVM_IRQFD", fmt.Sprintf("fd %d, GSI %d", int32(f.Fd), f.GSI), &f)
}

// IOEventFD registers (or, with IOEventDeassign, removes) an ioeventfd
// (KVM_IOEVENTFD).
func (vm *VM) IOEventFD(e IOEvent) error {
	k := ioeventfd{Datamatch: e.Datamatch, Addr: e.Addr, Len: e.Len, Fd: int32(e.Fd), Flags: uint32(e.Flags)}
	space := "MMIO"
	if e.Flags&IOEventPIO != 0 {
		space = "port"
	}
	return setState(vm.fd, kvmIOEventFD, "KVM_IOEVENTFD",
		fmt.Sprintf("%s %#x, length %d, fd %d", space, e.Addr, e.Len, e.Fd), &k)
}

// SetGSIRouting replaces the whole GSI routing table (KVM_SET_GSI_ROUTING).
// Include the irqchip routes of GSIs that must keep working: the table set
// here replaces KVM's default one.
func (vm *VM) SetGSIRouting(entries []RoutingEntry) error {
	arg := newFlexArg[irqRoutingHeader, routingEntry](len(entries))
	arg.header().Nr = uint32(len(entries))
	out := arg.entries()
	for i, e := range entries {
		k, err := e.toKernel()
		if err != nil {
			return &Error{Op: "KVM_SET_GSI_ROUTING", Detail: fmt.Sprintf("entry %d", i), Err: err}
		}
		out[i] = k
	}
	_, err := arg.ioctl(vm.fd, kvmSetGSIRouting)
	return wrapDetail("KVM_SET_GSI_ROUTING", fmt.Sprintf("%d entries", len(entries)), err)
}

// SignalMSI injects one MSI message (KVM_SIGNAL_MSI). It returns a positive
// number when the interrupt was delivered and 0 when the guest blocked it.
func (vm *VM) SignalMSI(addressLo, addressHi, data uint32) (int, error) {
	m := msi{AddressLo: addressLo, AddressHi: addressHi, Data: data}
	n, err := ioctlPtr(vm.fd, kvmSignalMSI, &m)
	return n, wrapDetail("KVM_SIGNAL_MSI", fmt.Sprintf("address %#x, data %#x", uint64(addressHi)<<32|uint64(addressLo), data), err)
}

// Clock returns the VM's kvmclock (KVM_GET_CLOCK).
func (vm *VM) Clock() (ClockData, error) {
	return getState[ClockData](vm.fd, kvmGetClock, "KVM_GET_CLOCK", "")
}

// SetClock sets the VM's kvmclock (KVM_SET_CLOCK). Only Clock (and, with
// ClockRealtime in Flags, Realtime) is used.
func (vm *VM) SetClock(c ClockData) error {
	return setState(vm.fd, kvmSetClock, "KVM_SET_CLOCK", "", &c)
}

// IRQChip returns the state of one in-kernel interrupt controller chip
// (KVM_GET_IRQCHIP): IRQChipPICMaster, IRQChipPICSlave or IRQChipIOAPIC.
func (vm *VM) IRQChip(chip uint32) (IRQChip, error) {
	c := IRQChip{ChipID: chip}
	_, err := ioctlPtr(vm.fd, kvmGetIRQChip, &c)
	return c, wrapDetail("KVM_GET_IRQCHIP", fmt.Sprintf("chip %d", chip), err)
}

// SetIRQChip sets the state of the chip c.ChipID (KVM_SET_IRQCHIP).
func (vm *VM) SetIRQChip(c IRQChip) error {
	return setState(vm.fd, kvmSetIRQChip, "KVM_SET_IRQCHIP", fmt.Sprintf("chip %d", c.ChipID), &c)
}

// PIT2 returns the in-kernel PIT state (KVM_GET_PIT2).
func (vm *VM) PIT2() (PITState2, error) {
	return getState[PITState2](vm.fd, kvmGetPIT2, "KVM_GET_PIT2", "")
}

// SetPIT2 sets the in-kernel PIT state (KVM_SET_PIT2).
func (vm *VM) SetPIT2(s PITState2) error {
	return setState(vm.fd, kvmSetPIT2, "KVM_SET_PIT2", "", &s)
}

// EnableCap enables a VM capability with up to four arguments
// (KVM_ENABLE_CAP on the VM fd), such as CapSplitIRQChip or
// CapX2APICAPI.
func (vm *VM) EnableCap(c Cap, args ...uint64) error {
	return wrapDetail("KVM_ENABLE_CAP", c.String(), enableCapability(vm.fd, c, args))
}

// CreateVCPU creates vCPU id (its initial APIC ID) and maps its kvm_run
// area (KVM_CREATE_VCPU).
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	detail := fmt.Sprintf("vCPU %d", id)
	if id < 0 {
		return nil, &Error{Op: "KVM_CREATE_VCPU", Detail: detail, Err: unix.EINVAL}
	}
	xsaveSize := vm.xsave2Size()
	fd, err := ioctl(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, wrapDetail("KVM_CREATE_VCPU", detail, err)
	}
	run, err := mapRun(fd, vm.mmapSize)
	if err != nil {
		unix.Close(fd)
		return nil, wrapDetail("mmap kvm_run", detail, err)
	}
	return &VCPU{id: id, fd: fd, xsaveSize: xsaveSize, run: run, hdr: runHeaderOf(run)}, nil
}

// xsave2Size returns the KVM_GET_XSAVE2 buffer size for this VM's vCPUs, or
// 0 when KVM lacks CapXSave2 (then KVM_GET_XSAVE is used).
func (vm *VM) xsave2Size() int {
	vm.xsaveOnce.Do(func() {
		if n, err := vm.CheckExtension(CapXSave2); err == nil {
			vm.xsaveSize = n
		}
	})
	return vm.xsaveSize
}
