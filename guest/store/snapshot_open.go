package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// A jailed VMM owns its VM's snapshots directory and everything in it
// (PrepareJail): it could put a symbolic link where a snapshot, or the
// directory itself, should be, and have paddock, running as root, read,
// rename or delete what the link names (another VM's snapshot, any file
// of the host). So paddock reaches a snapshot's files only through open
// directories, one name at a time, following no link (openat with
// O_NOFOLLOW), and takes only regular files owned by root, the current
// user or the VM's jail user.

// maxSnapshotDepth bounds how deep removeAt descends: a snapshot is
// flat, so a deeper tree is something a VMM planted.
const maxSnapshotDepth = 8

// openDirAt opens the directory name in dir (a descriptor, or
// unix.AT_FDCWD for a path), following no symbolic link at its end. path
// names it in errors.
func openDirAt(dir int, name, path string) (*os.File, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR):
		// O_DIRECTORY with O_NOFOLLOW fails a link with either.
		var st unix.Stat_t
		if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, linkError(path)
		}
		return nil, fmt.Errorf("store: %s is not a directory", path)
	case err != nil:
		return nil, fmt.Errorf("store: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	return os.NewFile(uintptr(fd), path), nil
}

// linkError is a symbolic link found where a file a VMM writes (a
// snapshot's directory or file, the record, the run lock) should be.
func linkError(path string) error {
	return fmt.Errorf("store: %s is a symbolic link; paddock follows none where a VMM could have made it", path)
}

// openSnapshotsDir opens the VM's snapshots directory, following no
// link.
func (v *VM) openSnapshotsDir() (*os.File, error) {
	return openDirAt(unix.AT_FDCWD, filepath.Join(v.Dir, SnapshotsDir), filepath.Join(v.Dir, SnapshotsDir))
}

// openSnapshotDir opens the directory of the snapshot called name,
// following no link; a missing one is ErrNoSnapshot.
func (v *VM) openSnapshotDir(name string) (*os.File, error) {
	if !ValidSnapshotName(name) {
		return nil, fmt.Errorf("store: %q: %w", name, ErrBadSnapshotName)
	}
	parent, err := v.openSnapshotsDir()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: VM %s: snapshot %s: %w", v.Name, name, ErrNoSnapshot)
	}
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	d, err := openDirAt(int(parent.Fd()), name, v.SnapshotDir(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: VM %s: snapshot %s: %w", v.Name, name, ErrNoSnapshot)
	}
	return d, err
}

// OpenSnapshotFile opens file (SnapshotMetaFile, SnapshotStateFile,
// SnapshotMemoryFile) of the snapshot called name for reading. It
// follows no symbolic link on the way and refuses anything but a regular
// file owned by root, the current user or the VM's jail user: it never
// opens a file outside the VM's snapshots, nor blocks on a FIFO. A
// snapshot that does not exist is ErrNoSnapshot; a missing file of one
// that does, fs.ErrNotExist.
func (v *VM) OpenSnapshotFile(name, file string) (*os.File, error) {
	d, err := v.openSnapshotDir(name)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	path := filepath.Join(v.SnapshotDir(name), file)
	f, err := openRegularAt(int(d.Fd()), file, path)
	if err != nil {
		return nil, err
	}
	if err := v.checkSnapshotFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openRegularAt opens name in the directory dir (a descriptor, or
// unix.AT_FDCWD for a path) for reading: following no symbolic link at
// its end, and only a regular file (a FIFO would block the reader). path
// names it in errors; a missing file is an fs.ErrNotExist error.
func openRegularAt(dir int, name, path string) (*os.File, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, linkError(path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("store: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return f, nil
}

// checkSnapshotFile checks an open regular file of a snapshot: owned by
// root, the current user or the VM's jail user.
func (v *VM) checkSnapshotFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("store: check %s: no owner information", path)
	}
	if st.Uid == 0 || int(st.Uid) == os.Geteuid() {
		return nil
	}
	if id, jailed := v.JailID(); jailed && st.Uid == id {
		return nil
	}
	return &UnsafeError{Path: path, Problem: fmt.Sprintf("is owned by %s, neither by %s nor by the VM's VMM", userName(int(st.Uid)), userName(os.Geteuid())), Fix: "rm " + path}
}

// removeAt removes name in the directory dir and, if it is a directory,
// everything in it, following no symbolic link (a link is removed, not
// what it names). depth is how deep it is already.
func removeAt(dir int, name string, depth int) error {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR):
		if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &fs.PathError{Op: "unlink", Path: name, Err: err}
		}
		return nil
	case err != nil:
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	if depth >= maxSnapshotDepth {
		return fmt.Errorf("%s: directories nested more than %d deep", name, maxSnapshotDepth)
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	for _, n := range names {
		if err := removeAt(fd, n, depth+1); err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}
