package jail

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// allowed are the system calls a jailed VMM may make: those measured
// with strace -f through start, pause, resume, snapshot, restore, guest
// reboots and stop of tiny guests on /dev/kvm (docs/architecture.md,
// "The jail"), and those of paths the measurement does not reach (disk
// and network I/O, thread exits). Everything else ends the process
// (Seccomp).
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
// (TSYNC): the calls of allowed pass; any other is refused and ends the
// process. no_new_privs is set already (Enter).
//
// The filter refuses a forbidden call with SECCOMP_RET_TRAP, not
// SECCOMP_RET_KILL_PROCESS: the kernel does not make the call and sends
// the thread a SIGSYS, which the Go runtime treats as fatal. It writes
// "SIGSYS: bad system call", the goroutines and the registers (rax: the
// call's number) to its standard error, vmm.log, and exits. A VMM killed
// outright leaves no trace of why: it is detached, nobody waits for it,
// and its end is found only later (KilledBySeccomp reads the log then).
// A compromised VMM that catches the signal gains nothing: the call was
// not made; and a thread with SIGSYS blocked is killed by the kernel.
func Seccomp() error {
	f := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionTrap,
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

// ForbiddenSyscall is the hook of the tests that check that the filter
// ends the VMM and that its end says why: with ForbiddenSyscallEnv set to
// 1 it makes a system call the filter forbids (ptrace) at once, while the
// VMM starts; set to "signal", once the VMM gets SIGUSR2 (the guest
// runs by then). Only tests set it.
func ForbiddenSyscall() {
	forbidden := func() { unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0) }
	switch os.Getenv(ForbiddenSyscallEnv) {
	case "1":
		forbidden()
	case "signal":
		c := make(chan os.Signal, 1)
		signal.Notify(c, unix.SIGUSR2)
		go func() {
			<-c
			forbidden()
		}()
	}
}

// The Go runtime's report of a fatal signal (runtime.fatalsignal,
// dumpregs): the signal's name, then its PC, thread and si_code (1,
// SYS_SECCOMP, for a signal from a seccomp filter), and after the
// goroutines the registers.
const (
	sigsysLine   = "SIGSYS: bad system call"
	sigcodeField = " sigcode=1"
	raxPrefix    = "rax "
)

// KilledBySeccomp reads the log of a VMM that ended (vmm.log, its
// standard error) for the Go runtime's report of a SIGSYS from its
// seccomp filter (Seccomp), and says why it ended: "the VMM was killed by
// seccomp (system call 101, ptrace)". ok is false if the log has no such
// report.
func KilledBySeccomp(vmmLog []byte) (why string, ok bool) {
	lines := strings.Split(string(vmmLog), "\n")
	for i := len(lines) - 2; i >= 0; i-- {
		if lines[i] != sigsysLine || !strings.HasPrefix(lines[i+1], "PC=") || !strings.HasSuffix(lines[i+1], sigcodeField) {
			continue
		}
		for _, l := range lines[i+2:] {
			v, found := strings.CutPrefix(l, raxPrefix)
			if !found {
				continue
			}
			nr, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(v), "0x"), 16, 32)
			if err != nil {
				break
			}
			if name, known := arch.X86_64.SyscallNumbers[int(nr)]; known && runtime.GOARCH == "amd64" {
				return fmt.Sprintf("the VMM was killed by seccomp (system call %d, %s)", nr, name), true
			}
			return fmt.Sprintf("the VMM was killed by seccomp (system call %d)", nr), true
		}
		// No registers (GOTRACEBACK=none): no number.
		return "the VMM was killed by seccomp (a system call its filter forbids)", true
	}
	return "", false
}
