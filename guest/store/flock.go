package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// flockPoll is how often FlockWait tries a held lock again: flock(2)
// cannot be given a deadline, and a blocked flock cannot be abandoned.
const flockPoll = 20 * time.Millisecond

// ErrLockTimeout: FlockWait gave up on a lock another process held.
var ErrLockTimeout = errors.New("still held by another paddock process")

// FlockWait takes an exclusive flock(2) on path (created, mode 0600, if
// needed), trying for up to wait, and returns the open file that holds
// it: closing the file releases the lock, as does the process's end.
// A lock still held after wait is an error wrapping ErrLockTimeout.
func FlockWait(path string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: %w after %s", path, ErrLockTimeout, wait)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(flockPoll)
	}
}

// SameFile reports whether the open file f is still the file at path
// (a lock taken on a file that was removed or replaced meanwhile guards
// nothing).
func SameFile(f *os.File, path string) bool { return sameFile(f, path) }

// OpenSubdir returns the directory sub of the state directory home (a
// store of its own: networks/, tenants/), creating it (mode 0700) and,
// as Open makes it, home if needed. Like Open it refuses a home or sub
// that someone other than the current user and root could change
// (CheckTrusted): what is recorded there decides what root's paddock
// does.
func OpenSubdir(home, sub string) (string, error) {
	if !filepath.IsAbs(home) {
		return "", fmt.Errorf("store: home %q is not an absolute path", home)
	}
	if _, err := os.Stat(home); errors.Is(err, fs.ErrNotExist) {
		if _, err := Open(home); err != nil {
			return "", err
		}
	}
	if err := CheckTrusted(home); err != nil {
		return "", err
	}
	dir := filepath.Join(home, sub)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	if err := CheckTrusted(dir); err != nil {
		return "", err
	}
	return dir, nil
}
