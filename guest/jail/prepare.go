package jail

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/guest/store"
)

// rootDir, in the state directory, is the empty directory each jailed
// VMM mounts its own root on, in its own mount namespace: the host never
// sees anything in it.
const rootDir = "jail-root"

// Cloneflags are the namespaces a jailed VMM starts in.
const Cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS

// Options says what Prepare jails.
type Options struct {
	// Home is the state directory; VM the VM.
	Home string
	VM   *store.VM
	// Limits are the VM's cgroup limits.
	Limits Limits
	// KeepFDs is how many descriptors, from 0, the VMM is handed.
	KeepFDs int
}

// Enabled reports whether VMMs started by this process run jailed: when
// it runs as root and NoJailEnv is not 1.
func Enabled() bool {
	return os.Geteuid() == 0 && os.Getenv(NoJailEnv) != "1"
}

// Prepare readies the jail of o.VM's next VMM and returns the Spec to
// pass it in SpecEnv: the VM's jail id (ID), its directory's permissions
// for it (store.PrepareJail), its cgroup leaf with o.Limits (MakeCgroup).
// The VMM must then be started as Apply says.
// Precondition: the VM's lock is held and no VMM runs it.
func Prepare(o Options) (*Spec, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("jail: %w", err)
	}
	id, err := ID(o.Home, o.VM.Dir)
	if err != nil {
		return nil, err
	}
	if err := o.VM.PrepareJail(id); err != nil {
		return nil, err
	}
	// Without a usable cgroup hierarchy (none mounted where this process
	// sees /sys, as under ip netns exec) the VMM runs without its cgroup
	// layer, as paddock doctor reports; a hierarchy that fails is an error.
	var cg Cgroup
	if _, verr := CgroupVersion(); verr == nil {
		if cg, err = MakeCgroup(LeafName(o.VM.Name, o.VM.Dir), o.Limits); err != nil {
			return nil, err
		}
	}
	root := filepath.Join(o.Home, rootDir)
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("jail: %w", err)
	}
	s := &Spec{
		ID: id, Root: root, Exe: exe, Cgroups: cg.ThreadFiles(), cgroup2: cg.Dir2(), KeepFDs: o.KeepFDs,
		Hostname: "paddock-" + o.VM.Name,
		Binds:    []Bind{{Path: o.VM.Dir}},
	}
	// A dynamically linked paddock (a Go test binary built with cgo)
	// needs its loader and libraries: the host's library directories,
	// read-only. paddock's release build is static and needs none.
	if dynamic(exe) {
		for _, d := range []string{"/lib", "/lib64", "/usr/lib", "/usr/lib64"} {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				s.Binds = append(s.Binds, Bind{Path: d, ReadOnly: true})
			}
		}
	}
	// The time zone of vmm.log's timestamps (Go reads it at the first).
	if fi, err := os.Stat("/etc/localtime"); err == nil && fi.Mode().IsRegular() {
		s.Binds = append(s.Binds, Bind{Path: "/etc/localtime", File: true, ReadOnly: true})
	}
	return s, nil
}

// Apply makes cmd start the jailed VMM s describes (with Start):
// it adds SpecEnv to cmd.Env (which must be set), and sets cmd's
// SysProcAttr (made if nil) to start it in new mount, PID, IPC and UTS
// namespaces (Cloneflags) and, on cgroup v2, in the VM's cgroup leaf
// (CLONE_INTO_CGROUP: no migration afterwards, see Cgroup.ThreadFiles).
// The returned release closes what Apply opened; call it once cmd.Start
// has returned.
func (s *Spec) Apply(cmd *exec.Cmd) (release func(), err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.Env = append(cmd.Env, SpecEnv+"="+s.Encode())
	cmd.SysProcAttr.Cloneflags |= Cloneflags
	if s.cgroup2 == "" {
		return func() {}, nil
	}
	fd, err := unix.Open(s.cgroup2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("jail: cgroup %s: %w", s.cgroup2, err)
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	return func() { unix.Close(fd) }, nil
}

// dynamic reports whether the ELF executable exe names a program
// interpreter (is dynamically linked).
func dynamic(exe string) bool {
	f, err := elf.Open(exe)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

// enterCaps are the capabilities Enter uses: mounts, pivot_root and the
// host name (CAP_SYS_ADMIN), chroot where pivot_root cannot work
// (CAP_SYS_CHROOT), an RLIMIT_NOFILE over the current hard limit
// (CAP_SYS_RESOURCE), the ids (CAP_SETUID, CAP_SETGID) and the bounding
// set itself (CAP_SETPCAP).
var enterCaps = []int{unix.CAP_SYS_ADMIN, unix.CAP_SYS_CHROOT, unix.CAP_SYS_RESOURCE, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP}

// Start starts cmd, set up by Apply, from a thread of its own, which
// ends right after: the thread first moves itself into the VM's cgroup
// v1 leaves (a write of 0 to each of s.Cgroups, the tasks files: cheap,
// where moving the VMM's whole process would wait for an RCU grace
// period, see Cgroup.ThreadFiles), so that the VMM is born in them, as
// CLONE_INTO_CGROUP does on v2; then it narrows its capability bounding
// set to what Enter needs (enterCaps). The VMM, root, then starts with
// no other capability, in its bounding set or any other, and Enter has
// the fewest left to drop on each of its threads (one stop-the-world
// round each).
func (s *Spec) Start(cmd *exec.Cmd) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	// run moves and narrows its thread and starts cmd from it. The
	// thread is never unlocked: it ends with the goroutine, and leaves
	// the leaf and its bounding set with it.
	run := func(res chan<- error) {
		runtime.LockOSThread()
		for _, p := range s.Cgroups {
			if err := joinThread(p); err != nil {
				res <- fmt.Errorf("jail: join cgroup %s: %w", filepath.Dir(p), err)
				return
			}
		}
		for c := 0; c <= last; c++ {
			if slices.Contains(enterCaps, c) {
				continue
			}
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				res <- fmt.Errorf("jail: drop capability %d from the bounding set of the VMM to be: %w", c, err)
				return
			}
		}
		res <- cmd.Start()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			run(done)
			return
		}
		// The main thread is kept idle, not ended, and /proc/PID shows
		// its credentials: hold it while another thread does the work
		// (no goroutine but this one runs on it meanwhile).
		other := make(chan error, 1)
		go run(other)
		err := <-other
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

// joinThread moves the calling thread, alone, into the cgroup whose
// tasks file is tasks (Cgroup.ThreadFiles).
// Precondition: the goroutine is locked to its thread.
func joinThread(tasks string) error {
	fd, err := unix.Open(tasks, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte("0"))
	return err
}
