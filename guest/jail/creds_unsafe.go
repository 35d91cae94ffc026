package jail

import (
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
