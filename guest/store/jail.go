package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The user and group ids of jailed VMMs (guest/jail): each VM whose VMM
// runs jailed gets one id from this range as both its uid and gid. The
// range lies far above the ids of accounts and of the subordinate ranges
// useradd hands out (100000 on, 65536 each), below 2^31.
const (
	JailIDFirst = 2_000_000_000
	JailIDCount = 65536
)

// IsJailID reports whether id is in the range of jail ids.
func IsJailID(id uint32) bool {
	return id >= JailIDFirst && id < JailIDFirst+JailIDCount
}

// vmmOwned reports whether name, an entry of a VM directory, is one its
// VMM creates or replaces while it runs (and so, when it runs jailed,
// owns): the record, the run lock, the control socket, the console log
// and its rotations, the snapshots.
func vmmOwned(name string) bool {
	switch name {
	case RecordFile, RunLockFile, SocketFile, SnapshotsDir:
		return true
	}
	return strings.HasPrefix(name, ConsoleFile)
}

// vmmRead reports whether name, an entry of a VM directory, is one its
// VMM reads by path and does not write.
func vmmRead(name string) bool {
	return name == SpecFile || name == IdentityFile
}

// PrepareJail lets the jailed VMM with user and group id id work in the
// VM's directory, and nothing more: the directory becomes root's, of
// group id, mode 1770 (the VMM may create entries, and sticky: it may
// replace or remove only those it owns); what the VMM replaces (vmmOwned)
// becomes id's; every other file of the directory stays root's and
// becomes readable, not writable, by the group (vm.yaml, identity.json);
// directories stay closed to it (disks/: the VMM gets its disks as open
// descriptors). Store.VM trusts a directory prepared so (jailedDir).
// Precondition: the VM's lock is held and no VMM runs it; paddock runs
// as root.
func (v *VM) PrepareJail(id int) error {
	if !IsJailID(uint32(id)) {
		return fmt.Errorf("store: VM %s: jail id %d is not in %d-%d", v.Name, id, JailIDFirst, JailIDFirst+JailIDCount-1)
	}
	// The directory is marked first, root's and of group id, sticky but
	// not yet writable by the group: from then on a reader that does not
	// hold the VM's lock (ls, another command's Store.VM) trusts the
	// record owned by id that the loop below makes, where it would have
	// refused it in a directory not yet marked. The group may write the
	// directory only once everything in it is owned as it should be.
	// (Closed to the group before the group changes, so that a
	// directory prepared before with another id is never writable by the
	// new group while the old id's files are in it.)
	if err := os.Chmod(v.Dir, 0o750|fs.ModeSticky); err != nil {
		return fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	if err := os.Lchown(v.Dir, 0, id); err != nil {
		return fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	entries, err := os.ReadDir(v.Dir)
	if err != nil {
		return fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	for _, e := range entries {
		path := filepath.Join(v.Dir, e.Name())
		if vmmOwned(e.Name()) {
			if err := chownTree(path, id); err != nil {
				return fmt.Errorf("store: VM %s: %w", v.Name, err)
			}
			continue
		}
		if !vmmRead(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("store: VM %s: %w", v.Name, err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := os.Lchown(path, 0, id); err != nil {
			return fmt.Errorf("store: VM %s: %w", v.Name, err)
		}
		if err := os.Chmod(path, fi.Mode().Perm()&^0o022|0o040); err != nil {
			return fmt.Errorf("store: VM %s: %w", v.Name, err)
		}
	}
	if err := os.Chmod(v.Dir, 0o770|fs.ModeSticky); err != nil {
		return fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	return nil
}

// chownTree gives path, and all under it, to uid and gid id.
func chownTree(path string, id int) error {
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return os.Lchown(p, id, id)
	})
}

// jailedDir reports the jail id of a VM directory that PrepareJail made
// a jailed VMM's: owned by root, sticky, its group a jail id, writable by
// that group only. ok is false for anything else.
func jailedDir(fi fs.FileInfo) (id uint32, ok bool) {
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat || !fi.IsDir() || st.Uid != 0 || fi.Mode()&fs.ModeSticky == 0 || fi.Mode().Perm()&0o002 != 0 || !IsJailID(st.Gid) {
		return 0, false
	}
	return st.Gid, true
}

// checkVMDir checks a VM's directory and the files of it paddock acts on
// (trustedFiles) as CheckTrusted does, except in a directory prepared for
// a jailed VMM (jailedDir): that may be writable by the jail's group, and
// its record (state.json) owned by the jail's user.
func checkVMDir(vms, name string) error {
	dir := filepath.Join(vms, name)
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("store: check %s: %w", dir, err)
	}
	id, jailed := jailedDir(fi)
	if !jailed {
		if err := checkEntry(vms, name, false); err != nil {
			return err
		}
	}
	for _, f := range trustedFiles {
		if jailed && f == RecordFile {
			if err := checkJailOwned(dir, f, id); err != nil {
				return err
			}
			continue
		}
		err := checkEntry(dir, f, true)
		if err != nil && f == RecordFile && !jailed {
			// PrepareJail may have marked the directory and given the
			// record to the jail's user since the Lstat above: it marks
			// the directory first, so a directory marked now is one
			// whose record the jail's user may own.
			if fi, serr := os.Lstat(dir); serr == nil {
				if id, ok := jailedDir(fi); ok {
					err = checkJailOwned(dir, f, id)
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkJailOwned checks name in dir, a jailed VM's directory: it may be
// owned by the jail's user id as well as by root, and must not be
// writable by group or others; a missing entry is fine.
func checkJailOwned(dir, name string, id uint32) error {
	path := filepath.Join(dir, name)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("store: check %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == id && fi.Mode().IsRegular() {
		if fi.Mode().Perm()&0o022 != 0 {
			return &UnsafeError{Path: path, Problem: fmt.Sprintf("is writable by others than its VMM (mode %s)", octalMode(fi.Mode())), Fix: "chmod go-w " + path}
		}
		return nil
	}
	return checkInfo(path, fi, true)
}

// JailID returns the jail id of the VM's directory if PrepareJail made it
// a jailed VMM's (jailedDir); ok is false for a VM that runs unjailed.
func (v *VM) JailID() (id uint32, ok bool) {
	fi, err := os.Lstat(v.Dir)
	if err != nil {
		return 0, false
	}
	return jailedDir(fi)
}
