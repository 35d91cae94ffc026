package kvm

import "errors"

// Error reports a failed KVM operation. Op names the ioctl (for example
// "KVM_SET_USER_MEMORY_REGION") or the system call; Detail, when set, says
// which object the operation was about (a memory slot, an MSR, a path); Err
// is the underlying cause, usually a unix.Errno.
type Error struct {
	Op     string
	Detail string
	Err    error
}

// Error returns a message such as
// "kvm: KVM_SET_USER_MEMORY_REGION (slot 1): invalid argument".
func (e *Error) Error() string {
	msg := "kvm: " + e.Op
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause, so errors.Is(err, unix.EINTR) works.
func (e *Error) Unwrap() error { return e.Err }

// ErrMSRRejected is the cause of the *Error returned when KVM_GET_MSRS or
// KVM_SET_MSRS stops before the end of the list: KVM processes MSRs in order
// and stops at the first one it does not support or refuses.
var ErrMSRRejected = errors.New("MSR rejected by KVM")

// ErrAPIVersion is the cause of the *Error returned by Open when the kernel
// speaks a KVM API version other than APIVersion.
var ErrAPIVersion = errors.New("unsupported KVM API version")

// wrap returns nil when err is nil and an *Error for op otherwise.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Err: err}
}

// wrapDetail is wrap with a Detail naming the object the ioctl was about.
func wrapDetail(op, detail string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Detail: detail, Err: err}
}
