package network

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/paddock-vm/paddock/guest/store"
	"golang.org/x/sys/unix"
)

// LockWait bounds how long a command waits for a network's lock. The
// holders (another command attaching or releasing a VM, netd taking the
// network down) keep it for moments, but one that starts the network's
// netd waits for its answer while holding it, up to helloTimeout on a
// loaded host: the wait allows for that, twice, so that the second VM
// starting on a new network does not give up before the first is done.
const LockWait = 2*helloTimeout + 30*time.Second

// lockFile takes an exclusive flock on path (created if needed), waiting
// up to LockWait, and returns the function that releases it.
func lockFile(path string) (func(), error) {
	f, err := store.FlockWait(path, LockWait)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	return func() { f.Close() }, nil
}

// lock takes network name's lock. Precondition: the network exists.
func (s *Store) lock(name string) (func(), error) {
	return lockFile(s.path(name, LockFile))
}

// getLocked returns network name's record with its lock taken, and the
// function that releases it.
func (s *Store) getLocked(name string) (*Network, func(), error) {
	n, err := s.Get(name)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := s.lock(name)
	if err != nil {
		return nil, nil, err
	}
	return n, unlock, nil
}

// netdAlive reports whether a netd holds the network's netd.lock.
func (s *Store) netdAlive(name string) (bool, error) {
	f, err := os.OpenFile(s.path(name, NetdLock), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("network %s: %w", name, err)
	}
	defer f.Close()
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("network %s: check netd: %w", name, err)
	}
	return false, nil
}
