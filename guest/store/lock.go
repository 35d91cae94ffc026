package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a VM's mutation lock: every command that changes a VM (start,
// stop, rm, cleaning up after a dead VMM) holds it, so of two concurrent
// commands on one VM one proceeds and the other gets ErrBusy at once. It
// is an flock(2) on the VM's lock file, released by Unlock or when the
// process dies.
type Lock struct {
	f *os.File
}

// Lock takes the VM's mutation lock without waiting: ErrBusy if another
// process holds it, ErrNotFound if the VM was removed meanwhile.
func (v *VM) Lock() (*Lock, error) {
	f, err := os.OpenFile(v.Path(LockFile), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: VM %s: %w", v.Name, ErrNotFound)
		}
		return nil, fmt.Errorf("store: lock VM %s: %w", v.Name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("store: VM %s: %w", v.Name, ErrBusy)
		}
		return nil, fmt.Errorf("store: lock VM %s: %w", v.Name, err)
	}
	// The VM may have been removed (its directory renamed away) between
	// the open and the lock: then the lock guards a dead file.
	if !sameFile(f, v.Path(LockFile)) {
		f.Close()
		return nil, fmt.Errorf("store: VM %s: %w", v.Name, ErrNotFound)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. Safe to call more than once.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// RunLock is the lock a VMM holds for its whole life on the VM's vmm.lock
// file: while it is held the VMM is alive, whatever the process table
// says (pids are reused; a lock dies with its process). It is an
// open-file-description lock (F_OFD_SETLK), so it conflicts even with
// other descriptions in the same process, and the file holds the holder's
// pid and run id for readers.
type RunLock struct {
	f *os.File
}

// Holder is what a VM's run lock says about its VMM.
type Holder struct {
	// Alive: a VMM holds the run lock.
	Alive bool
	// PID and RunID identify the holder, as it wrote them; empty while a
	// VMM is taking the lock.
	PID   int
	RunID string
}

// AcquireRunLock takes the VM's run lock for the calling VMM and records
// pid (its process id as the host sees it) and runID in the lock file. It fails with ErrRunning if another
// VMM holds it; it waits only for commands that briefly hold a read lock
// while waiting for a previous VMM to exit (WaitRunUnlocked).
func (v *VM) AcquireRunLock(pid int, runID string) (*RunLock, error) {
	f, err := os.OpenFile(v.Path(RunLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: VM %s: %w", v.Name, ErrNotFound)
		}
		return nil, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
	}
	fd := int(f.Fd())
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err != nil {
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
		}
		probe := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &probe); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
		}
		if probe.Type == unix.F_WRLCK {
			f.Close()
			return nil, fmt.Errorf("store: VM %s: %w", v.Name, ErrRunning)
		}
		// Only readers waiting for an old VMM: they let go at once.
		lk = unix.Flock_t{Type: unix.F_WRLCK}
		if err := fcntlWait(fd, &lk); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
		}
	}
	if !sameFile(f, v.Path(RunLockFile)) {
		f.Close()
		return nil, fmt.Errorf("store: VM %s: %w", v.Name, ErrNotFound)
	}
	// Emptied first, then written: while this VMM takes the lock, the
	// file names no pid rather than the last holder's, which a kill
	// (guest's sigkill) must not take for this VMM's. A VMM killed in
	// that instant leaves no pid to wait for (WaitLastHolderExited).
	content := strconv.Itoa(pid) + " " + runID + "\n"
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
	}
	return &RunLock{f: f}, nil
}

// fcntlWait is F_OFD_SETLKW, retried when a signal interrupts it.
func fcntlWait(fd int, lk *unix.Flock_t) error {
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, lk)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Release gives the run lock up; the VMM calls it last, after its final
// record is written. Safe to call more than once.
func (l *RunLock) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// openRunLock opens the run lock for reading, following no link and only
// a regular file: a jailed VMM owns it, and a FIFO put in its place would
// block the opener.
func (v *VM) openRunLock() (*os.File, error) {
	path := v.Path(RunLockFile)
	return openRegularAt(unix.AT_FDCWD, path, path)
}

// RunHolder reports whether a VMM holds the VM's run lock, and which.
func (v *VM) RunHolder() (Holder, error) {
	f, err := v.openRunLock()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Holder{}, nil // never started
		}
		return Holder{}, fmt.Errorf("VM %s: run lock: %w", v.Name, err) // err says "store: "
	}
	defer f.Close()
	probe := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &probe); err != nil {
		return Holder{}, fmt.Errorf("store: VM %s: run lock: %w", v.Name, err)
	}
	if probe.Type != unix.F_WRLCK {
		return Holder{}, nil // free, or only a waiter's read lock
	}
	h := Holder{Alive: true}
	h.PID, h.RunID = readHolder(f)
	return h, nil
}

