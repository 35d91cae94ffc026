package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/guest/store"
)

// lockFile, in the state directory, serializes the choice of jail ids.
const lockFile = "jail.lock"

// ID returns the jail id of the VM in vmDir, one of the VMs of the state
// directory home: the id it had (a VM directory's group, once prepared
// for a jail: store.PrepareJail), or else the lowest id of the range
// (store.JailIDFirst on) that no VM of home has. Every VM of a state
// directory thus runs as its own user; two state directories on one host
// may give the same id to VMs of each, which their mount namespaces
// still keep apart.
func ID(home, vmDir string) (int, error) {
	if id, ok := dirID(vmDir); ok {
		return id, nil
	}
	f, err := os.OpenFile(filepath.Join(home, lockFile), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("jail: choose an id: %w", err)
	}
	defer f.Close()
	if err := flock(f); err != nil {
		return 0, fmt.Errorf("jail: choose an id: %w", err)
	}
	// Under the lock, again: another start may have just prepared it.
	if id, ok := dirID(vmDir); ok {
		return id, nil
	}
	used := map[int]bool{}
	entries, err := os.ReadDir(filepath.Dir(vmDir))
	if err != nil {
		return 0, fmt.Errorf("jail: choose an id: %w", err)
	}
	for _, e := range entries {
		if id, ok := dirID(filepath.Join(filepath.Dir(vmDir), e.Name())); ok {
			used[id] = true
		}
	}
	for id := store.JailIDFirst; id < store.JailIDFirst+store.JailIDCount; id++ {
		if !used[id] {
			// Claimed before the lock goes: the caller prepares the
			// directory with it, and until then no other start of this
			// home may choose it. The group alone claims it.
			if err := os.Lchown(vmDir, -1, id); err != nil {
				return 0, fmt.Errorf("jail: claim id %d: %w", id, err)
			}
			return id, nil
		}
	}
	return 0, fmt.Errorf("jail: all %d jail ids of %s are taken", store.JailIDCount, home)
}

// dirID is the jail id a VM directory's group says it has.
func dirID(dir string) (int, bool) {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 || !store.IsJailID(st.Gid) {
		return 0, false
	}
	return int(st.Gid), true
}

// flock takes an exclusive lock on f, waiting for it.
func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}
