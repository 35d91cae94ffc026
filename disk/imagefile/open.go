package imagefile

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotImage is what errors.Is finds when a path names something other
// than a regular file or a block device.
var ErrNotImage = errors.New("not a regular file or block device")

// notImageError names the path and what it is instead.
type notImageError struct {
	path, kind string
}

func (e *notImageError) Error() string {
	return fmt.Sprintf("%s is %s, not a disk image (images are regular files or block devices)", e.path, e.kind)
}

func (e *notImageError) Is(target error) bool { return target == ErrNotImage }

// Open opens the image file at path for access a (read-write for Write,
// read-only otherwise) and takes a's locks on it. It refuses anything but
// a regular file or a block device without reading from it, and never
// blocks. Errors name path once: an *os.PathError, an *InUseError, or one
// that errors.Is ErrNotImage.
func Open(path string, a Access) (*os.File, error) {
	flags := unix.O_RDONLY
	if a.Writable() {
		flags = unix.O_RDWR
	}
	f, err := openFile(path, flags)
	if err != nil {
		return nil, err
	}
	if err := Lock(f, path, a); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Create opens the file at path read-write with Write's locks, creating
// it (mode 0644 before the umask) if it does not exist; created says
// whether it did. An existing file is left as it is for the caller to
// truncate or overwrite, which it may only because it holds the locks:
// an image some VM or QEMU process uses is refused with an
// *InUseError, and a file Create made is removed again if it fails.
func Create(path string) (f *os.File, created bool, err error) {
	f, err = openFile(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL)
	if errors.Is(err, unix.EEXIST) {
		f, err = openFile(path, unix.O_RDWR)
	} else {
		created = err == nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := Lock(f, path, Write); err != nil {
		f.Close()
		if created {
			os.Remove(path)
		}
		return nil, false, err
	}
	return f, created, nil
}

// openFile opens path with flags, refusing what is not an image before
// and after the open (the file may change in between). The open itself is
// non-blocking, so a FIFO that slipped past the first look cannot hang it.
func openFile(path string, flags int) (*os.File, error) {
	var st unix.Stat_t
	if unix.Stat(path, &st) == nil {
		if kind := kindOf(st.Mode); kind != "" {
			return nil, &notImageError{path, kind}
		}
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, flags|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0o644)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EISDIR) {
		return nil, &notImageError{path, "a directory"}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if kind := kindOf(st.Mode); kind != "" {
		unix.Close(fd)
		return nil, &notImageError{path, kind}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// kindOf says what a stat(2) mode is when it is not an image ("" for a
// regular file or block device).
func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
		return ""
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a named pipe (FIFO)"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	}
	return "a special file"
}