// readHolder parses what a VMM wrote in its run lock file f: its pid and
// run id, or 0 and "" if the file does not hold them.
func readHolder(f *os.File) (pid int, runID string) {
	buf := make([]byte, 128)
	n, _ := f.ReadAt(buf, 0)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	ps, id, ok := strings.Cut(strings.TrimSpace(line), " ")
	if p, err := strconv.Atoi(ps); ok && err == nil && p > 0 {
		return p, id
	}
	return 0, ""
}

// ErrWaitTimeout: WaitRunUnlocked gave up.
var ErrWaitTimeout = errors.New("timed out waiting for the VMM to exit")

// WaitRunUnlocked blocks until no VMM holds the VM's run lock and the
// last one to hold it has finished exiting, or the timeout passes
// (ErrWaitTimeout). It waits on the lock itself (a read lock taken and
// dropped at once), not by polling, then on the holder's exit (see
// WaitLastHolderExited). On a timeout the waiting goroutine stays blocked
// until the VMM exits.
func (v *VM) WaitRunUnlocked(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	f, err := v.openRunLock()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("VM %s: run lock: %w", v.Name, err) // err says "store: "
	}
	done := make(chan error, 1)
	go func() {
		defer f.Close()
		lk := unix.Flock_t{Type: unix.F_RDLCK}
		done <- fcntlWait(int(f.Fd()), &lk)
		// Closing f drops the read lock at once.
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("store: VM %s: wait for the VMM: %w", v.Name, err)
		}
	case <-t.C:
		return fmt.Errorf("store: VM %s: %w", v.Name, ErrWaitTimeout)
	}
	return v.WaitLastHolderExited(time.Until(deadline))
}

// WaitLastHolderExited waits, up to timeout, for the process the run
// lock file names (the holder, or the last one once the lock is free) to
// finish exiting, if it is exiting: ErrWaitTimeout if it still is then.
// A command that opens a stopped VM's disks (a start, a restore, the
// removal of a snapshot) calls it first, whether or not it waited for
// the run lock itself.
//
// A VMM killed by a signal lets go of its files one by one as it exits,
// the highest descriptor first (docs/hosts.md). Its run lock, on a
// higher descriptor than the disks handed to it, is free a moment before
// the disks' image locks are: a command that restarts the VM at once
// would find its disks "in use" by no process. Once the process has
// exited (its pidfd polls readable) every file it had is closed: Linux
// closes a dying process's files before it wakes its pidfd's pollers.
//
// A process that is not exiting is not waited for: a VMM that releases
// its run lock itself has closed its disks first (the VMM's serve), and
// a pid naming any other process (reused, or written by a compromised
// VMM) is no VMM of this VM: waiting for one that is exiting costs at
// most the timeout. Where the pid cannot be pinned (gone, or pidfds
// unsupported) there is nothing left to wait for.
func (v *VM) WaitLastHolderExited(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pid := v.lastHolderPID()
	if pid <= 0 {
		return nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(pidfd)
	// Opened before the look at its flags: should pid be reused after
	// this, the pidfd polls readable, as its process has exited.
	if !procExiting(procRoot, pid) {
		return nil
	}
	for {
		// Polled once even when the time is up: it may be over.
		wait := max(time.Until(deadline), 0)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
		switch {
		case err == nil && n > 0:
			return nil
		case err != nil && !errors.Is(err, unix.EINTR):
			return nil // cannot wait on it: as if gone
		case !time.Now().Before(deadline):
			return fmt.Errorf("store: VM %s: its last VMM (pid %d) is still exiting: %w", v.Name, pid, ErrWaitTimeout)
		}
	}
}

// lastHolderPID reads the pid the run lock file names: the holder's, or
// the last holder's once it is free. 0 if there is none.
func (v *VM) lastHolderPID() int {
	f, err := v.openRunLock()
	if err != nil {
		return 0
	}
	defer f.Close()
	pid, _ := readHolder(f)
	return pid
}

// procRoot is where procExiting reads processes' stat files.
const procRoot = "/proc"

// pfExiting is the kernel's PF_EXITING task flag: set as a process
// starts to exit, before it closes its files.
const pfExiting = 0x4

// procExiting reports whether process pid is exiting, from the flags in
// root/<pid>/stat (field 9, proc(5)); false if that cannot be read.
func procExiting(root string, pid int) bool {
	b, err := os.ReadFile(root + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The command name, field 2, is in parentheses and may hold spaces
	// and parentheses itself: the fields after it follow the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return false
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), so field 9 (flags) is fields[6].
	if len(fields) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}
