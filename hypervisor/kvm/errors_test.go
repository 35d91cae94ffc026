package kvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Op: "KVM_SET_USER_MEMORY_REGION", Err: unix.EINVAL}, "kvm: KVM_SET_USER_MEMORY_REGION: invalid argument"},
		{&Error{Op: "KVM_RUN", Detail: "vCPU 2", Err: unix.EINTR}, "kvm: KVM_RUN (vCPU 2): interrupted system call"},
		{&Error{Op: "KVM_GET_MSRS", Detail: "MSR 0x10", Err: ErrMSRRejected}, "kvm: KVM_GET_MSRS (MSR 0x10): MSR rejected by KVM"},
		{&Error{Op: "close"}, "kvm: close"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	wrapped := fmt.Errorf("machine: run: %w", &Error{Op: "KVM_RUN", Err: unix.EAGAIN})
	if !errors.Is(wrapped, unix.EAGAIN) {
		t.Error("errors.Is does not see the errno through *Error")
	}
	if wrap("x", nil) != nil || wrapDetail("x", "y", nil) != nil {
		t.Error("wrapping a nil error must give nil")
	}
}

// wantError checks that err is an *Error for op wrapping errno.
func wantError(t *testing.T, err error, op string, errno unix.Errno) *Error {
	t.Helper()
	var kerr *Error
	if !errors.As(err, &kerr) {
		t.Fatalf("error %v (%T), want a *kvm.Error for %s", err, err, op)
	}
	if kerr.Op != op || !errors.Is(err, errno) {
		t.Fatalf("error %q, want %s failing with %v", err, op, errno)
	}
	return kerr
}

func TestOpenErrors(t *testing.T) {
	_, err := Open("/nonexistent/kvm")
	wantError(t, err, "open /nonexistent/kvm", unix.ENOENT)

	_, err = Open("/dev/null")
	kerr := wantError(t, err, "KVM_GET_API_VERSION", unix.ENOTTY)
	if kerr.Detail != "/dev/null" {
		t.Errorf("Detail %q, want the path", kerr.Detail)
	}
}

