package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Storage is the byte store under an image: normally a host file. Tests
// substitute in-memory stores that simulate crashes. Implementations are
// safe for concurrent ReadAt/WriteAt.
type Storage interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every completed write durable (fdatasync).
	Sync() error
	// Truncate sets the size.
	Truncate(size int64) error
	// Size returns the current size.
	Size() (int64, error)
	Close() error
}

// vectorWriter is implemented by stores that can write several buffers to
// consecutive offsets in one call (pwritev).
type vectorWriter interface {
	WriteVecAt(bufs [][]byte, off int64) (int, error)
}

// osFile is a Storage backed by a host file.
type osFile struct {
	f *os.File
}

// openStorage opens path for reading, and for writing unless readOnly.
func openStorage(path string, readOnly bool) (*osFile, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o *osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o *osFile) Truncate(size int64) error                { return o.f.Truncate(size) }
func (o *osFile) Close() error                             { return o.f.Close() }

func (o *osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (o *osFile) Size() (int64, error) {
	fi, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// WriteVecAt writes bufs back to back starting at off with pwritev,
// retrying short writes.
func (o *osFile) WriteVecAt(bufs [][]byte, off int64) (int, error) {
	total := 0
	fd := int(o.f.Fd())
	bufs = append([][]byte(nil), bufs...) // trimmed below; keep the caller's intact
	for len(bufs) > 0 {
		if len(bufs) > 1024 {
			n, err := o.WriteVecAt(bufs[:1024], off)
			total += n
			if err != nil {
				return total, err
			}
			off += int64(n)
			bufs = bufs[1024:]
			continue
		}
		n, err := unix.Pwritev(fd, bufs, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return total, &os.PathError{Op: "pwritev", Path: o.f.Name(), Err: err}
		}
		if n == 0 {
			return total, fmt.Errorf("pwritev %s: %w", o.f.Name(), io.ErrShortWrite)
		}
		total += n
		off += int64(n)
		for n > 0 && len(bufs) > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
	return total, nil
}

// punchHole deallocates [off, off+n) in the host file if the file system
// supports it; the range then reads as zeros. Errors are reported so the
// caller can fall back to writing zeros.
func (o *osFile) punchHole(off, n int64) error {
	return unix.Fallocate(int(o.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// holePuncher is implemented by stores that can deallocate ranges.
type holePuncher interface {
	punchHole(off, n int64) error
}

// startWriteback asks the kernel to start writing the file's dirty pages
// back now, without waiting (sync_file_range).
func (o *osFile) startWriteback() error {
	return unix.SyncFileRange(int(o.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

// writebackStarter is implemented by stores that can start writeback.
type writebackStarter interface {
	startWriteback() error
}
