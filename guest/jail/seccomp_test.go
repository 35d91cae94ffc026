package jail

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// seccompChildEnv makes the test binary, run again by
// TestKilledBySeccomp, install the VMM's filter and break it.
const seccompChildEnv = "PADDOCK_TEST_SECCOMP_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(seccompChildEnv) == "1" {
		if err := Seccomp(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(3)
		}
		ForbiddenSyscall()
		os.Exit(0) // not reached: the filter ends the process
	}
	os.Exit(m.Run())
}

// TestKilledBySeccomp: a process under the VMM's filter that makes a
// forbidden system call (the test hook's ptrace) dies, and
// KilledBySeccomp finds the call's number and name in what the Go
// runtime wrote on its way out.
func TestKilledBySeccomp(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), seccompChildEnv+"=1", ForbiddenSyscallEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("the process lived on after a forbidden system call:\n%s", stderr.String())
	}
	why, ok := KilledBySeccomp([]byte(stderr.String()))
	if want := "the VMM was killed by seccomp (system call 101, ptrace)"; !ok || why != want {
		t.Errorf("KilledBySeccomp = %q, %v; want %q\nlog:\n%s", why, ok, want, stderr.String())
	}
}

// TestKilledBySeccompOther: other ends are not seccomp's.
func TestKilledBySeccompOther(t *testing.T) {
	for _, log := range []string{
		"",
		"2026-12-06T09:00:00Z vmm[1]: the guest powered off\n",
		// A SIGSYS sent by a process (si_code 0), not by the filter.
		"SIGSYS: bad system call\nPC=0x46b5a1 m=0 sigcode=0\n\nrax    0x65\n",
		"panic: runtime error: index out of range\n\ngoroutine 1 [running]:\n",
	} {
		if why, ok := KilledBySeccomp([]byte(log)); ok {
			t.Errorf("KilledBySeccomp(%q) = %q", log, why)
		}
	}
	// No registers (GOTRACEBACK=none): seccomp's, without a number.
	why, ok := KilledBySeccomp([]byte("SIGSYS: bad system call\nPC=0x46b5a1 m=0 sigcode=1\n"))
	if !ok || why != "the VMM was killed by seccomp (a system call its filter forbids)" {
		t.Errorf("without registers: %q, %v", why, ok)
	}
}
