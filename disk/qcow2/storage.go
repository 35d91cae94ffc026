package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/imagefile"
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

// openStorage opens path with access a's locks (read-write for a
// writer).
func openStorage(path string, a imagefile.Access) (*osFile, error) {
	f, err := imagefile.Open(path, a)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

// FileStorage is the Storage of an open image file, for Options.Storage
// and CreateOptions.Storage: a file the caller opened (and locked, see
// disk/imagefile) itself. Closing the Storage drops f's locks and closes
// it.
func FileStorage(f *os.File) Storage { return &osFile{f: f} }

// ReadAt, WriteAt and Truncate return the bare error (io.EOF, an errno),
// not an *os.PathError: the image's own messages name the file (errf),
// and would otherwise name it twice.
func (o *osFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.f.ReadAt(p, off)
	return n, bare(err)
}

func (o *osFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := o.f.WriteAt(p, off)
	return n, bare(err)
}

func (o *osFile) Truncate(size int64) error { return bare(o.f.Truncate(size)) }

// bare strips an *os.PathError down to its cause.
func bare(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Close drops the image's locks and closes the file.
func (o *osFile) Close() error { return imagefile.Close(o.f) }

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
	return o.vectored(bufs, off, true)
}

// ReadVecAt fills bufs back to back from off with preadv, retrying short
// reads; at the end of the file it returns what it read and io.EOF.
func (o *osFile) ReadVecAt(bufs [][]byte, off int64) (int, error) {
	return o.vectored(bufs, off, false)
}

// vectored moves all of bufs with pwritev or preadv, IOV_MAX buffers per
// call, resuming after short transfers.
func (o *osFile) vectored(bufs [][]byte, off int64, write bool) (int, error) {
	fd := int(o.f.Fd())
	// A trimmed copy without empty buffers: the caller's stays intact,
	// and a call that moves nothing means the end of the file.
	var left [][]byte
	for _, b := range bufs {
		if len(b) > 0 {
			left = append(left, b)
		}
	}
	total := 0
	for len(left) > 0 {
		k := min(len(left), 1024) // IOV_MAX
		var n int
		var err error
		op := "preadv"
		if write {
			op = "pwritev"
			n, err = unix.Pwritev(fd, left[:k], off)
		} else {
			n, err = unix.Preadv(fd, left[:k], off)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("%s: %w", op, err) // the image's messages name the file
		}
		if n == 0 {
			if write {
				return total, fmt.Errorf("pwritev: %w", io.ErrShortWrite)
			}
			return total, io.EOF
		}
		total += n
		off += int64(n)
		for n > 0 {
			if n >= len(left[0]) {
				n -= len(left[0])
				left = left[1:]
			} else {
				left[0] = left[0][n:]
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
