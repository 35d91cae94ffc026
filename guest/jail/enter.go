package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Enter is a jailed VMM's first act. Started as root in new mount, PID,
// IPC and UTS namespaces, it finishes the jail s describes and returns
// the process's id as the host sees it; the VMM then installs its seccomp
// filter (Seccomp) and serves the VM in this same process. It returns an
// error, with the first step that failed, if it could not.
//
// The VMM starts in the VM's cgroup leaf, with few capabilities in its
// bounding set (Spec.Start). The steps, in order: make every mount
// private; mount a tmpfs on s.Root holding the binds, the executable
// (read-only) and a /proc of the new PID namespace; pivot_root into it
// and detach the old root, then make the new root read-only; set the
// host name; set the rlimits; mark every descriptor from s.KeepFDs on
// close-on-exec (the starting command hands over exactly s.KeepFDs, and
// paddock opens everything else close-on-exec); then, on every thread of
// the process at once (AllThreadsSyscall, as Go's own Setuid does): drop
// what is left of the bounding set, become s.ID with no supplementary
// groups (which clears the permitted, effective and ambient sets), clear
// the inheritable set, set no_new_privs. The process stays dumpable, as
// an executed program would be, so that it can read its own /proc files.
//
// A binary built with cgo cannot change all its threads so (a test
// binary): there Enter does the same on one thread and executes the VMM
// proper in the jail as a second stage (this program again, with the
// same arguments and environment env, with JailedEnv set and SpecEnv
// left out), which ends every other thread; it returns only on failure.
func Enter(s *Spec, env []string) (int, error) {
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_GETPID, 0, 0, 0)
	inPlace := e != syscall.ENOTSUP
	if !inPlace {
		runtime.LockOSThread() // never unlocked: the thread execs or the process exits
	}
	hostPID, err := os.Readlink("/proc/self") // the host's /proc, still
	if err != nil {
		return 0, fmt.Errorf("jail: own process id: %w", err)
	}
	pid, err := strconv.Atoi(hostPID)
	if err != nil {
		return 0, fmt.Errorf("jail: own process id: /proc/self is %q", hostPID)
	}
	if err := mountRoot(s); err != nil {
		return 0, err
	}
	if err := pivot(s.Root); err != nil {
		return 0, err
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return 0, fmt.Errorf("jail: host name: %w", err)
		}
	}
	for _, rl := range []struct {
		res int
		val uint64
	}{{unix.RLIMIT_CORE, 0}, {unix.RLIMIT_NOFILE, NoFile}} {
		if err := unix.Setrlimit(rl.res, &unix.Rlimit{Cur: rl.val, Max: rl.val}); err != nil {
			return 0, fmt.Errorf("jail: rlimit %d: %w", rl.res, err)
		}
	}
	if err := unix.CloseRange(uint(s.KeepFDs), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, fmt.Errorf("jail: close descriptors: %w", err)
	}
	last, err := lastCap()
	if err != nil {
		return 0, err
	}
	if inPlace {
		if err := dropAllThreads(s.ID, last); err != nil {
			return 0, err
		}
		return pid, nil
	}
	if err := dropThisThread(s.ID, last); err != nil {
		return 0, err
	}
	next := []string{JailedEnv + "=" + hostPID}
	for _, e := range env {
		if !strings.HasPrefix(e, SpecEnv+"=") && !strings.HasPrefix(e, JailedEnv+"=") {
			next = append(next, e)
		}
	}
	argv := append([]string{ExePath}, os.Args[1:]...)
	return 0, fmt.Errorf("jail: run %s: %w", ExePath, unix.Exec(ExePath, argv, next))
}

// dropThisThread drops every privilege of the calling thread, as Enter
// describes, before it executes the second stage.
// Precondition: the goroutine is locked to its thread.
func dropThisThread(id, last int) error {
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("jail: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := becomeOnThisThread(id); err != nil {
		return fmt.Errorf("jail: become uid and gid %d: %w", id, err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("jail: clear capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: no_new_privs: %w", err)
	}
	return nil
}

// mountRoot builds the jail's root on s.Root.
func mountRoot(s *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("jail: make mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", s.Root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m,nr_inodes=4096"); err != nil {
		return fmt.Errorf("jail: root on %s: %w", s.Root, err)
	}
	binds := append(append([]Bind(nil), s.Binds...), Bind{Path: s.Exe, File: true, ReadOnly: true})
	for _, b := range binds {
		target := filepath.Join(s.Root, b.Path)
		if b.Path == s.Exe {
			target = filepath.Join(s.Root, ExePath)
		}
		if err := bind(b, target); err != nil {
			return err
		}
	}
	proc := filepath.Join(s.Root, "proc")
	if err := os.Mkdir(proc, 0o555); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("jail: mount /proc: %w", err)
	}
	return nil
}

// bind mounts b.Path on target, which it creates.
func bind(b Bind, target string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if b.File {
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return fmt.Errorf("jail: %w", err)
		}
		f.Close()
	} else if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount(b.Path, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("jail: bind %s: %w", b.Path, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if b.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("jail: bind %s: %w", b.Path, err)
	}
	return nil
}

// pivot makes root the root of this mount namespace, detaches the old
// one, and makes the new root read-only.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	// pivot_root(".", "."): the old root ends up on top of the new one,
	// and unmounting "." detaches it (pivot_root(2)).
	if err := unix.PivotRoot(".", "."); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("jail: pivot_root into %s: %w", root, err)
		}
		// The host runs from its initramfs: rootfs cannot be pivoted
		// away (pivot_root(2)). Move the new root over it and chroot
		// into it instead, as runc does without pivot_root; the host's
		// mounts lie hidden below, out of reach without CAP_SYS_CHROOT,
		// which Enter drops.
		if merr := unix.Mount(".", "/", "", unix.MS_MOVE, ""); merr != nil {
			return fmt.Errorf("jail: pivot_root into %s: %w; moving it over / instead: %w", root, err, merr)
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("jail: chroot into %s: %w", root, err)
		}
	} else if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("jail: detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("jail: read-only root: %w", err)
	}
	return nil
}

// lastCap is the highest capability number this kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("jail: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("jail: cap_last_cap: %w", err)
	}
	return n, nil
}
