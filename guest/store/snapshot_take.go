package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// TakeSnapshotFile moves file of the snapshot called name to dst, a path
// in a directory no one but this user can write (a template's stage),
// and makes it this user's, mode 0400, and the only name and the only
// open description of its inode. The snapshot's directory is reached as
// OpenSnapshotFile reaches it (no link followed). A file a jailed VMM
// wrote could still be written by that VMM through a descriptor or a
// hard link it kept, after paddock checked its contents, and a shared
// memory file of clones changed or cut short under them (SIGBUS in every
// clone's VMM): so a file with another link is refused, and one open
// anywhere else too (a write lease, which the kernel grants only on a
// file no one else has open). On failure nothing is left at dst.
func (v *VM) TakeSnapshotFile(name, file, dst string) error {
	d, err := v.openSnapshotDir(name)
	if err != nil {
		return err
	}
	defer d.Close()
	src := filepath.Join(v.SnapshotDir(name), file)
	if err := unix.Renameat2(int(d.Fd()), file, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("store: move %s to %s: %w", src, dst, err)
	}
	if err := takeFile(v, src, dst); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// takeFile makes dst, just moved from src (which names it in errors), a
// private file of this user's as TakeSnapshotFile says.
func takeFile(v *VM, src, dst string) error {
	f, err := openRegularAt(unix.AT_FDCWD, dst, src)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := v.checkSnapshotFile(f, src); err != nil {
		return err
	}
	if err := f.Chown(os.Geteuid(), os.Getegid()); err != nil {
		return fmt.Errorf("store: take %s: %w", src, err)
	}
	if err := f.Chmod(0o400); err != nil {
		return fmt.Errorf("store: take %s: %w", src, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: take %s: %w", src, err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
		return fmt.Errorf("store: %s has %d names (hard links): another could be used to write it after paddock checked it", src, n)
	}
	// Checked after the owner and mode changed: no one but this user can
	// open it from now on, so whoever has it open opened it before.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("store: %s is still open in another process (the VM's VMM?), which could write it after paddock checked it", src)
		}
		return fmt.Errorf("store: take %s: make sure no other process has it open (a write lease): %w", src, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK); err != nil {
		return fmt.Errorf("store: take %s: %w", src, err)
	}
	return nil
}