func TestMemorySlotErrors(t *testing.T) {
	g := newGuest(t, guestOptions{})
	mem := UserspaceAddr(g.mem)
	tests := []struct {
		name   string
		region MemoryRegion
		errno  unix.Errno
	}{
		{"unaligned guest address", MemoryRegion{Slot: 1, GuestPhysAddr: 0x100123, MemorySize: PageSize, UserspaceAddr: mem}, unix.EINVAL},
		{"unaligned size", MemoryRegion{Slot: 1, GuestPhysAddr: 0x100000, MemorySize: 100, UserspaceAddr: mem}, unix.EINVAL},
		{"unaligned host address", MemoryRegion{Slot: 1, GuestPhysAddr: 0x100000, MemorySize: PageSize, UserspaceAddr: mem + 8}, unix.EINVAL},
		{"overlaps slot 0", MemoryRegion{Slot: 1, GuestPhysAddr: 0x8000, MemorySize: PageSize, UserspaceAddr: mem}, unix.EEXIST},
		{"unknown flag", MemoryRegion{Slot: 1, Flags: 1 << 15, GuestPhysAddr: 0x100000, MemorySize: PageSize, UserspaceAddr: mem}, unix.EINVAL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := g.vm.SetUserMemoryRegion(tc.region)
			kerr := wantError(t, err, "KVM_SET_USER_MEMORY_REGION", tc.errno)
			if !strings.HasPrefix(kerr.Detail, "slot 1, guest ") {
				t.Errorf("Detail %q does not name the slot", kerr.Detail)
			}
			if !strings.HasPrefix(err.Error(), "kvm: KVM_SET_USER_MEMORY_REGION (slot 1, ") {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestDirtyLogErrors(t *testing.T) {
	g := newGuest(t, guestOptions{}) // slot 0 without MemLogDirtyPages
	wantError(t, g.vm.DirtyLog(7, make([]uint64, 1)), "KVM_GET_DIRTY_LOG", unix.ENOENT)
	// The bitmap must cover the slot, or the kernel would write past it.
	kerr := wantError(t, g.vm.DirtyLog(0, nil), "KVM_GET_DIRTY_LOG", unix.EINVAL)
	if kerr.Detail != "slot 0" {
		t.Errorf("Detail %q", kerr.Detail)
	}
	// The kernel refuses a slot that does not log.
	wantError(t, g.vm.DirtyLog(0, make([]uint64, DirtyBitmapWords(guestMemSize))), "KVM_GET_DIRTY_LOG", unix.ENOENT)
}

func TestVCPUErrors(t *testing.T) {
	g := newGuest(t, guestOptions{})
	_, err := g.vm.CreateVCPU(-1)
	wantError(t, err, "KVM_CREATE_VCPU", unix.EINVAL)
	_, err = g.vm.CreateVCPU(0)
	kerr := wantError(t, err, "KVM_CREATE_VCPU", unix.EEXIST)
	if kerr.Detail != "vCPU 0" {
		t.Errorf("Detail %q", kerr.Detail)
	}

	// No in-kernel irqchip: no LAPIC, no irqfd.
	_, err = g.vcpu.LAPIC()
	var lerr *Error
	if !errors.As(err, &lerr) || lerr.Op != "KVM_GET_LAPIC" {
		t.Errorf("LAPIC without an irqchip: %v", err)
	}
	err = g.vm.SetGSIRouting([]RoutingEntry{{GSI: 1, Type: RoutingIRQChip}, {GSI: 2, Type: 99}})
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.Op != "KVM_SET_GSI_ROUTING" || rerr.Detail != "entry 1" {
		t.Errorf("routing entry of type 99: %v", err)
	}
	wantError(t, g.vm.IOEventFD(IOEvent{Addr: 0x30, Len: 3, Fd: newEventFD(t), Flags: IOEventPIO}), "KVM_IOEVENTFD", unix.EINVAL)

	// A closed vCPU fails cleanly and stays closed.
	c, err := g.vm.CreateVCPU(1)
	check(t, err)
	check(t, c.Close())
	check(t, c.Close())
	if c.Fd() != -1 {
		t.Errorf("Fd() = %d after Close", c.Fd())
	}
	c.SetImmediateExit(true) // must not touch the unmapped page
	if c.ImmediateExit() {
		t.Error("ImmediateExit() = true after Close")
	}
	wantError(t, c.Run(), "KVM_RUN", unix.EBADF)
	_, err = c.Regs()
	wantError(t, err, "KVM_GET_REGS", unix.EBADF)
}

func TestIRQErrors(t *testing.T) {
	g := newGuest(t, guestOptions{irqchip: true})
	wantError(t, g.vm.IRQFD(-1, 4), "KVM_IRQFD", unix.EBADF)
	wantError(t, g.vm.CreateIRQChip(), "KVM_CREATE_IRQCHIP", unix.EEXIST)
	_, err := g.vm.IRQChip(7)
	wantError(t, err, "KVM_GET_IRQCHIP", unix.EINVAL)
	_, err = g.vm.PIT2() // no PIT created
	wantError(t, err, "KVM_GET_PIT2", unix.ENXIO)
}

func TestClosedHandles(t *testing.T) {
	sys := openSystem(t)
	vm, err := sys.CreateVM()
	check(t, err)
	check(t, vm.Close())
	check(t, vm.Close())
	if vm.Fd() != -1 {
		t.Errorf("VM Fd() = %d after Close", vm.Fd())
	}
	_, err = vm.CreateVCPU(0)
	wantError(t, err, "KVM_CREATE_VCPU", unix.EBADF)

	other, err := Open(DefaultPath)
	check(t, err)
	check(t, other.Close())
	check(t, other.Close())
	_, err = other.CreateVM()
	wantError(t, err, "KVM_CREATE_VM", unix.EBADF)
	_, err = other.VCPUMmapSize()
	wantError(t, err, "KVM_GET_VCPU_MMAP_SIZE", unix.EBADF)
}
