package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrStopped is returned by EventFD.Wait after Interrupt.
var ErrStopped = errors.New("virtio: wait interrupted")

// EventFD is a Linux eventfd: the doorbell between KVM and a device's
// goroutines. KVM signals a queue's EventFD when the guest notifies the
// queue (ioeventfd); a device signals an interrupt's EventFD to inject it
// (irqfd). Waiting goes through Go's poller, so a waiting goroutine holds
// no OS thread. It is safe for concurrent use.
type EventFD struct {
	fd int      // for writes, which never block
	f  *os.File // owns fd; reads go through the poller
}

// NewEventFD creates an eventfd (close-on-exec, non-blocking).
func NewEventFD() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("virtio: create eventfd: %w", err)
	}
	return &EventFD{fd: fd, f: os.NewFile(uintptr(fd), "eventfd")}, nil
}

// Fd returns the descriptor, for KVM_IOEVENTFD and KVM_IRQFD. It stays
// owned by the EventFD.
func (e *EventFD) Fd() int { return e.fd }

// Signal adds one to the counter, waking a waiter. A counter already at
// its maximum (which takes 2^64-2 unconsumed signals) is left as it is.
func (e *EventFD) Signal() error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	for {
		_, err := unix.Write(e.fd, b[:])
		switch {
		case err == nil, errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		}
		return fmt.Errorf("virtio: signal eventfd: %w", err)
	}
}

// Wait blocks until the counter is non-zero, then returns and clears it.
// It returns ErrStopped once Interrupt has been called, until Rearm.
func (e *EventFD) Wait() (uint64, error) {
	var b [8]byte
	if _, err := e.f.Read(b[:]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, ErrStopped
		}
		return 0, fmt.Errorf("virtio: wait on eventfd: %w", err)
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

// Consume clears the counter without blocking and returns what it held.
func (e *EventFD) Consume() uint64 {
	var b [8]byte
	n, err := unix.Read(e.fd, b[:])
	if err != nil || n != 8 {
		return 0
	}
	return binary.NativeEndian.Uint64(b[:])
}

// Interrupt makes current and future Waits return ErrStopped.
func (e *EventFD) Interrupt() {
	// A deadline in the past wakes the poller at once; SetReadDeadline
	// fails only on a closed file, where Wait fails anyway.
	_ = e.f.SetReadDeadline(time.Unix(1, 0))
}

// Rearm undoes Interrupt.
func (e *EventFD) Rearm() {
	_ = e.f.SetReadDeadline(time.Time{})
}

// Close closes the eventfd. Precondition: nobody waits on or signals it.
func (e *EventFD) Close() error {
	if err := e.f.Close(); err != nil {
		return fmt.Errorf("virtio: close eventfd: %w", err)
	}
	return nil
}
