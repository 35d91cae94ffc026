package jail

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// becomeOnThisThread makes the calling OS thread's real, effective and
// saved user and group ids id, with no supplementary groups. Only this
// thread changes (Go's own Setuid changes every thread): Enter calls it
// right before execve, which ends every other thread.
// Precondition: the goroutine is locked to its thread.
func becomeOnThisThread(id int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return e
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(id), uintptr(id), uintptr(id)); e != 0 {
		return e
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(id), uintptr(id), uintptr(id)); e != 0 {
		return e
	}
	return nil
}

// dropAllThreads drops every privilege of every thread of the process,
// as Enter describes: each step is one system call made on all threads
// at once (the world stopped), so that a thread the Go runtime starts
// later, cloned from one of them, has all the steps before it too.
// Precondition: the binary is built without cgo.
func dropAllThreads(id, last int) error {
	for c := 0; c <= last; c++ {
		// Only those still there (Spec.Start left few): every thread
		// has this thread's bounding set, inherited from the first.
		if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && in == 0 {
			continue
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 {
			return fmt.Errorf("jail: drop capability %d from the bounding set: %w", c, e)
		}
	}
	// Go's own calls: on every thread.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("jail: drop the supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(id, id, id); err != nil {
		return fmt.Errorf("jail: become gid %d: %w", id, err)
	}
	if err := syscall.Setresuid(id, id, id); err != nil {
		return fmt.Errorf("jail: become uid %d: %w", id, err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&none[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&none)
	if e != 0 {
		return fmt.Errorf("jail: clear capabilities: %w", e)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("jail: no_new_privs: %w", e)
	}
	// Becoming another user made the process undumpable: its /proc
	// files root's, its own /proc/self/pagemap (which a snapshot reads)
	// closed to it. An executed VMM would be dumpable again.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: dumpable: %w", err)
	}
	return nil
}
