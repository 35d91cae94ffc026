package imagefile

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInUse is what errors.Is finds in an *InUseError.
var ErrInUse = errors.New("image is in use")

// InUseError reports an image that another user's locks keep from being
// opened as asked. Its message is one sentence naming the file and, where
// /proc shows them, the processes that hold it.
type InUseError struct {
	// Path is the image file.
	Path string
	// Access is what the refused opener asked for.
	Access Access
	// Denied are permissions the opener needs that others forbid;
	// Taken are permissions the opener forbids that others hold.
	Denied, Taken Perm
	// Holders are the processes whose locks conflict, as far as /proc
	// shows them (it shows other users' processes only to root, and
	// nothing of holders on other hosts of a network file system).
	Holders []Holder
}

func (e *InUseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is in use: ", e.Path)
	if len(e.Holders) == 0 {
		b.WriteString("another process ")
		if e.Taken&PermWrite != 0 {
			b.WriteString("writes it")
		} else {
			b.WriteString("reads it and forbids writing it")
		}
		return b.String()
	}
	const most = 3
	for i, h := range e.Holders {
		if i == most {
			fmt.Fprintf(&b, ", and %d more", len(e.Holders)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(h.String())
		if h.Perm&PermWrite != 0 {
			b.WriteString(" writes it")
		} else {
			b.WriteString(" reads it")
		}
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// VMs returns the names of the paddock VMs among the holders.
func (e *InUseError) VMs() []string {
	var out []string
	for _, h := range e.Holders {
		if h.VM != "" {
			out = append(out, h.VM)
		}
	}
	return out
}

// Lock takes a's locks on the open file f (named path in errors), as QEMU
// does when it opens an image: first its own bytes, then it tests
// everyone else's. On a conflict it releases what it took and returns an
// *InUseError. The locks live as long as f's open file description.
// Precondition: f holds none of these locks yet (a fresh open).
func Lock(f *os.File, path string, a Access) error {
	perm, unshared := a.perms()
	if perm|unshared == 0 {
		return nil
	}
	fd := f.Fd()
	err := setRuns(fd, permBase, perm, unix.F_RDLCK)
	if err == nil {
		err = setRuns(fd, sharedBase, unshared, unix.F_RDLCK)
	}
	// A read lock fails only where someone holds a write lock, which no
	// QEMU-style user takes: a foreign lock, reported as a conflict too.
	blocked := err != nil && isConflict(err)
	var denied, taken Perm
	if err == nil || blocked {
		denied, taken, err = conflicts(fd, perm, unshared)
		if err == nil && !blocked && denied|taken == 0 {
			return nil
		}
	}
	// Let go of every byte of both ranges: f held none before.
	_ = Unlock(f)
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if denied|taken == 0 {
		denied = perm
	}
	return inUse(f, path, a, denied, taken)
}

// Unlock drops f's image locks: for the whole open file description, so
// for every descriptor that shares it. The last owner of an image calls
// it just before closing (see Close); a process that hands the descriptor
// on to another must not, or the receiver would lose the locks.
func Unlock(f *os.File) error {
	fd := f.Fd()
	if err := setRuns(fd, permBase, permAll, unix.F_UNLCK); err != nil {
		return fmt.Errorf("unlock %s: %w", f.Name(), err)
	}
	if err := setRuns(fd, sharedBase, permAll, unix.F_UNLCK); err != nil {
		return fmt.Errorf("unlock %s: %w", f.Name(), err)
	}
	return nil
}

// Close unlocks and closes f, for the last owner of an image. Closing
// alone would release the locks only once every descriptor of the open
// file description is closed, and a fork in another goroutine holds a
// copy of each descriptor until the child's exec closes it: the image
// could stay locked a moment after it was closed.
func Close(f *os.File) error {
	uerr := Unlock(f)
	if err := f.Close(); err != nil {
		return err
	}
	return uerr
}

// Check reports whether the image at path could be opened with access a
// now, without opening it for use or taking any lock: nil, an
// *InUseError, or why the file cannot be looked at.
func Check(path string, a Access) error {
	f, err := Open(path, Unlocked)
	if err != nil {
		return err
	}
	defer f.Close()
	perm, unshared := a.perms()
	denied, taken, err := conflicts(f.Fd(), perm, unshared)
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if denied|taken == 0 {
		return nil
	}
	return inUse(f, path, a, denied, taken)
}

// inUse builds the error for a refused access, looking up the holders.
func inUse(f *os.File, path string, a Access, denied, taken Perm) error {
	e := &InUseError{Path: path, Access: a, Denied: denied, Taken: taken}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) == nil {
		perm, unshared := a.perms()
		e.Holders = holders(procRoot, st.Dev, st.Ino, perm, unshared)
	}
	return e
}

// conflicts tests, as QEMU's raw_check_lock_bytes does, which of the
// permissions perm others forbid (denied) and which of the ones unshared
// forbids others hold (taken). Locks of fd's own description never
// conflict with it.
func conflicts(fd uintptr, perm, unshared Perm) (denied, taken Perm, err error) {
	// The common case first: nobody else holds any of the bytes, which
	// one test of the whole span answers.
	if perm|unshared == 0 {
		return 0, 0, nil
	}
	if others, err := lockedByOthers(fd, permBase, sharedBase+permCount-permBase); err != nil || !others {
		return 0, 0, err
	}
	for i := 0; i < permCount; i++ {
		bit := Perm(1) << i
		if perm&bit != 0 {
			held, err := lockedByOthers(fd, sharedBase+int64(i), 1)
			if err != nil {
				return 0, 0, err
			}
			if held {
				denied |= bit
			}
		}
		if unshared&bit != 0 {
			held, err := lockedByOthers(fd, permBase+int64(i), 1)
			if err != nil {
				return 0, 0, err
			}
			if held {
				taken |= bit
			}
		}
	}
	return denied, taken, nil
}

// lockedByOthers reports whether another open file description holds any
// lock on the n bytes at off (F_OFD_GETLK for a write lock, as
// qemu_lock_fd_test).
func lockedByOthers(fd uintptr, off, n int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: n}
	if err := fcntl(fd, unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

// setRuns sets lock type typ on the bytes base+i of the bits i of p, one
// call per run of adjacent bits.
func setRuns(fd uintptr, base int64, p Perm, typ int16) error {
	for i := 0; i < permCount; {
		if p&(1<<i) == 0 {
			i++
			continue
		}
		j := i
		for j < permCount && p&(1<<j) != 0 {
			j++
		}
		lk := unix.Flock_t{Type: typ, Whence: 0, Start: base + int64(i), Len: int64(j - i)}
		if err := fcntl(fd, unix.F_OFD_SETLK, &lk); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// fcntl is FcntlFlock, retried when a signal interrupts it.
func fcntl(fd uintptr, cmd int, lk *unix.Flock_t) error {
	for {
		err := unix.FcntlFlock(fd, cmd, lk)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// isConflict reports whether a lock call failed because another lock is
// in the way (a write lock someone took outside QEMU's scheme).
func isConflict(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES)
}
