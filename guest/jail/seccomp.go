package jail

import (
	"fmt"
	"os"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// allowed are the system calls a jailed VMM may make: those measured
// with strace -f through start, pause, resume, snapshot, restore, guest
// reboots and stop of tiny guests on /dev/kvm (docs/architecture.md,
// "The jail"), and those of paths the measurement does not reach (disk
// and network I/O, thread exits). Everything else kills the process.
var allowed = []string{
	// memory and threads (the Go runtime)
	"mmap", "munmap", "mprotect", "madvise", "mremap", "mincore",
	"clone", "futex", "sched_yield", "sched_getaffinity", "sched_getattr", "sched_setattr",
	"gettid", "getpid", "tgkill", "tkill", "exit", "exit_group",
	"rseq", "set_robust_list", // glibc threads (a cgo test binary)
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "arch_prctl",
	"nanosleep", "clock_gettime", "clock_nanosleep", "gettimeofday", "restart_syscall",
	"getrandom", "geteuid", "getuid", "getegid", "getgid", "prlimit64", "uname",
	"epoll_create1", "epoll_ctl", "epoll_pwait", "eventfd2", "pipe2",
	// files of the VM's directory, and the handed descriptors
	"openat", "close", "read", "write", "pread64", "pwrite64", "readv", "writev",
	"preadv", "pwritev", "preadv2", "pwritev2", "lseek", "fstat", "newfstatat", "statfs", "fstatfs",
	"fcntl", "flock", "fsync", "fdatasync", "ftruncate", "fallocate", "dup3",
	"getdents64", "mkdirat", "unlinkat", "renameat", "renameat2", "readlinkat",
	"fchmod", "fchmodat", "faccessat",
	// KVM, taps
	"ioctl",
	// the control socket
	"socket", "bind", "listen", "accept4", "getsockname", "getpeername",
	"setsockopt", "getsockopt", "shutdown", "sendmsg", "recvmsg", "sendto", "recvfrom",
}

// Seccomp installs the jailed VMM's system call filter on every thread
// (TSYNC): the calls of allowed pass, any other kills the process
// (SECCOMP_RET_KILL_PROCESS). no_new_privs is set already (Enter).
func Seccomp() error {
	f := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionKillProcess,
			Syscalls: []seccomp.SyscallGroup{
				{Names: allowed, Action: seccomp.ActionAllow},
				// clone3's flags are behind a pointer, out of the filter's
				// sight (it could ask for a user namespace): ENOSYS makes
				// glibc's pthread_create fall back to clone (a Go test
				// binary built with cgo; Go itself uses clone).
				{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
			},
		},
	}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("jail: seccomp filter: %w", err)
	}
	return nil
}

// ForbiddenSyscall makes a system call the filter forbids (ptrace), if
// ForbiddenSyscallEnv is set: the hook of the test that checks that the
// filter kills the VMM. Only tests set it.
func ForbiddenSyscall() {
	if os.Getenv(ForbiddenSyscallEnv) == "1" {
		unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	}
}
