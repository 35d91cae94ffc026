package disk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// ErrRange reports an access outside the disk.
var ErrRange = errors.New("access outside the disk")

// ErrReadOnly reports a write to a read-only image.
var ErrReadOnly = errors.New("image is read-only")

// Raw is a raw disk image: a regular file or a block device whose bytes
// are the disk's bytes.
type Raw struct {
	f    *os.File
	size int64
	ro   bool
	// discard is the hole-punching granularity, 0 if the file system
	// cannot punch holes.
	discard int64
}

// OpenRaw opens a raw image, read-only or read-write, with a reader's or
// a writer's lock (disk/imagefile).
func OpenRaw(path string, readOnly bool) (*Raw, error) {
	return openRaw(path, imagefile.AccessFor(readOnly, false))
}

// openRaw opens a raw image with access a.
func openRaw(path string, a imagefile.Access) (*Raw, error) {
	f, err := imagefile.Open(path, a)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	r, err := newRaw(f, !a.Writable())
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// newRaw makes a Raw of the open file f (named as f.Name() in errors).
func newRaw(f *os.File, readOnly bool) (*Raw, error) {
	size, err := f.Seek(0, io.SeekEnd) // also right for block devices
	if err != nil {
		return nil, fmt.Errorf("disk: %s: size: %w", f.Name(), unwrapPath(err))
	}
	r := &Raw{f: f, size: size, ro: readOnly}
	var st unix.Statfs_t
	if !readOnly && unix.Fstatfs(int(f.Fd()), &st) == nil && st.Bsize > 0 {
		r.discard = st.Bsize
	}
	return r, nil
}

// CreateRaw creates a sparse raw image of size bytes at path, which must
// not exist.
func CreateRaw(path string, size int64) error {
	if size < 0 {
		return fmt.Errorf("disk: create %s: negative size %d", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("disk: create: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("disk: create %s: %w", path, unwrapPath(err))
	}
	return f.Close()
}

func (r *Raw) path() string { return r.f.Name() }

// ReadAt reads from the disk; past the end it returns io.EOF.
func (r *Raw) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("disk: %s: %w: read at %d", r.path(), ErrRange, off)
	}
	if off >= r.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	n, err := r.f.ReadAt(p[:want], off)
	if int64(n) < want {
		if err == nil || errors.Is(err, io.EOF) {
			// The file shrank under us: the rest reads as zeros.
			clear(p[n:want])
			n = int(want)
		} else {
			return n, fmt.Errorf("disk: %s: read at %#x: %w", r.path(), off, unwrapPath(err))
		}
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes to the disk; the disk does not grow.
func (r *Raw) WriteAt(p []byte, off int64) (int, error) {
	if err := r.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := r.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("disk: %s: write at %#x: %w", r.path(), off, unwrapPath(err))
	}
	return n, nil
}

func (r *Raw) check(off, n int64) error {
	if r.ro {
		return fmt.Errorf("disk: %s: %w", r.path(), ErrReadOnly)
	}
	if off < 0 || n < 0 || off > r.size || n > r.size-off {
		return fmt.Errorf("disk: %s: %w: %#x+%d (disk is %d bytes)", r.path(), ErrRange, off, n, r.size)
	}
	return nil
}

// Flush makes completed writes durable.
func (r *Raw) Flush() error {
	if r.ro {
		return nil
	}
	for {
		err := unix.Fdatasync(int(r.f.Fd()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("disk: %s: flush: %w", r.path(), err)
		}
		return nil
	}
}

// Discard punches a hole where the file system supports it.
func (r *Raw) Discard(off, n int64) error {
	if err := r.check(off, n); err != nil {
		return err
	}
	if r.discard == 0 || n == 0 {
		return nil
	}
	err := unix.Fallocate(int(r.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		r.discard = 0 // advisory: nothing to do here
		return nil
	}
	if err != nil {
		return fmt.Errorf("disk: %s: discard %#x+%d: %w", r.path(), off, n, err)
	}
	return nil
}

// WriteZeroes zeroes a range: by punching a hole (unmap) or zeroing it in
// place where the file system can, else by writing zeros.
func (r *Raw) WriteZeroes(off, n int64, unmap bool) error {
	if err := r.check(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	mode := uint32(unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE)
	if unmap {
		mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	}
	if err := unix.Fallocate(int(r.f.Fd()), mode, off, n); err == nil {
		return nil
	}
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := r.f.WriteAt(buf[:k], off); err != nil {
			return fmt.Errorf("disk: %s: write zeroes at %#x: %w", r.path(), off, unwrapPath(err))
		}
		off += k
		n -= k
	}
	return nil
}

// StartWriteback starts writing dirty pages back without waiting (a hint
// that a Flush will follow).
func (r *Raw) StartWriteback() {
	_ = unix.SyncFileRange(int(r.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE) // a hint only
}

// Size is the disk size.
func (r *Raw) Size() int64 { return r.size }

// Capabilities of a raw image.
func (r *Raw) Capabilities() Capabilities {
	return Capabilities{Format: FormatRaw, ReadOnly: r.ro, DiscardGranularity: r.discard}
}

// Close drops the image's locks and closes the file.
func (r *Raw) Close() error { return imagefile.Close(r.f) }

// Resize changes the size of a raw file (not of a block device).
func (r *Raw) Resize(size int64) error {
	if r.ro {
		return fmt.Errorf("disk: %s: %w", r.path(), ErrReadOnly)
	}
	if err := r.f.Truncate(size); err != nil {
		return fmt.Errorf("disk: %s: resize: %w", r.path(), unwrapPath(err))
	}
	r.size = size
	return nil
}

// Extents lists the data and hole ranges of [off, off+n) with
// SEEK_DATA/SEEK_HOLE; holes read as zeros.
func (r *Raw) Extents(off, n int64) ([]Extent, error) {
	var out []Extent
	end := off + n
	fd := int(r.f.Fd())
	for off < end {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) { // only a hole remains
				out = append(out, Extent{Offset: off, Length: end - off, Zero: true})
				return out, nil
			}
			// No SEEK_DATA support: report everything as data.
			return []Extent{{Offset: off, Length: end - off, Data: true}}, nil
		}
		if data > off {
			out = append(out, Extent{Offset: off, Length: min(data, end) - off, Zero: true})
			off = min(data, end)
			if off >= end {
				break
			}
		}
		hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil {
			hole = end
		}
		hole = min(hole, end)
		out = append(out, Extent{Offset: off, Length: hole - off, Data: true})
		off = hole
	}
	return out, nil
}

// Extent is a range of a disk by allocation status.
type Extent struct {
	Offset, Length int64
	// Data: stored; Zero: reads as zeros (a hole, a zero cluster or an
	// unallocated range without backing data).
	Data, Zero bool
}

// ReadvAt reads into bufs, in order, from off with preadv: one system
// call for a request scattered over many buffers (virtio-blk's Vectored).
// It reads all of them or fails; past the end it returns io.EOF like
// ReadAt.
func (r *Raw) ReadvAt(bufs [][]byte, off int64) (int, error) {
	total := iovLen(bufs)
	if off < 0 || off > r.size || total > r.size-off {
		return 0, fmt.Errorf("disk: %s: %w: read %d bytes at %#x (disk is %d bytes)", r.path(), ErrRange, total, off, r.size)
	}
	done, err := r.vectored(bufs, off, false)
	if err != nil {
		return done, fmt.Errorf("disk: %s: read at %#x: %w", r.path(), off+int64(done), err)
	}
	return done, nil
}

// WritevAt writes bufs, in order, at off with pwritev.
func (r *Raw) WritevAt(bufs [][]byte, off int64) (int, error) {
	if err := r.check(off, iovLen(bufs)); err != nil {
		return 0, err
	}
	done, err := r.vectored(bufs, off, true)
	if err != nil {
		return done, fmt.Errorf("disk: %s: write at %#x: %w", r.path(), off+int64(done), err)
	}
	return done, nil
}

// vectored moves all of bufs with preadv/pwritev, resuming after short
// transfers; a read that finds the file shorter than the disk (it shrank
// under us) reads zeros, as ReadAt does.
func (r *Raw) vectored(bufs [][]byte, off int64, write bool) (int, error) {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	iov := append([][]byte(nil), bufs...) // advanced in place below
	done := 0
	for {
		for len(iov) > 0 && len(iov[0]) == 0 {
			iov = iov[1:]
		}
		if len(iov) == 0 {
			return done, nil
		}
		batch := iov[:min(len(iov), maxIOV)]
		var n int
		var opErr error
		if cerr := rc.Control(func(fd uintptr) {
			if write {
				n, opErr = unix.Pwritev(int(fd), batch, off)
			} else {
				n, opErr = unix.Preadv(int(fd), batch, off)
			}
		}); cerr != nil {
			return done, cerr
		}
		switch {
		case errors.Is(opErr, unix.EINTR):
			continue
		case opErr != nil:
			return done, opErr
		case n == 0 && write:
			return done, io.ErrShortWrite
		case n == 0:
			for _, b := range iov {
				clear(b)
				done += len(b)
			}
			return done, nil
		}
		done += n
		off += int64(n)
		for n > 0 && len(iov) > 0 {
			k := min(n, len(iov[0]))
			iov[0] = iov[0][k:]
			n -= k
			if len(iov[0]) == 0 {
				iov = iov[1:]
			}
		}
	}
}

// maxIOV is the most buffers one preadv/pwritev takes (IOV_MAX).
const maxIOV = 1024

// iovLen is the total length of bufs.
func iovLen(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}
