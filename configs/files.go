package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/paddock-vm/paddock/hypervisor/boot"
)

// fileKind names the type of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// openRegular opens path for reading if it is a regular file, and returns
// the file and its size. It never blocks: the open is non-blocking, so a
// FIFO without a writer is refused at once rather than waited on. Errors
// do not name path ("a named pipe, not a regular file"): callers do.
func openRegular(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, pathErr(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, pathErr(err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s, not a regular file", fileKind(fi.Mode()))
	}
	return f, fi.Size(), nil
}

// checkReadable checks that path is a non-empty regular file we can open.
func checkReadable(path string) error {
	f, size, err := openRegular(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if size == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	return nil
}

// checkKernel checks that path is a kernel paddock boots: the loader's
// own checks (boot.Inspect) on a bzImage or an ELF vmlinux with a PVH
// entry, without loading it.
func checkKernel(path string) error {
	if err := checkReadable(path); err != nil {
		return err
	}
	if _, err := boot.Inspect(path); err != nil {
		var ke *boot.KernelError
		if errors.As(err, &ke) {
			return fmt.Errorf("%s: %w", path, ke.Err)
		}
		return err
	}
	return nil
}

// checkLogPath checks that a console log can be created or appended at
// path: its directory exists, and path itself is not a directory.
func checkLogPath(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, pathErr(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}
