package imagefile

import (
	"errors"
	"fmt"
	"os"
	"strconv"

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
	return openLocked(path, path, a)
}

// Reopen opens for access a the file that the O_PATH descriptor pathFD
// refers to (see open(2)) and takes a's locks on the new open file
// description; path names the file in errors and is the returned file's
// Name. The open goes through /proc/self/fd/N, which reaches the very
// file the descriptor holds, whatever path names by now: a caller that
// judged the file on the descriptor (its type, where its links lead) opens
// and locks exactly what it judged. Like Open it refuses anything but a
// regular file or a block device and never blocks. pathFD stays the
// caller's to close.
func Reopen(pathFD int, path string, a Access) (*os.File, error) {
	runReopenHook(path)
	proc := "/proc/self/fd/" + strconv.Itoa(pathFD)
	f, err := openLocked(proc, path, a)
	if errors.Is(err, unix.ENOENT) {
		// Without /proc there is no way to open the file judged rather
		// than whatever path names by now: refuse instead.
		return nil, fmt.Errorf("open %s through %s (is /proc mounted?): %w", path, proc, unix.ENOENT)
	}
	return f, err
}

// openLocked opens the file at (path, or a /proc/self/fd link) for
// access a, naming it name, and takes a's locks on it.
func openLocked(at, name string, a Access) (*os.File, error) {
	flags := unix.O_RDONLY
	if a.Writable() {
		flags = unix.O_RDWR
	}
	f, err := openFile(at, name, flags)
	if err != nil {
		return nil, err
	}
	if err := Lock(f, name, a); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckMode reports a stat(2) mode that is not an image (a directory, a
// FIFO, a socket, a character device) as one error naming path, which
// errors.Is ErrNotImage; nil for a regular file or a block device. It is
// for callers that judge a file before they open it, such as a backing
// file reached with O_PATH.
func CheckMode(path string, mode uint32) error {
	if kind := kindOf(mode); kind != "" {
		return &notImageError{path, kind}
	}
	return nil
}

// Create opens the file at path read-write with Write's locks, creating
// it (mode 0644 before the umask) if it does not exist; created says
// whether it did. An existing file is left as it is for the caller to
// truncate or overwrite, which it may only because it holds the locks:
// an image some VM or QEMU process uses is refused with an
// *InUseError, and a file Create made is removed again if it fails.
func Create(path string) (f *os.File, created bool, err error) {
	f, err = openFile(path, path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL)
	if errors.Is(err, unix.EEXIST) {
		f, err = openFile(path, path, unix.O_RDWR)
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

// openFile opens the file at (a path, or a /proc/self/fd link) with
// flags, naming it name in errors and as the file's Name, and refuses
// what is not an image before and after the open (the file may change in
// between). The open itself is non-blocking, so a FIFO that slipped past
// the first look cannot hang it.
func openFile(at, name string, flags int) (*os.File, error) {
	var st unix.Stat_t
	if unix.Stat(at, &st) == nil {
		if err := CheckMode(name, st.Mode); err != nil {
			return nil, err
		}
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(at, flags|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0o644)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EISDIR) {
		return nil, &notImageError{name, "a directory"}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if err := CheckMode(name, st.Mode); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
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
