// Package jail confines a VMM process, as Firecracker's jailer does: the
// process that starts a VMM (running as root) opens everything the VM
// needs and hands it over as descriptors (guest/vmm's Handles), prepares
// a jail (Prepare: a user and group id of the VM's own, the VM
// directory's permissions, a cgroup leaf with the VM's limits) and starts
// the VMM in new mount, PID, IPC and UTS namespaces, from a thread whose
// capability bounding set holds only what the jail's set-up needs
// (Spec.Start). The VMM's first act (Enter) finishes the jail from
// inside, as root still: it joins the cgroup, pivots into a root holding
// only the VM's directory and a private /proc, sets its rlimits, and then,
// on every thread at once, drops every capability, becomes the VM's user
// and sets no_new_privs. It then installs its seccomp filter (Seccomp)
// before it touches the VM. (A paddock built with cgo, which cannot
// change all its threads so, executes itself again in the jail instead,
// as a second stage that starts as one thread that has all of it.)
//
// docs/architecture.md ("The jail") describes the layers and why.
package jail

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// Environment variables between the starting command and a jailed VMM
// (and its second stage, if it needs one).
const (
	// SpecEnv carries the Spec, as JSON, to the VMM (Enter).
	SpecEnv = "PADDOCK_VMM_JAIL"
	// JailedEnv tells a second stage (the VMM proper, executed in the
	// jail by Enter in a binary built with cgo) that it is jailed, and
	// its process id as the host sees it.
	JailedEnv = "PADDOCK_VMM_JAILED"
	// NoJailEnv, set to 1, starts VMMs unjailed (for debugging: strace,
	// gdb, core dumps); docs/architecture.md.
	NoJailEnv = "PADDOCK_NO_JAIL"
	// ForbiddenSyscallEnv, set in a jailed VMM's environment by a test,
	// makes the VMM make a system call its filter forbids: at start
	// ("1") or on SIGUSR2 ("signal"), see ForbiddenSyscall. The test of
	// the seccomp layer; only tests set it.
	ForbiddenSyscallEnv = "PADDOCK_TEST_FORBIDDEN_SYSCALL"
)

// Limits of a jailed VMM.
const (
	// MemoryOverhead is what a VMM may use beyond its guest's RAM before
	// its cgroup's memory limit stops it: the VMM's own heap and stacks,
	// KVM's per-VM kernel memory, device buffers and the page cache of
	// its disk I/O, which the kernel reclaims at the limit.
	MemoryOverhead = 128 << 20
	// PidsMax bounds the threads of a VMM (its cgroup's pids.max): a
	// thread per vCPU, the Go runtime's, and one per disk request that
	// blocks in the kernel (at most blk.InFlight per queue).
	PidsMax = 1024
	// NoFile is a jailed VMM's RLIMIT_NOFILE.
	NoFile = 4096
)

// Spec is what the VMM needs to finish its jail (Enter).
type Spec struct {
	// ID is the user and group id the VMM runs as.
	ID int `json:"id"`
	// Root is an existing empty directory on which Enter mounts
	// the jail's root (a small tmpfs), in its own mount namespace.
	Root string `json:"root"`
	// Binds are mounted into the jail, at the same paths as on the host.
	Binds []Bind `json:"binds"`
	// Exe is this program, bound in the jail at ExePath (a second
	// stage runs it).
	Exe string `json:"exe"`
	// Cgroups are the files Start's thread writes 0 to, to join the VM's
	// cgroup leaf before it starts the VMM there: on cgroup v1 the tasks
	// file of each hierarchy (Cgroup.ThreadFiles); none on v2, where
	// the VMM is started in its leaf (Apply).
	Cgroups []string `json:"cgroups"`
	// cgroup2 is the VM's cgroup v2 leaf, which Apply starts the VMM in;
	// "" on v1 or without a cgroup. The starting process's only.
	cgroup2 string
	// KeepFDs is how many descriptors, from 0, the VMM was handed; every
	// other one is closed.
	KeepFDs int `json:"keep_fds"`
	// Hostname is the jail's host name (its own UTS namespace).
	Hostname string `json:"hostname"`
}

// Bind is one bind mount of the jail.
type Bind struct {
	Path     string `json:"path"`
	File     bool   `json:"file,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ExePath is where the jail holds the executable of a second stage.
const ExePath = "/paddock"

// Encode renders s for SpecEnv.
func (s *Spec) Encode() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ParseSpec reads a Spec from SpecEnv's value.
func ParseSpec(v string) (*Spec, error) {
	var s Spec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, fmt.Errorf("jail: %s: %w", SpecEnv, err)
	}
	if s.ID <= 0 || s.Root == "" || s.Exe == "" {
		return nil, fmt.Errorf("jail: %s: incomplete specification %q", SpecEnv, v)
	}
	return &s, nil
}

// Jailed reports whether this process is a jailed VMM's second stage, and
// its process id as the host sees it.
func Jailed() (pid int, ok bool) {
	v := os.Getenv(JailedEnv)
	if v == "" {
		return 0, false
	}
	pid, err := strconv.Atoi(v)
	return pid, err == nil && pid > 0
}
