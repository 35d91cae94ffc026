// Package kvm is a typed Go binding for the Linux KVM API on x86-64.
//
// It mirrors the kernel's UAPI structures (linux/kvm.h, asm/kvm.h), derives
// every ioctl number from the size of the mirrored structure, and wraps the
// three kinds of file descriptor KVM hands out in typed handles:
//
//	System  the /dev/kvm descriptor: capabilities, supported CPUID and MSRs
//	VM      one virtual machine: memory slots, interrupt controllers, routing
//	VCPU    one virtual CPU: KVM_RUN, the shared kvm_run page, register state
//
// The package holds no VM policy: it neither lays out guest memory nor
// decides which CPUID bits a guest sees. That is hypervisor/machine's job.
//
// Every failing ioctl is reported as an *Error naming the ioctl and wrapping
// the errno, so callers can test errors.Is(err, unix.EINTR) or unix.EAGAIN.
// Only VCPU.Run reports EINTR: the other ioctls retry it, since Go's
// runtime signals its threads at any time.
//
// Raw system calls and unsafe.Pointer live only in the *_unsafe.go files.
// The structures that mirror kernel structures say so in their doc comment;
// their layout is checked against the installed UAPI headers by the tests.
package kvm
